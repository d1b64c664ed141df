"""Change notifications: every committed write reaches every session watching the folder, in every process.

Design (what IDLE and NOTIFY-style updates need, RFC 9051 §7 unilateral responses, RFC 2177):

- A write stages its :class:`~carnet.mailbox.api.FolderChange` on the SQLAlchemy session that makes it
  (:meth:`Notifier.stage`). The change is published **only after that session's transaction commits**: an
  ``after_commit`` hook on the session fans it out to this process's watchers; a rolled-back transaction or savepoint
  (``after_soft_rollback``) drops it. This is how :meth:`MailStore.deliver_in` writes inside the MTA's transaction and
  still publishes after the MTA's single commit.
- On PostgreSQL the write also executes ``pg_notify('carnet_mailbox', payload)`` inside its transaction. PostgreSQL
  delivers notifications on commit only, in commit order, so other processes sharing the database learn of exactly
  the committed changes, even if this process dies right after committing. Each process (each
  :class:`~carnet.mailbox.store.MailStore`) keeps one dedicated asyncpg connection that ``LISTEN``\\ s on the channel,
  reconnects when it is lost, and ignores its own notifications (the payload names the node). The payload is the
  change as compact JSON; when that would exceed PostgreSQL's 8000-octet limit, a pointer (folder, MODSEQ and UIDNEXT
  before and after) is sent and the receiver loads the details from the database.
- On SQLite there is no cross-process channel: watchers see the changes of their own process only. Several carnet
  processes on one database require PostgreSQL (ARCHITECTURE: no in-process state for correctness across nodes).
- Each watcher has its own queue; a slow watcher's pending changes are merged into one (added and expunged UIDs are
  unions, the last flags of each UID win), so memory stays bounded and nothing is lost. Sessions must treat changes
  idempotently: a change can name a UID they already know (added) or never knew (expunged).
- After the listening connection is re-established, each watched folder receives a change loaded from the database
  covering what happened since the last change seen, so a network blip loses nothing either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from carnet.mailbox.api import FolderChange, MessageState

CHANNEL = "carnet_mailbox"
#: PostgreSQL refuses NOTIFY payloads of 8000 octets or more.
MAX_PAYLOAD = 7900
#: Pending changes per watcher beyond which they are merged into one.
MAX_PENDING = 256
#: Seconds between liveness checks of the listening connection.
KEEPALIVE = 30.0

_PENDING_KEY = "carnet.mailbox.pending_changes"
_HOOKED_KEY = "carnet.mailbox.hooked"

log = logging.getLogger(__name__)

#: Loads the change of a folder between (modseq, uidnext) before and a MODSEQ after, from the database.
Loader = Callable[[int, int, int, int], Awaitable[FolderChange | None]]


def merge(changes: list[FolderChange]) -> FolderChange:
    """One change equivalent to applying ``changes`` in order (for a watcher that fell behind)."""
    first = changes[0]
    added: dict[int, None] = {}
    expunged: dict[int, None] = {}
    flags: dict[int, MessageState] = {}
    for change in changes:
        added.update(dict.fromkeys(change.added))
        expunged.update(dict.fromkeys(change.expunged))
        for state in change.flags:
            flags[state.uid] = state
    origins = {change.origin for change in changes}
    return FolderChange(
        folder_id=first.folder_id,
        highestmodseq=max(change.highestmodseq for change in changes),
        uidnext=max(change.uidnext for change in changes),
        added=tuple(added),
        expunged=tuple(expunged),
        flags=tuple(sorted(flags.values(), key=lambda state: state.uid)),
        origin=first.origin if len(origins) == 1 else "",
    )


def encode(node: str, change: FolderChange, before: tuple[int, int]) -> str:
    """The NOTIFY payload of ``change``: the change itself, or a pointer when it is too large."""
    body: dict[str, Any] = {
        "n": node,
        "f": change.folder_id,
        "m": change.highestmodseq,
        "u": change.uidnext,
        "o": change.origin,
        "a": list(change.added),
        "x": list(change.expunged),
        "s": [[state.uid, state.modseq, sorted(state.flags)] for state in change.flags],
    }
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    if len(payload.encode()) <= MAX_PAYLOAD:
        return payload
    pointer = {key: body[key] for key in ("n", "f", "m", "u")}
    pointer["o"] = change.origin[:200]
    pointer["p"] = list(before)
    return json.dumps(pointer, separators=(",", ":"), ensure_ascii=False)


def decode(payload: str) -> tuple[str, FolderChange, tuple[int, int] | None]:
    """(node, change, pointer) from a NOTIFY payload; ``pointer`` is (modseq, uidnext) before, when given."""
    body = json.loads(payload)
    pointer = tuple(body["p"]) if "p" in body else None
    change = FolderChange(
        folder_id=int(body["f"]),
        highestmodseq=int(body["m"]),
        uidnext=int(body["u"]),
        added=tuple(body.get("a", ())),
        expunged=tuple(body.get("x", ())),
        flags=tuple(MessageState(uid, modseq, frozenset(flags)) for uid, modseq, flags in body.get("s", ())),
        origin=str(body.get("o", "")),
    )
    return str(body["n"]), change, (int(pointer[0]), int(pointer[1])) if pointer else None


class FolderWatch:
    """An async iterator of a folder's changes, registered from its creation on (nothing committed after
    :meth:`MailStore.watch` returns is missed in this process; ``await watch.ready()`` also waits until other
    processes' changes are being received). Close it (``aclose()``, or use it as an async context manager)."""

    def __init__(self, notifier: Notifier, folder_id: int) -> None:
        self.folder_id = folder_id
        self._notifier = notifier
        self._pending: deque[FolderChange] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        notifier._register(self)

    async def ready(self) -> None:
        """Wait until changes from other processes are received too (PostgreSQL LISTEN is active)."""
        await self._notifier.ensure_listening()

    def push(self, change: FolderChange) -> None:
        if self._closed:
            return
        self._pending.append(change)
        if len(self._pending) > MAX_PENDING:
            merged = merge(list(self._pending))
            self._pending.clear()
            self._pending.append(merged)
        self._wakeup.set()

    def pending(self) -> list[FolderChange]:
        """Changes received and not yet consumed, without waiting (for a session between commands)."""
        out = list(self._pending)
        self._pending.clear()
        self._wakeup.clear()
        return out

    def __aiter__(self) -> FolderWatch:
        return self

    async def __anext__(self) -> FolderChange:
        self._notifier.start_listening()  # this process's changes flow even while the listener reconnects
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._closed:
            raise StopAsyncIteration
        return self._pending.popleft()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._notifier._unregister(self)
            self._wakeup.set()

    async def __aenter__(self) -> FolderWatch:
        await self.ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Notifier:
    """Stages changes on sessions, publishes them after commit, and (PostgreSQL) listens to other processes."""

    def __init__(self, dialect: str, dsn: str | None, loader: Loader) -> None:
        self.node = uuid.uuid4().hex
        self._dialect = dialect
        self._dsn = dsn
        self._loader = loader
        self._watchers: dict[int, set[FolderWatch]] = {}
        #: Last (highestmodseq, uidnext) published per watched folder, to catch up after a reconnection.
        self._known: dict[int, tuple[int, int]] = {}
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._loads: set[asyncio.Task[None]] = set()

    # Staging and local fan-out -------------------------------------------------------------------------------

    async def stage(self, session: AsyncSession, change: FolderChange, before: tuple[int, int]) -> None:
        """Publish ``change`` once ``session``'s transaction commits. ``before``: (modseq, uidnext) before it."""
        sync_session = session.sync_session
        if not sync_session.info.get(_HOOKED_KEY):
            event.listen(sync_session, "after_commit", self._after_commit)
            event.listen(sync_session, "after_soft_rollback", self._after_soft_rollback)
            sync_session.info[_HOOKED_KEY] = True
        transaction = sync_session.get_nested_transaction() or sync_session.get_transaction()
        sync_session.info.setdefault(_PENDING_KEY, []).append((transaction, change))
        if self._dialect == "postgresql":
            await session.execute(select(func.pg_notify(CHANNEL, encode(self.node, change, before))))

    def _after_commit(self, session: Session) -> None:
        pending: list[tuple[Any, FolderChange]] = session.info.pop(_PENDING_KEY, [])
        for _transaction, change in pending:
            self.dispatch(change)

    def _after_soft_rollback(self, session: Session, previous: SessionTransaction) -> None:
        pending: list[tuple[Any, FolderChange]] = session.info.get(_PENDING_KEY, [])
        if not pending:
            return
        kept = []
        for transaction, change in pending:
            node = transaction
            while node is not None and node is not previous:
                node = node.parent
            if node is None:
                kept.append((transaction, change))
        session.info[_PENDING_KEY] = kept

    def dispatch(self, change: FolderChange) -> None:
        """Hand a committed change to this process's watchers of its folder."""
        watchers = self._watchers.get(change.folder_id)
        if not watchers:
            return
        known = self._known.get(change.folder_id, (0, 0))
        self._known[change.folder_id] = (max(known[0], change.highestmodseq), max(known[1], change.uidnext))
        for watcher in list(watchers):
            watcher.push(change)

    def _register(self, watcher: FolderWatch) -> None:
        self._watchers.setdefault(watcher.folder_id, set()).add(watcher)

    def _unregister(self, watcher: FolderWatch) -> None:
        watchers = self._watchers.get(watcher.folder_id)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[watcher.folder_id]
                self._known.pop(watcher.folder_id, None)

    # Listening (PostgreSQL) ----------------------------------------------------------------------------------

    def start_listening(self) -> bool:
        """Start the LISTEN connection task if needed; False when there is nothing to listen to (SQLite)."""
        if self._dialect != "postgresql" or self._dsn is None or self._closing:
            return False
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen_forever(), name="carnet-mailbox-listen")
        return True

    async def ensure_listening(self) -> None:
        """Start the LISTEN connection if needed and wait until it listens (no-op on SQLite)."""
        if self.start_listening():
            await self._listening.wait()

    async def _listen_forever(self) -> None:
        import asyncpg

        delay = 0.2
        first = True
        while not self._closing:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self._dsn, timeout=10)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await connection.add_listener(CHANNEL, self._on_notification)
                if not first:
                    self._catch_up()
                first = False
                delay = 0.2
                self._listening.set()
                while not lost.is_set() and not self._closing:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), KEEPALIVE)
                    if not lost.is_set() and not self._closing:
                        await connection.fetchval("SELECT 1", timeout=10)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("mailbox change listener: %s; reconnecting in %.1f s", exc, delay)
            except Exception:  # never let the listener die: sessions would silently stop hearing other nodes
                log.exception("mailbox change listener failed; reconnecting in %.1f s", delay)
            finally:
                self._listening.clear()
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=5)
            if not self._closing:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _on_notification(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            node, change, pointer = decode(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("mailbox change listener: ignoring malformed payload %r", payload[:200])
            return
        if node == self.node or change.folder_id not in self._watchers:
            return
        if pointer is None:
            self.dispatch(change)
        else:
            self._load(change.folder_id, pointer[0], pointer[1], change.highestmodseq, change.origin)

    def _load(self, folder_id: int, modseq: int, uidnext: int, until: int, origin: str = "") -> None:
        async def load() -> None:
            change = await self._loader(folder_id, modseq, uidnext, until)
            if change is not None:
                if origin:
                    change = FolderChange(change.folder_id, change.highestmodseq, change.uidnext, change.added,
                                          change.expunged, change.flags, origin)
                self.dispatch(change)

        task = asyncio.create_task(load())
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

    def _catch_up(self) -> None:
        for folder_id, (modseq, uidnext) in list(self._known.items()):
            self._load(folder_id, modseq, uidnext, 2**63 - 1)

    async def close(self) -> None:
        self._closing = True
        for watchers in list(self._watchers.values()):
            for watcher in list(watchers):
                watcher.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._loads):
            task.cancel()
