"""STORE, UID STORE (RFC 9051 §6.4.6, §6.4.9) with UNCHANGEDSINCE (RFC 7162 §3.1.3), and EXPUNGE / UID EXPUNGE
(RFC 9051 §6.4.3, RFC 4315 §2.1).

The store gives each changed message a new MODSEQ. Non-silent STOREs answer ``FETCH (FLAGS …)`` for every
message of the set (changed or not); with CONDSTORE enabled the answers carry UID and MODSEQ, and with ``.SILENT``
the changed messages still get ``FETCH (UID … MODSEQ (…))`` so the client learns their new MODSEQ (RFC 7162 §3.1.3
example 3). Conflicts with UNCHANGEDSINCE are reported in ``[MODIFIED set]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carnet.mailbox.imap import response
from carnet.mailbox.imap.parser import Command, Expunge, Store
from carnet.mailbox.imap.response import ImapError
from carnet.mailbox.imap.session import fetch_flags_line

if TYPE_CHECKING:
    from carnet.mailbox.imap.server import Connection


async def store(conn: Connection, cmd: Command) -> str | tuple[str, str | None]:
    """STORE / UID STORE (RFC 9051 §6.4.6, §6.4.8; UNCHANGEDSINCE RFC 7162 §3.1.3)."""
    selected = conn.selected
    assert selected is not None
    args: Store = cmd.args
    if selected.readonly:
        raise ImapError("the mailbox is read-only (EXAMINE)", "READ-ONLY")
    if args.unchangedsince is not None:
        conn.condstore = True  # CONDSTORE-enabling (RFC 7162 §3.1)
    pairs = await selected.resolve(args.set, uid=cmd.uid)
    flags = [flag for flag in args.flags if flag != "\\Recent"]  # \Recent cannot be set (RFC 3501 §2.3.2)
    if not pairs:
        return f"{cmd.display_name} completed"
    seq_of = {uid: seq for seq, uid in pairs}
    update = await conn.store.store_flags(selected.folder_id, [uid for _, uid in pairs], args.mode, flags,
                                          unchanged_since=args.unchangedsince, origin=conn.origin)
    selected.note_reported(update.changed)
    if update.changed:
        selected.touch()
    with_uid = cmd.uid or conn.condstore
    if args.silent:
        if conn.condstore:
            for state in update.changed:
                seq = seq_of.get(state.uid)
                if seq is not None:
                    conn.write(b"* %d FETCH (UID %d MODSEQ (%d))\r\n" % (seq, state.uid, state.modseq))
    else:
        for state in sorted((*update.changed, *update.unchanged), key=lambda s: s.uid):
            seq = seq_of.get(state.uid)
            if seq is not None:
                conn.write(fetch_flags_line(conn, seq, state, with_uid=with_uid))
    await conn.maybe_flush()
    if update.failed_uids:
        failed = update.failed_uids if cmd.uid else sorted(seq_of[u] for u in update.failed_uids if u in seq_of)
        return "some messages were modified since the given MODSEQ", f"MODIFIED {response.number_set(failed)}"
    return f"{cmd.display_name} completed"


async def expunge(conn: Connection, cmd: Command) -> str:
    """EXPUNGE (RFC 9051 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1): EXPUNGE (or VANISHED, RFC 7162 §3.2.10)
    responses for the messages removed, by this session or others."""
    selected = conn.selected
    assert selected is not None
    args: Expunge = cmd.args
    if selected.readonly:
        raise ImapError("the mailbox is read-only (EXAMINE)", "READ-ONLY")
    uids = None
    if args.set is not None:
        uids = [uid for _, uid in await selected.resolve(args.set, uid=True)]
        if not uids:
            return f"{cmd.display_name} completed"
    await selected.ensure_map()
    gone = await conn.store.expunge(selected.folder_id, uids, origin=conn.origin)
    if gone:
        selected.touch()
        await selected.expunged_now(conn, gone)
    return f"{cmd.display_name} completed"
