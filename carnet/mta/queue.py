"""The outbound queue runner: delivery attempts, retries with back-off, delay and failure DSNs.

Each pass claims the due entries (:func:`carnet.mta.store.claim_due`: ``FOR UPDATE SKIP LOCKED``, a lease), groups
them by message and domain, and for each group:

1. looks up every recipient's certificate (:func:`carnet.directory.certificates.certificates_for`); a recipient
   without a valid one fails permanently (never sent in clear), an unreachable directory is a temporary failure;
2. encrypts the signed message once to all of the group's certificates (:meth:`carnet.mta.gateway.Gateway.encrypt`,
   legacy CBC only when the operator is marked legacy);
3. sends it over mutually authenticated TLS (:mod:`carnet.mta.delivery`) to the domain's first reachable target.

Outcomes are written in one transaction with the DSNs they cause: ``sent``; ``failed`` (5xx, or the queue lifetime
``mta.queue_lifetime`` is over) with a failure DSN; otherwise the next attempt after ``mta.retry_schedule[n]`` (1m,
5m, 15m, 30m, 1h, 2h, 4h, then every 4h by default), with one "delayed" DSN once the entry has waited
``mta.delay_dsn_after``. Sent and failed messages are purged a day after their last entry finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization
from sqlalchemy.ext.asyncio import AsyncSession

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.mta import delivery, dsn, store
from carnet.mta.router import Plan, Router

log = logging.getLogger(__name__)

#: How long a claimed entry is kept from other runners while it is being delivered.
LEASE = timedelta(minutes=10)
PURGE_AFTER = timedelta(days=1)


class QueueRunner:
    """Runs the queue of one process (several processes may run theirs on one PostgreSQL database)."""

    def __init__(self, db: Database, settings: Settings, router: Router) -> None:
        self.db = db
        self.settings = settings
        self.router = router
        self.gateway = router.gateway
        self.hostname = settings.mta.hostname or settings.domain
        self._wake = asyncio.Event()
        self._semaphore = asyncio.Semaphore(settings.mta.queue_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._client_cert: tuple[object, object] | None = None
        self.passes = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Work until cancelled or :meth:`stop`."""
        last_purge = utcnow()
        while not self._stopping:
            try:
                await self.run_once()
                if utcnow() - last_purge > timedelta(hours=1):
                    last_purge = utcnow()
                    async with self.db.transaction() as session:
                        await store.purge_finished(session, utcnow() - PURGE_AFTER)
            except Exception:
                log.exception("queue pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.mta.queue_poll_interval)
            self._wake.clear()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop after the deliveries in progress (at most ``grace`` seconds)."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)

    async def run_once(self) -> int:
        """One pass: claim what is due and deliver it (waits for the deliveries). Returns the entries claimed."""
        self.passes += 1
        limit = self.settings.mta.queue_concurrency * 8
        async with self.db.transaction() as session:
            claimed = await store.claim_due(session, utcnow(), limit, LEASE)
        if not claimed:
            return 0
        groups: dict[tuple[int, str], list[store.Claimed]] = defaultdict(list)
        for entry in claimed:
            groups[(entry.message_id, entry.domain)].append(entry)
        tasks = [asyncio.create_task(self._guarded(entries)) for entries in groups.values()]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks)
        finally:
            self._tasks.difference_update(tasks)
        return len(claimed)

    async def _guarded(self, entries: list[store.Claimed]) -> None:
        async with self._semaphore:
            try:
                await self._deliver(entries)
            except Exception as exc:
                log.exception("delivery of message %s failed unexpectedly", entries[0].message_id)
                await self._record(entries, {e.recipient: (0, f"4.3.0 internal error: {exc}") for e in entries}, "")

    async def _client_paths(self) -> tuple[object, object]:
        if self._client_cert is None:
            self._client_cert = await delivery.client_certificate(self.db, self.settings)
        return self._client_cert

    async def _deliver(self, entries: list[store.Claimed]) -> None:
        from carnet.directory.certificates import LookupStatus, certificates_for
        from carnet.directory.trustspace import operator_for, trust_anchors

        async with self.db.session() as session:
            message = await store.message(session, entries[0].message_id)
        if message is None:
            return
        outcome: dict[str, tuple[int, str]] = {}
        certificates = []
        legacy = False
        sendable: list[store.Claimed] = []
        for entry in entries:
            lookup = await certificates_for(self.db, self.settings, entry.recipient)
            if lookup.status is LookupStatus.FOUND:
                certificates.append(lookup.certificates[0])
                legacy = legacy or lookup.legacy_crypto
                sendable.append(entry)
            elif lookup.status is LookupStatus.UNREACHABLE:
                outcome[entry.recipient] = (0, f"4.4.3 the directory of {entry.domain} is unreachable: {lookup.detail}")
            elif lookup.status is LookupStatus.UNKNOWN_ADDRESS:
                outcome[entry.recipient] = (550, f"5.1.1 unknown address at its operator: {lookup.detail}")
            else:
                outcome[entry.recipient] = (
                    550,
                    f"5.7.1 no valid certificate to encrypt to ({lookup.status.value}: {lookup.detail}); "
                    "not sent in clear",
                )
        remote_mta = ""
        if sendable:
            domain = entries[0].domain
            operator = await operator_for(self.db, domain)
            if operator is not None:
                ca_pem = operator.ca_bundle_pem.decode()
            else:
                anchors = await trust_anchors(self.db, self.settings)
                ca_pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in anchors)
            error: delivery.DeliveryError | None = None
            try:
                targets = await delivery.targets(self.db, self.settings, domain)
            except delivery.DeliveryError as exc:  # DNS: the domain has no address, or the lookup failed
                targets, error = [], exc
            if not targets and error is None:
                error = delivery.DeliveryError(0, f"5.1.2 {domain} accepts no mail", permanent=True)
            cert, key = await self._client_paths()
            context = delivery.client_context(ca_pem, cert, key)  # type: ignore[arg-type]
            data = self.gateway.encrypt(message.raw, certificates, legacy=legacy) if targets else b""
            recipients = [delivery.OutRecipient(e.recipient, e.notify, e.orcpt) for e in sendable]
            for target in targets:
                try:
                    results = await delivery.send(
                        target,
                        context=context,
                        helo=self.hostname,
                        sender=message.sender,
                        recipients=recipients,
                        data=data,
                        envid=message.envid,
                        ret=message.ret,
                        reply_timeout=self.settings.mta.smtp_timeout,
                    )
                except delivery.DeliveryError as exc:
                    error = exc
                    remote_mta = target.host
                    if exc.code:  # the peer answered: do not try the next target with the same answer
                        break
                    continue
                outcome.update(results)
                remote_mta, error = target.host, None
                break
            if error is not None:
                for entry in sendable:
                    outcome[entry.recipient] = (error.code, str(error.text if error.code else error))
        await self._record(entries, outcome, remote_mta, message=message)

    async def _record(
        self,
        entries: list[store.Claimed],
        outcome: dict[str, tuple[int, str]],
        remote_mta: str,
        *,
        message: object = None,
    ) -> None:
        """Write each entry's new state and the DSNs due, in one transaction."""
        from carnet.mta.models import QueuedMessage

        now = utcnow()
        failed: list[dsn.RecipientStatus] = []
        delayed: list[dsn.RecipientStatus] = []
        updates: list[dict[str, object]] = []
        for entry in entries:
            code, text = outcome.get(entry.recipient, (0, "4.0.0 not attempted"))
            if code == 250:
                updates.append({"entry": entry, "state": store.SENT, "error": text})
                log.info("delivered to %s via %s", entry.recipient, remote_mta)
                continue
            enhanced = _enhanced(text, code)
            diagnostic = f"{code} {text}" if code else text
            permanent = code >= 500 or enhanced.startswith("5")
            next_at = now + self._delay(entry.attempts)
            if permanent or now >= entry.expires_at:
                status = enhanced if permanent else "4.4.7"
                why = diagnostic if permanent else f"queue lifetime over; last error: {diagnostic}"
                updates.append({"entry": entry, "state": store.FAILED, "error": why})
                if dsn.wants(entry.notify, "failed"):
                    failed.append(
                        dsn.RecipientStatus(
                            entry.recipient,
                            "failed",
                            status if status[0] == "5" else "5" + status[1:],
                            diagnostic=why,
                            remote_mta=remote_mta,
                            orcpt=entry.orcpt,
                            last_attempt=now,
                        )
                    )
                log.warning("giving up on %s: %s", entry.recipient, why)
                continue
            notify_delay = (
                not entry.delay_notified
                and now - entry.created_at >= self.settings.mta.delay_dsn_after
                and dsn.wants(entry.notify, "delayed")
            )
            if notify_delay:
                delayed.append(
                    dsn.RecipientStatus(
                        entry.recipient,
                        "delayed",
                        enhanced,
                        diagnostic=diagnostic,
                        remote_mta=remote_mta,
                        orcpt=entry.orcpt,
                        last_attempt=now,
                        will_retry_until=entry.expires_at,
                    )
                )
            updates.append(
                {
                    "entry": entry,
                    "state": store.QUEUED,
                    "error": diagnostic,
                    "next": min(next_at, max(entry.expires_at, now)),
                    "delay_notified": True if notify_delay else None,
                }
            )
            log.info("deferred %s until %s: %s", entry.recipient, next_at, diagnostic)
        plans: list[Plan] = []
        if (failed or delayed) and isinstance(message, QueuedMessage) and message.sender:
            for statuses in (failed, delayed):
                if statuses:
                    plans.append(
                        await self.router.dsn_plan(
                            message.sender,
                            message.raw,
                            statuses,
                            envid=message.envid,
                            ret=message.ret,
                            arrival=message.created_at,
                        )
                    )

        async def write(session: AsyncSession) -> None:
            for update in updates:
                entry = update["entry"]
                assert isinstance(entry, store.Claimed)
                await store.finish(
                    session,
                    entry.entry_id,
                    state=str(update["state"]),
                    now=now,
                    error=str(update["error"]),
                    remote_mta=remote_mta,
                    next_attempt_at=update.get("next"),  # type: ignore[arg-type]
                    delay_notified=update.get("delay_notified"),  # type: ignore[arg-type]
                )
            for plan in plans:
                await self.router.apply(session, plan)

        async with self.db.transaction() as session:
            await write(session)
        if any(plan.queue or any(f.queue for f in plan.followups) for plan in plans):
            self.wake()

    def _delay(self, attempts: int) -> timedelta:
        schedule = self.settings.mta.retry_schedule
        return schedule[min(attempts, len(schedule) - 1)]


def _enhanced(text: str, code: int) -> str:
    first = text.split(" ", 1)[0]
    if first.count(".") == 2 and first.replace(".", "").isdigit():
        return first
    if code >= 500:
        return "5.0.0"
    return "4.0.0"


def next_attempt(created: datetime, attempts: int, settings: Settings) -> datetime:
    schedule = settings.mta.retry_schedule
    return created + sum((schedule[min(i, len(schedule) - 1)] for i in range(attempts)), timedelta())
