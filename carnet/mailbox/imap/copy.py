"""COPY, MOVE and their UID forms (RFC 9051 §6.4.7, §6.4.8; MOVE RFC 6851; COPYUID of UIDPLUS RFC 4315 §3).

MOVE is atomic in the store. Its answer is an untagged ``OK [COPYUID …]`` followed by the EXPUNGE (or VANISHED)
responses of the moved messages, then the tagged OK (RFC 6851 §4.3). A missing destination is ``NO [TRYCREATE]``
(RFC 9051 §6.4.7).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carnet.mailbox import api
from carnet.mailbox.imap import response
from carnet.mailbox.imap.parser import Command, CopyMove
from carnet.mailbox.imap.response import ImapError

if TYPE_CHECKING:
    from carnet.mailbox.imap.server import Connection


async def _destination(conn: Connection, raw_name: str) -> api.FolderInfo:
    from carnet.mailbox.imap.list import _folder_name

    try:
        return await conn.store.get_folder(conn.mailbox_id, _folder_name(conn, raw_name))
    except api.NoSuchFolder:
        raise ImapError("the destination mailbox does not exist", "TRYCREATE") from None


def _copyuid(result: api.CopyResult) -> str:
    return (f"COPYUID {result.uidvalidity} {response.number_set(list(result.source_uids))} "
            f"{response.number_set(list(result.dest_uids))}")


async def copy(conn: Connection, cmd: Command) -> str | tuple[str, str | None]:
    """COPY / UID COPY (RFC 9051 §6.4.7)."""
    selected = conn.selected
    assert selected is not None
    args: CopyMove = cmd.args
    pairs = await selected.resolve(args.set, uid=cmd.uid)
    dest = await _destination(conn, args.mailbox)
    if not pairs:
        return f"{cmd.display_name} completed"
    result = await conn.store.copy(selected.folder_id, [uid for _, uid in pairs], dest.id, origin=conn.origin)
    if dest.id == selected.folder_id:
        selected.touch()
    if not result.source_uids:
        if cmd.uid:
            return f"{cmd.display_name} completed"
        raise ImapError("the messages were expunged meanwhile", "EXPUNGEISSUED")
    return f"{cmd.display_name} completed", _copyuid(result)


async def move(conn: Connection, cmd: Command) -> str:
    """MOVE / UID MOVE (RFC 6851 §3)."""
    selected = conn.selected
    assert selected is not None
    args: CopyMove = cmd.args
    if selected.readonly:
        raise ImapError("the mailbox is read-only (EXAMINE)", "READ-ONLY")
    pairs = await selected.resolve(args.set, uid=cmd.uid)
    dest = await _destination(conn, args.mailbox)
    if not pairs:
        return f"{cmd.display_name} completed"
    result = await conn.store.move(selected.folder_id, [uid for _, uid in pairs], dest.id, origin=conn.origin)
    selected.touch()
    if not result.source_uids:
        if cmd.uid:
            return f"{cmd.display_name} completed"
        raise ImapError("the messages were expunged meanwhile", "EXPUNGEISSUED")
    conn.write(response.untagged_status("OK", "Moved", _copyuid(result)))  # RFC 6851 §4.3
    await selected.expunged_now(conn, result.source_uids)
    return f"{cmd.display_name} completed"
