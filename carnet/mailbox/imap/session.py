"""The selected-folder state of a connection: the sequence-number ↔ UID map and the pending mailbox updates
(RFC 9051 §2.3.1.2, §5.2, §7.4, §7.5.1; RFC 7162 §3.2.10 for VANISHED).

- SELECT costs the folder's counters only (:class:`~carnet.mailbox.api.FolderInfo`): the client's view then is
  "the ``messages`` messages with a UID below ``uidnext``". The map of UIDs (a compact ``array``) is loaded the
  first time a command needs sequence numbers: :meth:`SelectedFolder.ensure_map` takes the store's snapshot, drops
  messages added since SELECT (announced later with EXISTS) and puts back the ones expunged since SELECT (from the
  tombstones, :meth:`~carnet.mailbox.api.MailStoreAPI.changes_since`), which the client still counts until it is
  told about them.
- The folder is watched (:meth:`~carnet.mailbox.api.MailStoreAPI.watch`). A change past what the client knows
  marks the state dirty; at the next point where the RFC allows updates, :meth:`SelectedFolder.send_updates` asks the
  store what changed since the last MODSEQ the client was brought to and sends ``EXISTS`` for new messages,
  ``FETCH (FLAGS …)`` for changed flags (with UID, and MODSEQ after a CONDSTORE-enabling command) and, only where
  RFC 9051 §7.5.1 allows it (not while answering FETCH, STORE or SEARCH; UID commands, NOOP, IDLE… may),
  ``EXPUNGE`` — or ``VANISHED`` once QRESYNC is enabled. Changes this session made itself and already reported
  (STORE answers, implicit ``\\Seen``) are not repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from carnet.mailbox import api
from carnet.mailbox.imap import response
from carnet.mailbox.imap.parser import STAR, SequenceSet
from carnet.mailbox.imap.response import ImapError

if TYPE_CHECKING:
    from carnet.mailbox.imap.server import Connection

log = logging.getLogger(__name__)


class SelectedFolder:
    """What a connection knows of its selected folder."""

    def __init__(self, store: api.MailStoreAPI, folder: api.FolderInfo, *, readonly: bool, watch: object) -> None:
        self.store = store
        self.folder_id = folder.id
        self.name = folder.name
        self.readonly = readonly
        self.uidvalidity = folder.uidvalidity
        self.uidnext0 = folder.uidnext
        self.modseq0 = folder.highestmodseq
        #: Changes up to this MODSEQ are reflected in what the client was told.
        self.known_modseq = folder.highestmodseq
        self.count = folder.messages  # the client's EXISTS
        self.max_uid = folder.uidnext - 1  # UIDs up to this one are in the client's view (or were expunged)
        self._uids: array[int] | None = None
        if folder.messages == 0:
            self._uids = array("Q")
        #: Expunged UIDs still in the client's view, waiting for a point where EXPUNGE may be sent.
        self.pending_expunges: set[int] = set()
        #: (uid → modseq) states this session already reported (its own STOREs), skipped in the next update.
        self.reported: dict[int, int] = {}
        self.saved: tuple[int, ...] = ()  # SEARCHRES result (RFC 5182), as UIDs
        self.dirty = False
        self.changed = asyncio.Event()
        self._watch = watch
        self._task = asyncio.get_running_loop().create_task(self._follow(), name=f"imap watch {folder.id}")

    # Watching ---------------------------------------------------------------------------------------------------

    async def _follow(self) -> None:
        watch = self._watch
        try:
            async for change in watch:  # type: ignore[attr-defined]
                if change.highestmodseq > self.known_modseq or change.uidnext > self.max_uid + 1:
                    self.dirty = True
                    self.changed.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watching folder %s failed", self.folder_id)

    def close(self) -> None:
        self._task.cancel()
        closer = getattr(self._watch, "close", None)
        if callable(closer):
            with contextlib.suppress(Exception):
                closer()

    def touch(self) -> None:
        """This session changed the folder: bring the client up to date at the end of the command."""
        self.dirty = True

    # The sequence map -------------------------------------------------------------------------------------------

    async def ensure_map(self) -> array[int]:
        """The sequence-number map (RFC 9051 §2.3.1.2), loaded on first need; see the module docstring."""
        if self._uids is not None:
            return self._uids
        snapshot = await self.store.snapshot(self.folder_id)
        uids = [state.uid for state in snapshot if state.uid <= self.max_uid]
        if len(uids) != self.count:
            # Messages expunged since SELECT: the client still counts them until EXPUNGE is sent.
            changes = await self.store.changes_since(self.folder_id, self.modseq0)
            gone = {uid for uid in changes.vanished if uid <= self.max_uid}
            uids = sorted(set(uids) | gone)
            self.dirty = True
            if len(uids) != self.count:
                log.warning("folder %s: %d messages in view, %d announced", self.folder_id, len(uids), self.count)
                self.count = len(uids)
        self._uids = array("Q", uids)
        return self._uids

    def uid_of(self, seq: int) -> int:
        assert self._uids is not None
        return self._uids[seq - 1]

    def seq_of(self, uid: int) -> int | None:
        """Sequence number of ``uid`` in the client's view (needs :meth:`ensure_map`)."""
        uids = self._uids
        assert uids is not None
        index = bisect_left(uids, uid)
        if index < len(uids) and uids[index] == uid:
            return index + 1
        return None

    async def resolve(self, seqset: SequenceSet, *, uid: bool) -> list[tuple[int, int]]:
        """(seq, uid) pairs of a sequence set, ascending. Sequence numbers beyond EXISTS are a BAD command
        (RFC 9051 §6.4.5, §9 ``seq-number``); UIDs that do not exist are ignored (RFC 9051 §6.4.8)."""
        uids = await self.ensure_map()
        n = len(uids)
        if seqset.saved:
            return [(s, u) for u in self.saved if (s := self.seq_of(u)) is not None]
        if uid:
            max_uid = uids[-1] if n else 0
            out: dict[int, None] = {}
            for first, last in seqset.ranges:
                a = max_uid if first == STAR else first
                b = max_uid if last == STAR else last
                if a > b:
                    a, b = b, a
                lo = bisect_left(uids, a)
                hi = bisect_left(uids, b + 1)
                if hi - lo == n and not out:
                    return [(i + 1, uids[i]) for i in range(n)]
                out.update(dict.fromkeys(range(lo, hi)))
            return [(i + 1, uids[i]) for i in sorted(out)]
        if n == 0:
            raise ImapError("the mailbox is empty: no sequence number is valid", status="BAD")
        seqs: dict[int, None] = {}
        for first, last in seqset.ranges:
            a = n if first == STAR else first
            b = n if last == STAR else last
            if a > b:
                a, b = b, a
            if b > n:
                raise ImapError(f"sequence number {b} is beyond the {n} messages of the mailbox", status="BAD")
            if b - a + 1 == n and not seqs:
                return [(i + 1, uids[i]) for i in range(n)]
            seqs.update(dict.fromkeys(range(a, b + 1)))
        return [(s, uids[s - 1]) for s in sorted(seqs)]

    async def uid_ranges(self, seqset: SequenceSet, *, uid: bool) -> tuple[api.UidRange, ...]:
        """A sequence set as UID ranges for a search key (``*`` resolved; out-of-range parts match nothing)."""
        uids = await self.ensure_map()
        n = len(uids)
        if seqset.saved:
            return tuple(api.UidRange(u, u) for u in self.saved)
        out: list[api.UidRange] = []
        for first, last in seqset.ranges:
            if uid:
                max_uid = uids[-1] if n else 0
                a = max_uid if first == STAR else first
                b = max_uid if last == STAR else last
                if a > b:
                    a, b = b, a
                if b > 0:
                    out.append(api.UidRange(a, b))
                continue
            a = n if first == STAR else first
            b = n if last == STAR else last
            if a > b:
                a, b = b, a
            b = min(b, n)
            if a <= b and a >= 1:
                out.append(api.UidRange(uids[a - 1], uids[b - 1]))
        return tuple(out)

    # Updates ----------------------------------------------------------------------------------------------------

    def note_reported(self, states: Iterable[api.MessageState]) -> None:
        for state in states:
            self.reported[state.uid] = state.modseq

    async def send_updates(self, conn: Connection, *, expunge_ok: bool) -> None:
        """Bring the client up to date as far as RFC 9051 §7.5.1 allows at this point."""
        if self.dirty:
            self.dirty = False
            self.changed.clear()
            changes = await self.store.changes_since(self.folder_id, self.known_modseq)
            await self._apply(conn, changes)
        if expunge_ok and self.pending_expunges:
            await self._send_expunges(conn, sorted(self.pending_expunges))
        self.reported.clear()

    async def _apply(self, conn: Connection, changes: api.Changes) -> None:
        new = sorted(s.uid for s in changes.changed if s.uid > self.max_uid)
        vanished = [uid for uid in changes.vanished if uid <= self.max_uid]
        flagged = [s for s in changes.changed if s.uid <= self.max_uid and self.reported.get(s.uid) != s.modseq]
        if vanished or flagged:
            uids = await self.ensure_map()
        else:
            uids = self._uids  # type: ignore[assignment]
        for uid in vanished:
            if self.seq_of(uid) is not None:
                self.pending_expunges.add(uid)
        if flagged:
            states = sorted(flagged, key=lambda s: s.uid)
            for state in states:
                if state.uid in self.pending_expunges:
                    continue
                seq = self.seq_of(state.uid)
                if seq is not None:
                    conn.write(fetch_flags_line(conn, seq, state, with_uid=True))
        if new:
            if uids is not None:
                uids.extend(new)
            self.count += len(new)
            self.max_uid = new[-1]
            conn.untagged(f"{self.count} EXISTS")
        self.known_modseq = max(self.known_modseq, changes.highestmodseq)

    async def _send_expunges(self, conn: Connection, gone: Sequence[int]) -> None:
        """EXPUNGE (RFC 9051 §7.5.1) in ascending order, each number counted after the previous removal, or
        VANISHED (RFC 7162 §3.2.10) once QRESYNC is enabled."""
        uids = await self.ensure_map()
        removed: list[int] = []
        lines: list[bytes] = []
        for uid in gone:
            index = bisect_left(uids, uid)
            if index < len(uids) and uids[index] == uid:
                del uids[index]
                removed.append(uid)
                lines.append(b"* %d EXPUNGE\r\n" % (index + 1))
        self.pending_expunges.difference_update(gone)
        if not removed:
            return
        self.count -= len(removed)
        if conn.qresync:
            conn.untagged("VANISHED " + response.number_set(removed))
        else:
            conn.write(b"".join(lines))

    async def expunged_now(self, conn: Connection, uids: Iterable[int]) -> None:
        """This session expunged (or moved away) ``uids``: report them now with the other pending ones."""
        self.pending_expunges.update(uids)
        await self._send_expunges(conn, sorted(self.pending_expunges))


def fetch_flags_line(conn: Connection, seq: int, state: api.MessageState, *, with_uid: bool) -> bytes:
    """``* n FETCH (UID u FLAGS (…) MODSEQ (m))`` for a flag change (RFC 9051 §7.5.2, RFC 7162 §3.1.4)."""
    parts = []
    if with_uid:
        parts.append(b"UID %d" % state.uid)
    parts.append(b"FLAGS " + response.flag_list(state.flags))
    if conn.condstore:
        parts.append(b"MODSEQ (%d)" % state.modseq)
    return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"
