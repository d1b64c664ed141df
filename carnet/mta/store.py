"""The MTA's SQL: the outbound queue and the patients' correspondents. Nothing else in ``carnet.mta`` speaks SQL.

Every function takes the caller's session, so a message's local deliveries (``MailStore.deliver_in``), its queue
entries and its correspondents change in one transaction: the one that must commit before ``250`` is sent.

Queue claims (:func:`claim_due`) lock the due rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
``carnet serve`` processes on one database never take the same entry; the claim pushes ``next_attempt_at`` forward
by a lease, so a process that dies mid-delivery leaves the entry to be retried after the lease. SQLite has one
writer at a time, which gives the same guarantee.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from carnet.mta.models import Correspondent, QueuedMessage, QueueEntry

QUEUED, SENT, FAILED = "queued", "sent", "failed"


def _insert(session: AsyncSession, table: type) -> postgresql.Insert | sqlite.Insert:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)  # type: ignore[return-value]


# Correspondents -------------------------------------------------------------------------------------------------


async def correspondent_state(session: AsyncSession, patient_mailbox_id: int, address: str) -> str:
    """``open``, ``closed`` or ``none`` for a (local patient, address) pair."""
    row = (
        await session.execute(
            select(Correspondent.closed_at).where(
                Correspondent.patient_mailbox_id == patient_mailbox_id, Correspondent.address == address
            )
        )
    ).first()
    if row is None:
        return "none"
    return "closed" if row[0] is not None else "open"


async def record_correspondent(
    session: AsyncSession, patient_mailbox_id: int, address: str, *, closed: bool, now: datetime
) -> None:
    """``address`` wrote to the patient (open the exchange) or closed it with ``X-MSS-MES: FIN``."""
    statement = _insert(session, Correspondent).values(
        patient_mailbox_id=patient_mailbox_id,
        address=address,
        opened_at=now,
        closed_at=now if closed else None,
        updated_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["patient_mailbox_id", "address"],
        set_={"closed_at": now if closed else None, "updated_at": now},
    )
    await session.execute(statement)


# Queue ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewEntry:
    recipient: str
    domain: str
    orcpt: str | None
    notify: str | None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed queue entry with what delivery needs of its message."""

    entry_id: int
    message_id: int
    recipient: str
    domain: str
    orcpt: str | None
    notify: str | None
    attempts: int
    created_at: datetime
    expires_at: datetime
    delay_notified: bool
    last_error: str


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    sender: str,
    author_mailbox_id: int | None,
    origin: str,
    envid: str | None,
    ret: str | None,
    message_id: str,
    raw: bytes,
    entries: Sequence[NewEntry],
    now: datetime,
    lifetime: timedelta,
) -> bool:
    """Queue ``raw`` for ``entries``; False (and nothing written) when a message with ``key`` is already queued."""
    inserted = await session.execute(
        _insert(session, QueuedMessage)
        .values(
            key=key,
            sender=sender,
            author_mailbox_id=author_mailbox_id,
            origin=origin,
            envid=envid,
            ret=ret,
            message_id=message_id[:998],
            size=len(raw),
            raw=raw,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(QueuedMessage.id)
    )
    row = inserted.first()
    if row is None:
        return False
    for entry in entries:
        session.add(
            QueueEntry(
                message_id=row[0],
                recipient=entry.recipient,
                domain=entry.domain,
                orcpt=entry.orcpt,
                notify=entry.notify,
                state=QUEUED,
                attempts=0,
                next_attempt_at=now,
                expires_at=now + lifetime,
                delay_notified=False,
                last_error="",
                remote_mta="",
                created_at=now,
                updated_at=now,
            )
        )
    await session.flush()
    return True


async def claim_due(session: AsyncSession, now: datetime, limit: int, lease: timedelta) -> list[Claimed]:
    """Take up to ``limit`` due entries (oldest first) for this process; see the module docstring."""
    statement = (
        select(QueueEntry)
        .where(QueueEntry.state == QUEUED, QueueEntry.next_attempt_at <= now)
        .order_by(QueueEntry.next_attempt_at, QueueEntry.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list((await session.execute(statement)).scalars())
    claimed = []
    for row in rows:
        row.next_attempt_at = now + lease
        claimed.append(
            Claimed(
                row.id,
                row.message_id,
                row.recipient,
                row.domain,
                row.orcpt,
                row.notify,
                row.attempts,
                row.created_at,
                row.expires_at,
                row.delay_notified,
                row.last_error,
            )
        )
    await session.flush()
    return claimed


async def message(session: AsyncSession, message_id: int) -> QueuedMessage | None:
    return await session.get(QueuedMessage, message_id)


async def finish(
    session: AsyncSession,
    entry_id: int,
    *,
    state: str,
    now: datetime,
    error: str = "",
    remote_mta: str = "",
    next_attempt_at: datetime | None = None,
    delay_notified: bool | None = None,
) -> None:
    """Record the outcome of one attempt: ``sent``, ``failed`` or ``queued`` again at ``next_attempt_at``."""
    values: dict[str, object] = {
        "state": state,
        "attempts": QueueEntry.attempts + 1,
        "updated_at": now,
        "last_error": error[:2000],
        "remote_mta": remote_mta[:300],
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    if delay_notified is not None:
        values["delay_notified"] = delay_notified
    await session.execute(update(QueueEntry).where(QueueEntry.id == entry_id).values(**values))


async def entries_of(session: AsyncSession, message_id: int) -> list[QueueEntry]:
    return list(
        (await session.execute(select(QueueEntry).where(QueueEntry.message_id == message_id).order_by(QueueEntry.id)))
        .scalars()
        .all()
    )


async def next_due(session: AsyncSession) -> datetime | None:
    return (
        await session.execute(select(func.min(QueueEntry.next_attempt_at)).where(QueueEntry.state == QUEUED))
    ).scalar()


async def counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(QueueEntry.state, func.count()).group_by(QueueEntry.state))
    return {state: count for state, count in rows.all()}


async def purge_finished(session: AsyncSession, before: datetime) -> int:
    """Delete messages all of whose entries finished before ``before`` (their history is in the logs)."""
    pending = select(QueueEntry.message_id).where((QueueEntry.state == QUEUED) | (QueueEntry.updated_at >= before))
    result = await session.execute(
        delete(QueuedMessage).where(QueuedMessage.created_at < before, QueuedMessage.id.not_in(pending))
    )
    return result.rowcount or 0  # type: ignore[attr-defined]
