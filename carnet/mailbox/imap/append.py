"""APPEND (RFC 9051 §6.3.12) with APPENDUID (UIDPLUS, RFC 4315 §3), literal8 (BINARY, RFC 3516 §4.4), the UTF8
data item (RFC 6855 §4) and APPENDLIMIT (RFC 7889). One message per command (no MULTIAPPEND, RFC 3502).

The literal, synchronising or not (LITERAL+ / LITERAL-, RFC 7888), has been read by the connection within the
APPENDLIMIT; the store analyses the message once and commits it, or writes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carnet.mailbox import api
from carnet.mailbox.imap.parser import Append, Command
from carnet.mailbox.imap.response import ImapError

if TYPE_CHECKING:
    from carnet.mailbox.imap.server import Connection


async def append(conn: Connection, cmd: Command) -> tuple[str, str]:
    """APPEND (RFC 9051 §6.3.12; UIDPLUS APPENDUID RFC 4315 §3; RFC 3516 §4.4; RFC 6855 §4)."""
    from carnet.mailbox.imap.list import _folder_name

    args: Append = cmd.args
    if args.utf8 and not conn.utf8:
        raise ImapError("UTF8 APPEND data needs ENABLE UTF8=ACCEPT (RFC 6855 §4)", status="BAD")
    if not args.message:
        raise ImapError("an empty message cannot be appended", "CANNOT")
    if len(args.message) > conn.server.limits.max_append:
        raise ImapError(f"the message is larger than {conn.server.limits.max_append} octets", "TOOBIG")
    name = _folder_name(conn, args.mailbox)
    flags = [flag for flag in args.flags if flag != "\\Recent"]
    try:
        result = await conn.store.append(conn.mailbox_id, name, args.message, flags, args.internal_date,
                                         origin=conn.origin)
    except api.NoSuchFolder:
        raise ImapError("the mailbox does not exist", "TRYCREATE") from None  # RFC 9051 §6.3.12
    selected = conn.selected
    if selected is not None and selected.folder_id == result.folder_id:
        selected.touch()  # EXISTS at the end of this command (RFC 9051 §6.3.12)
    return "APPEND completed", f"APPENDUID {result.uidvalidity} {result.uid}"
