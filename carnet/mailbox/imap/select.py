"""SELECT, EXAMINE, CLOSE, UNSELECT and CHECK (RFC 9051 §6.3.2, §6.3.3, §6.4.1, §6.4.2; RFC 3501 §6.4.1;
RFC 3691; CONDSTORE and QRESYNC parameters of RFC 7162 §3.1.8 and §3.2.5)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from carnet.mailbox import api
from carnet.mailbox.imap import response
from carnet.mailbox.imap.parser import Command, QresyncParams, Select
from carnet.mailbox.imap.response import ImapError
from carnet.mailbox.imap.session import SelectedFolder, fetch_flags_line

if TYPE_CHECKING:
    from carnet.mailbox.imap.server import Connection

#: Keywords announced in FLAGS besides the system flags (RFC 9051 §2.3.2; $Forwarded etc. from the IANA registry,
#: RFC 5788). Any other keyword may be stored too: PERMANENTFLAGS carries ``\\*``.
KEYWORDS = ("$Forwarded", "$MDNSent", "$Junk", "$NotJunk", "$Phishing")
FLAGS = "(\\Answered \\Flagged \\Deleted \\Seen \\Draft " + " ".join(KEYWORDS) + ")"
PERMANENT = "(\\Answered \\Flagged \\Deleted \\Seen \\Draft " + " ".join(KEYWORDS) + " \\*)"


def deselect(conn: Connection, *, announce: bool) -> None:
    from carnet.mailbox.imap.server import AUTHENTICATED

    if conn.selected is None:
        return
    conn.selected.close()
    conn.selected = None
    conn.state = AUTHENTICATED
    if announce and (conn.qresync or conn.rev2):
        conn.write(response.untagged_status("OK", "Previous mailbox closed", "CLOSED"))  # RFC 7162 §3.2.11


async def select(conn: Connection, cmd: Command) -> tuple[str, str]:
    """SELECT / EXAMINE (RFC 9051 §6.3.2, §6.3.3). A failing SELECT leaves no mailbox selected."""
    from carnet.mailbox.imap.server import SELECTED

    args: Select = cmd.args
    readonly = cmd.name == "EXAMINE"
    if args.qresync is not None and not conn.qresync:
        raise ImapError("QRESYNC parameter without ENABLE QRESYNC (RFC 7162 §3.2.5)", status="BAD")
    name = conn.mailbox_in(args.mailbox)
    deselect(conn, announce=True)
    if args.condstore:
        conn.condstore = True  # a CONDSTORE-enabling command (RFC 7162 §3.1)
    store = conn.store
    folder = await store.get_folder(conn.mailbox_id, name)
    # Watch first, then read the counters: every change after them reaches the session.
    watch = store.watch(folder.id)
    try:
        ready = getattr(watch, "ready", None)
        if callable(ready):
            await ready()
        folder = await store.get_folder(conn.mailbox_id, name)
    except BaseException:
        with contextlib.suppress(Exception):
            watch.close()  # type: ignore[attr-defined]
        raise
    selected = SelectedFolder(store, folder, readonly=readonly, watch=watch)
    conn.selected = selected
    conn.state = SELECTED

    conn.untagged(f"FLAGS {FLAGS}")
    conn.write(response.untagged_status("OK", "Flags permitted", f"PERMANENTFLAGS {'()' if readonly else PERMANENT}"))
    conn.untagged(f"{folder.messages} EXISTS")
    if not conn.rev2:
        conn.untagged("0 RECENT")  # \Recent is not implemented (RFC 9051 Appendix E removed it)
        if folder.unseen:
            first = await store.count_before_first_unseen(folder.id)
            if first is not None:
                conn.write(response.untagged_status("OK", "First unseen", f"UNSEEN {first}"))
    conn.write(response.untagged_status("OK", "UIDs valid", f"UIDVALIDITY {folder.uidvalidity}"))
    conn.write(response.untagged_status("OK", "Predicted next UID", f"UIDNEXT {folder.uidnext}"))
    conn.write(response.untagged_status("OK", "Highest", f"HIGHESTMODSEQ {folder.highestmodseq}"))  # RFC 7162 §3.1.2.1
    if conn.rev2:
        conn.write(b"* LIST () \"/\" " + conn.mailbox_out(folder.name) + b"\r\n")  # RFC 9051 §6.3.2
    if args.qresync is not None and args.qresync.uidvalidity == folder.uidvalidity:
        await _qresync(conn, selected, args.qresync)
    code = "READ-ONLY" if readonly else "READ-WRITE"
    return f"{cmd.name} completed", code


async def _qresync(conn: Connection, selected: SelectedFolder, params: QresyncParams) -> None:
    """RFC 7162 §3.2.5.1: VANISHED (EARLIER) for what was expunged since the client's MODSEQ (within its known
    UIDs), then FETCH (UID FLAGS MODSEQ) for what changed."""
    changes = await conn.store.changes_since(selected.folder_id, params.modseq)
    vanished = [uid for uid in changes.vanished if uid <= selected.max_uid]
    if params.known_uids is not None:
        known = params.known_uids.ranges
        vanished = [uid for uid in vanished if any(a <= uid <= b or b <= uid <= a for a, b in known)]
    if vanished:
        conn.untagged("VANISHED (EARLIER) " + response.uid_set_of(vanished))
    changed = sorted((s for s in changes.changed if s.uid <= selected.max_uid), key=lambda s: s.uid)
    if changed:
        await selected.ensure_map()
        for state in changed:
            seq = selected.seq_of(state.uid)
            if seq is not None:
                conn.write(fetch_flags_line(conn, seq, state, with_uid=True))
            await conn.maybe_flush()


async def close(conn: Connection, cmd: Command) -> str:
    """CLOSE (RFC 9051 §6.4.1): expunge silently when read-write, then deselect."""
    selected = conn.selected
    assert selected is not None
    if not selected.readonly:
        with contextlib.suppress(api.NoSuchFolder):
            await conn.store.expunge(selected.folder_id, None, origin=conn.origin)
    deselect(conn, announce=False)
    return "CLOSE completed"


async def unselect(conn: Connection, cmd: Command) -> str:
    """UNSELECT (RFC 3691 §2, RFC 9051 §6.4.2): deselect without expunging."""
    deselect(conn, announce=False)
    return "UNSELECT completed"


async def check(conn: Connection, cmd: Command) -> str:
    """CHECK (RFC 3501 §6.4.1; removed from RFC 9051, kept for rev1 clients): a NOOP here, every write is
    already durable."""
    return "CHECK completed"
