"""QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT; SETQUOTA is refused (limits are set by the administrator).

One quota root, ``""``, for the whole account, with the STORAGE resource counted in units of 1024 octets
(RFC 9208 §5.1), rounded up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carnet.mailbox.imap import response
from carnet.mailbox.imap.parser import Command, MailboxArg, QuotaRoot
from carnet.mailbox.imap.response import ImapError

if TYPE_CHECKING:
    from carnet.mailbox.imap.server import Connection


async def _quota_line(conn: Connection) -> str:
    used, limit = await conn.store.quota(conn.mailbox_id)
    return f'QUOTA "" (STORAGE {(used + 1023) // 1024} {limit // 1024})'


async def getquota(conn: Connection, cmd: Command) -> str:
    """GETQUOTA (RFC 9208 §4.2)."""
    args: QuotaRoot = cmd.args
    if args.name != "":
        raise ImapError(f"no quota root {args.name!r}; the account's root is \"\"", "NONEXISTENT")
    conn.untagged(await _quota_line(conn))
    return "GETQUOTA completed"


async def getquotaroot(conn: Connection, cmd: Command) -> str:
    """GETQUOTAROOT (RFC 9208 §4.3)."""
    from carnet.mailbox.imap.list import _folder_name

    args: MailboxArg = cmd.args
    folder = await conn.store.get_folder(conn.mailbox_id, _folder_name(conn, args.mailbox))
    conn.untagged(b"QUOTAROOT " + conn.mailbox_out(folder.name) + b' ""')
    conn.untagged(await _quota_line(conn))
    return "GETQUOTAROOT completed"


async def setquota(conn: Connection, cmd: Command) -> str:
    """SETQUOTA (RFC 9208 §4.1.3): not for users."""
    raise ImapError("quotas are set by the administrator", "NOPERM")


__all__ = ["getquota", "getquotaroot", "response", "setquota"]
