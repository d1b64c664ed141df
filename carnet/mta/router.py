"""The delivery router: what happens to each recipient of an accepted message, committed before ``250``.

For each recipient the router picks one route (:meth:`Router.route`): a brick that owns the address
(:mod:`carnet.mta.bricks`), a local mailbox (its INBOX, through ``MailStore.deliver_many``), or the outbound queue
(another operator of the trust space). The whole message — every local delivery, every brick's writes, every queue
entry, the patients' correspondents, and the MDNs and DSNs it causes — is one :class:`Plan` written in one
transaction (:meth:`Router.commit`); the SMTP session answers ``250`` only after that transaction committed.

Idempotency: a message's key is the SHA-256 of its envelope sender and data as received when it has a Message-ID
(:func:`message_key`);
local deliveries use it as ``delivery_key`` and queued messages as their unique key, so a client that sends the
same transaction again (its ``250`` was lost in a crash) does not get a second copy delivered.

Group commit: :class:`Committer` writes the plans of concurrent SMTP transactions together, in one database
transaction, up to ``mta.group_commit_size`` at a time, their local deliveries with one ``MailStore.deliver_many``
call; if that transaction fails, each plan is written again alone, so one bad message never fails others.

Message path, outbound (submission, trusted networks): header normalisation (``Message-ID``, ``Date``,
``X-MSS-NIL``; forged ``Carnet-Signature`` removed) → :meth:`~carnet.mta.gateway.Gateway.outbound` (sign or verify)
→ ``Received`` → routes. Inbound (relay): forged ``Carnet-Signature`` removed → per recipient
:meth:`~carnet.mta.gateway.Gateway.inbound` (decrypt, verify) → :func:`carnet.mta.policy.decide` → routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.directory.addresses import AddressError, is_local_domain, normalise_address
from carnet.directory.records import MailboxInfo, MailboxKind
from carnet.mailbox.api import Delivery, QuotaExceeded, StoreError
from carnet.mta import dsn, headers, mdn, policy, store
from carnet.mta.bricks import BrickHandler, BrickMessage, BrickRegistry, Reply, default_registry
from carnet.mta.gateway import Gateway, GatewayRefusal
from carnet.pki.smime import SignerCredential, SmimeResult, sign_message
from carnet.pki.smime.binding import BindingError, sender_address

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Seconds a directory answer is reused for routing (a disabled mailbox may receive for this long).
LOOKUP_TTL = 5.0
#: Where :meth:`Router.apply` leaves a committer transaction's local deliveries (``session.info``).
_LOCAL_KEY = "carnet.mta.local_deliveries"


class LocalStore(Protocol):
    """The part of :class:`carnet.mailbox.store.MailStore` local delivery needs."""

    async def deliver_many(self, session: AsyncSession, deliveries: Sequence[Delivery]) -> list[Any]: ...


class RecipientRefused(Exception):
    def __init__(self, code: int, status: str, text: str) -> None:
        super().__init__(text)
        self.code, self.status, self.text = code, status, text

    def reply(self) -> str:
        return f"{self.code} {self.status} {self.text}"


# Envelopes and routes -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Recipient:
    address: str
    orcpt: str | None = None  # RFC 3461 §4.2 ORCPT
    notify: str | None = None  # RFC 3461 §4.1 NOTIFY


@dataclass(slots=True)
class Envelope:
    """One SMTP transaction: reverse-path, recipients, RFC 3461 parameters and where it came from."""

    sender: str
    recipients: list[Recipient]
    origin: str  # submission | trusted | relay | dsn | mdn | brick
    envid: str | None = None
    ret: str | None = None
    helo: str = ""
    peer: str = ""
    protocol: str = "ESMTP"  # RFC 3848 with-protocol: ESMTPS, ESMTPSA, …
    #: Submission: every address the authenticated user may use as From; trusted network: the bound mailbox.
    allowed_from: frozenset[str] = frozenset()
    #: Relay: the operator (domain) whose client certificate was presented.
    operator: str | None = None


@dataclass(frozen=True, slots=True)
class LocalRoute:
    mailbox: MailboxInfo


@dataclass(frozen=True, slots=True)
class BrickRoute:
    handler: BrickHandler
    mailbox: MailboxInfo | None


@dataclass(frozen=True, slots=True)
class RemoteRoute:
    domain: str


Route = LocalRoute | BrickRoute | RemoteRoute


# Plans ------------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class LocalItem:
    mailbox_id: int
    raw: bytes
    signature: dict[str, object]
    delivery_key: str


@dataclass(slots=True)
class BrickItem:
    handler: BrickHandler
    message: BrickMessage


@dataclass(slots=True)
class QueueItem:
    key: str
    sender: str
    author_mailbox_id: int | None
    origin: str
    envid: str | None
    ret: str | None
    message_id: str
    raw: bytes
    entries: list[store.NewEntry]


@dataclass(slots=True)
class Plan:
    """Everything one accepted message writes, in one transaction."""

    key: str
    local: list[LocalItem] = field(default_factory=list)
    bricks: list[BrickItem] = field(default_factory=list)
    queue: list[QueueItem] = field(default_factory=list)
    correspondents: list[tuple[int, str, bool]] = field(default_factory=list)
    followups: list[Plan] = field(default_factory=list)
    refused: list[tuple[Recipient, str]] = field(default_factory=list)  # accepted-then-refused recipients (relay)

    @property
    def empty(self) -> bool:
        return not (self.local or self.bricks or self.queue or self.followups or self.correspondents)


@dataclass(frozen=True, slots=True)
class Accepted:
    key: str
    local: int
    remote: int
    refused: int


def _queues(plan: Plan) -> bool:
    return bool(plan.queue) or any(_queues(followup) for followup in plan.followups)


def message_key(sender: str, data: bytes) -> str:
    """SHA-256 of the envelope sender and the message as received: the same transaction sent twice has one key.

    Only for a message with a ``Message-ID`` (RFC 5322 §3.6.4: unique per message), so that two messages that merely
    look alike (a lab system sending the same result twice without Message-ID or Date) are both delivered; without
    one, the key is random and a retransmission after a lost ``250`` may be delivered twice (RFC 5321 §6.1 accepts
    that risk).
    """
    header, _ = headers.split_message(data)
    if b"message-id:" not in header.lower():
        return secrets.token_hex(32)
    digest = hashlib.sha256(sender.lower().encode("utf-8", "surrogateescape") + b"\0")
    digest.update(data)
    return digest.hexdigest()


# The committer ----------------------------------------------------------------------------------------------------


Work = Callable[[AsyncSession], Awaitable[T]]
Finish = Callable[[AsyncSession], Awaitable[None]]


class Committer:
    """Group commit: concurrent callers' writes share one transaction (see the module docstring)."""

    def __init__(self, db: Database, max_batch: int = 64) -> None:
        self.db = db
        self.max_batch = max_batch
        self._pending: list[tuple[Work[Any], Finish | None, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="carnet-group-commit")

    async def stop(self) -> None:
        """Finish what is pending, then stop."""
        while self._pending or self._busy:
            self._idle.clear()
            await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self, work: Work[T], finish: Finish | None = None) -> T:
        """Run ``work(session)`` in a transaction shared with other callers; returns once it committed.

        ``finish(session)`` runs once per transaction after every work of it, before the commit, however many
        works passed it (the router's batched local deliveries)."""
        if self._task is None:  # no group commit loop: one transaction of our own
            return (await self._transaction([(work, finish)]))[0]
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, finish, future))
        self._wake.set()
        return await future

    async def _transaction(self, works: Sequence[tuple[Work[Any], Finish | None]]) -> list[Any]:
        async with self.db.transaction() as session:
            results = [await work(session) for work, _finish in works]
            for finish in dict.fromkeys(finish for _work, finish in works if finish is not None):
                await finish(session)
        return results

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._busy = True
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                batch = [(work, finish, future) for work, finish, future in batch if not future.cancelled()]
                if batch:
                    await self._commit(batch)
            self._busy = False
            self._idle.set()

    async def _commit(self, batch: list[tuple[Work[Any], Finish | None, asyncio.Future[Any]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        if len(batch) > 1:
            try:
                results = await self._transaction([(work, finish) for work, finish, _future in batch])
            except Exception:
                log.info("group commit of %d failed; committing each alone", len(batch), exc_info=True)
            else:
                for (_work, _finish, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                return
        for work, finish, future in batch:
            try:
                [result] = await self._transaction([(work, finish)])
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)


# The router -------------------------------------------------------------------------------------------------------


class Router:
    """Routes, prepares and commits accepted messages (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        gateway: Gateway,
        local_store: LocalStore,
        *,
        committer: Committer | None = None,
        bricks: BrickRegistry | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.gateway = gateway
        self.local_store = local_store
        self.committer = committer or Committer(db, settings.mta.group_commit_size)
        self.bricks = bricks or default_registry
        self.hostname = settings.mta.hostname or settings.domain
        self._lookups: dict[str, tuple[float, MailboxInfo | None]] = {}
        self._postmaster: tuple[str, SignerCredential] | None = None
        #: Called after a commit that queued mail for remote delivery (the queue runner's wake-up).
        self.on_enqueue: Callable[[], None] | None = None

    # Directory lookups --------------------------------------------------------------------------------------------

    async def mailbox(self, address: str) -> MailboxInfo | None:
        """The directory mailbox of a local address (cached for :data:`LOOKUP_TTL` seconds)."""
        now = time.monotonic()
        cached = self._lookups.get(address)
        if cached is not None and now - cached[0] < LOOKUP_TTL:
            return cached[1]
        from carnet.directory.mailboxes import lookup_mailbox

        info = await lookup_mailbox(self.db, address)
        if len(self._lookups) > 50_000:
            self._lookups.clear()
        self._lookups[address] = (now, info)
        return info

    def is_local(self, address: str) -> bool:
        return is_local_domain(address.rpartition("@")[2], self.settings.domain)

    async def route(self, address: str) -> Route:
        """Where mail for ``address`` goes; raises :class:`RecipientRefused` when it cannot go anywhere."""
        try:
            address = normalise_address(address)
        except AddressError:
            raise RecipientRefused(553, "5.1.3", "malformed recipient address") from None
        handler = self.bricks.find(address)
        if handler is not None:
            return BrickRoute(handler, await self.mailbox(address) if self.is_local(address) else None)
        domain = address.rpartition("@")[2]
        if self.is_local(address):
            info = await self.mailbox(address)
            if info is None:
                raise RecipientRefused(550, "5.1.1", f"no mailbox {address} here")
            if not info.deliverable:
                raise RecipientRefused(550, "5.2.1", f"mailbox {address} does not receive mail ({info.reason})")
            return LocalRoute(info)
        return RemoteRoute(domain)

    async def check_recipient(self, envelope: Envelope, address: str, author: MailboxInfo | None) -> Route:
        """RCPT-time checks for a recipient of ``envelope``: routing, trust space, patient rules, certificate."""
        route = await self.route(address)
        address = normalise_address(address)
        if envelope.origin == "relay" and isinstance(route, RemoteRoute):
            raise RecipientRefused(550, "5.7.1", f"relaying to {route.domain} denied: not a domain of {self.hostname}")
        if isinstance(route, RemoteRoute):
            await self._check_remote(address, route)
        sender_patient = policy.sender_is_patient(author, envelope.sender, self.settings.domain)
        if isinstance(route, LocalRoute) and route.mailbox.kind is MailboxKind.PAT and sender_patient:
            raise RecipientRefused(550, "5.7.1", "a patient's mailbox only receives mail from professionals")
        if (
            isinstance(route, RemoteRoute)
            and policy.is_patient_address(address, self.settings.domain)
            and sender_patient
        ):
            raise RecipientRefused(550, "5.7.1", "a patient's mailbox only receives mail from professionals")
        if author is not None and author.kind is MailboxKind.PAT:
            async with self.db.session() as session:
                state = await store.correspondent_state(session, author.id, address)
            if state != "open":
                why = "closed the exchange (X-MSS-MES: FIN)" if state == "closed" else "has not written to you"
                raise RecipientRefused(
                    550, "5.7.1", f"you may only answer a professional who wrote to you; {address} {why}"
                )
        return route

    async def _check_remote(self, address: str, route: RemoteRoute) -> None:
        from carnet.directory.certificates import LookupStatus, certificates_for
        from carnet.directory.trustspace import operator_for

        if route.domain not in self.settings.mta.transport_map and await operator_for(self.db, route.domain) is None:
            raise RecipientRefused(550, "5.7.1", f"{route.domain} is not in the trust space: relaying denied")
        lookup = await certificates_for(self.db, self.settings, address)
        if lookup.status is LookupStatus.FOUND or lookup.status is LookupStatus.UNREACHABLE:
            return  # unreachable: the queue will look again (and bounce if it never finds one)
        if lookup.status is LookupStatus.UNKNOWN_ADDRESS:
            raise RecipientRefused(550, "5.1.1", f"{address}: unknown at its operator ({lookup.detail})")
        raise RecipientRefused(
            550, "5.7.1", f"{address} has no valid certificate to encrypt to ({lookup.status.value}: {lookup.detail})"
        )

    # Accepting a message ------------------------------------------------------------------------------------------

    async def accept(self, envelope: Envelope, data: bytes) -> Accepted:
        """Gateway, route and commit one received message; raises GatewayRefusal / RecipientRefused to refuse it."""
        try:
            key = message_key(envelope.sender, data)
            if envelope.origin == "relay":
                plan = await self._inbound(envelope, data, key)
            else:
                plan = await self._outbound(envelope, data, key)
        except headers.HeaderError as exc:
            raise GatewayRefusal(554, "5.6.0", f"malformed header block (RFC 5322 §2.2): {exc}") from None
        await self.commit(plan)
        remote = sum(len(q.entries) for q in plan.queue)
        return Accepted(key, len(plan.local) + len(plan.bricks), remote, len(plan.refused))

    async def commit(self, plan: Plan) -> None:
        await self.committer.run(lambda session: self.apply(session, plan, batched=True), self.deliver_batched)
        if self.on_enqueue is not None and _queues(plan):
            self.on_enqueue()

    def _received(self, envelope: Envelope, key: str, recipient: str | None = None) -> tuple[str, str]:
        """A ``Received`` field (RFC 5321 §4.4, RFC 3848 protocol names)."""
        helo = "".join(c for c in envelope.helo if c.isprintable() and c not in "();\\")[:100] or "unknown"
        peer = f" ({envelope.peer})" if envelope.peer else ""
        target = f" for <{recipient}>" if recipient else ""
        return (
            "Received",
            f"from {helo}{peer} by {self.hostname} (carnet) with {envelope.protocol} id {key[:16]}{target}; "
            f"{headers.date_now()}",
        )

    async def _outbound(self, envelope: Envelope, data: bytes, key: str) -> Plan:
        owned = [headers.SIGNATURE_FIELD, "return-path"]
        header, _ = headers.split_message(data)
        found = headers.index(header)  # the header parsed once for every lookup below
        nil = [headers.field_value(raw_field) for raw_field in found.get(headers.MSS_NIL_FIELD.lower(), [])]
        if nil not in ([], [headers.MSS_NIL]):
            owned.append(headers.MSS_NIL_FIELD)  # a value other than ours (removed only then: bytes stay as sent)
        raw = data
        if any(name.lower() in found for name in owned):
            raw = headers.remove(data, owned)
            header, _ = headers.split_message(raw)
            found = headers.index(header)
        try:
            from_address = sender_address(header)
        except BindingError as exc:
            raise GatewayRefusal(550, "5.6.0", f"From: {exc}") from None
        if from_address not in envelope.allowed_from:
            raise GatewayRefusal(550, "5.7.1", f"you may not send as {from_address}")
        author = await self.mailbox(from_address)
        if author is None or not author.active:
            raise GatewayRefusal(550, "5.7.1", f"{from_address} is not an active mailbox")
        added: list[tuple[str, str]] = []
        if headers.first(found, "message-id") is None:
            added.append(("Message-ID", headers.new_message_id(self.settings.domain)))  # RFC 6409 §8.3
        if headers.first(found, "date") is None:
            added.append(("Date", headers.date_now()))  # RFC 6409 §8.2
        if headers.first(found, headers.MSS_NIL_FIELD) is None:
            added.append((headers.MSS_NIL_FIELD, headers.MSS_NIL))
        raw = headers.prepend(raw, added)
        outbound = await self.gateway.outbound(raw, author, from_address)
        signed = headers.prepend(outbound.raw, [self._received(envelope, key)])
        signature = outbound.signature or outbound.result.to_dict()
        closes = policy.closes_exchange(headers.first(found, headers.MSS_MES_FIELD))
        plan = Plan(key)
        remote: list[store.NewEntry] = []
        for recipient in envelope.recipients:
            route = await self.route(recipient.address)
            address = normalise_address(recipient.address)
            if isinstance(route, RemoteRoute):
                remote.append(store.NewEntry(address, route.domain, recipient.orcpt, recipient.notify))
                continue
            stored = self._local_copy(signed, envelope.sender, signature)
            if isinstance(route, BrickRoute):
                plan.bricks.append(
                    BrickItem(
                        route.handler, BrickMessage(address, envelope.sender, from_address, stored, signature, key)
                    )
                )
                continue
            plan.local.append(LocalItem(route.mailbox.id, stored, signature, key))
            if route.mailbox.kind is MailboxKind.PAT and author.kind is not MailboxKind.PAT:
                plan.correspondents.append((route.mailbox.id, from_address, closes))
            await self._add_mdn(plan, header, outbound.report, envelope, route.mailbox, recipient)
        if remote:
            message_id = headers.first(found, "message-id") or next((v for n, v in added if n == "Message-ID"), "")
            plan.queue.append(
                QueueItem(
                    key,
                    envelope.sender,
                    author.id,
                    envelope.origin,
                    envelope.envid,
                    envelope.ret,
                    message_id,
                    signed,
                    remote,
                )
            )
        return plan

    async def _inbound(self, envelope: Envelope, data: bytes, key: str) -> Plan:
        raw = headers.remove(data, [headers.SIGNATURE_FIELD, "return-path"])
        raw = headers.prepend(raw, [self._received(envelope, key)])
        header, _ = headers.split_message(raw)
        try:
            from_address = sender_address(header)
        except BindingError:
            from_address = ""
        closes = policy.closes_exchange(headers.get(header, headers.MSS_MES_FIELD))
        plan = Plan(key)
        decisions: list[policy.Decision] = []
        shared: tuple[bytes, SmimeResult, str | None] | None = None
        from carnet.pki.smime import is_enveloped

        enveloped = is_enveloped(raw)
        for recipient in envelope.recipients:
            route = await self.route(recipient.address)
            address = normalise_address(recipient.address)
            if isinstance(route, RemoteRoute):
                raise RecipientRefused(550, "5.7.1", "relaying denied")
            mailbox = route.mailbox
            if mailbox is None and enveloped:  # a brick without a directory mailbox cannot decrypt
                plan.refused.append((recipient, "5.7.5 no key to decrypt for this address"))
                decisions.append(policy.Decision("reject", 550, "5.7.5", "no key to decrypt for this address"))
                continue
            if shared is not None and not enveloped:
                stored_raw, result, report = shared
            else:
                assert mailbox is not None or not enveloped
                opened = await self.gateway.inbound(raw, mailbox) if mailbox is not None else None
                if opened is None:
                    outcome = await self.gateway.verify_only(raw)
                    stored_raw, result, report = raw, outcome.result, outcome.report
                else:
                    stored_raw, result, report = opened.raw, opened.result, opened.report
                shared = (stored_raw, result, report)
            decision = policy.decide(result, self.settings.mta)
            decisions.append(decision)
            if decision.action == "defer":
                raise GatewayRefusal(decision.code, decision.status, decision.text)
            if decision.action == "reject":
                plan.refused.append((recipient, f"{decision.status} {decision.text}"))
                continue
            signature = result.to_dict()
            stored = self._local_copy(stored_raw, envelope.sender, signature)
            if isinstance(route, BrickRoute):
                plan.bricks.append(
                    BrickItem(
                        route.handler, BrickMessage(address, envelope.sender, from_address, stored, signature, key)
                    )
                )
                continue
            plan.local.append(LocalItem(mailbox.id, stored, signature, key))  # type: ignore[union-attr]
            if (
                mailbox.kind is MailboxKind.PAT
                and from_address
                and not policy.is_patient_address(  # type: ignore[union-attr]
                    from_address, self.settings.domain
                )
            ):
                plan.correspondents.append((mailbox.id, from_address, closes))  # type: ignore[union-attr]
            await self._add_mdn(plan, header, report, envelope, mailbox, recipient)  # type: ignore[arg-type]
        if plan.refused and not (plan.local or plan.bricks):
            first = next(d for d in decisions if d.action == "reject")
            raise GatewayRefusal(first.code, first.status, first.text)
        if plan.refused and envelope.sender:
            statuses = [
                dsn.RecipientStatus(r.address, "failed", why.split(" ", 1)[0], diagnostic=f"550 {why}", orcpt=r.orcpt)
                for r, why in plan.refused
                if dsn.wants(r.notify, "failed")
            ]
            if statuses:
                await self._add_dsn(plan, envelope.sender, raw, statuses, envid=envelope.envid, ret=envelope.ret)
        return plan

    def _local_copy(self, raw: bytes, sender: str, signature: dict[str, object]) -> bytes:
        """The bytes stored in a mailbox: ``Return-Path`` (RFC 5321 §4.4) and our ``Carnet-Signature`` on top."""
        return headers.prepend(
            raw,
            [("Return-Path", f"<{sender}>"), (headers.SIGNATURE_FIELD, headers.signature_value(signature))],
        )

    # Generated messages (MDN, DSN, brick replies) -----------------------------------------------------------------

    async def _add_mdn(
        self,
        plan: Plan,
        header: bytes,
        report: str | None,
        envelope: Envelope,
        mailbox: MailboxInfo,
        recipient: Recipient,
    ) -> None:
        if not self.settings.mta.automatic_mdn or report is not None:
            return
        to = mdn.requested(header, b"", envelope.sender)
        if to is None:
            return
        raw = mdn.build_mdn(
            recipient=mailbox.address,
            to=to,
            original_header=header,
            reporting_ua=self.hostname,
            original_recipient=dsn.xtext_decode(recipient.orcpt.split(";", 1)[1])
            if recipient.orcpt and ";" in recipient.orcpt
            else None,
        )
        try:
            credential = await self.gateway.credential(mailbox.certificate_serial)
        except Exception:  # no key: no MDN, the message itself is still delivered
            log.warning("no MDN from %s: its key is not available", mailbox.address)
            return
        followup = await self.generated(raw, mailbox.address, credential, [to], origin="mdn", author_id=mailbox.id)
        if followup is not None:
            plan.followups.append(followup)

    async def postmaster(self) -> tuple[str, SignerCredential]:
        """``postmaster@DOMAIN`` and its signing credential (an S/MIME certificate of the organisations CA, issued
        on first use)."""
        if self._postmaster is not None:
            return self._postmaster
        from carnet.pki import authority

        address = f"postmaster@{self.settings.domain}"
        records = [r for r in await authority.find_by_email(self.db, address) if r.status() == "valid" and r.key_held]
        if records:
            serial = records[0].serial
        else:
            issued = await authority.issue(
                self.db,
                self.settings,
                authority.IssueRequest(
                    profile="smime",
                    common_name=f"Postmaster {self.settings.domain}",
                    emails=[address],
                    organisation=self.settings.domain,
                    authority="organisations",
                ),
            )
            serial = issued.serial
        self._postmaster = (address, await self.gateway.credential(serial))
        return self._postmaster

    async def _add_dsn(
        self,
        plan: Plan,
        to: str,
        original: bytes,
        statuses: Sequence[dsn.RecipientStatus],
        *,
        envid: str | None,
        ret: str | None,
        arrival: Any = None,
    ) -> None:
        address, credential = await self.postmaster()
        raw = dsn.build_dsn(
            reporting_mta=self.hostname,
            postmaster=address,
            to=to,
            original=original,
            recipients=statuses,
            arrival=arrival or utcnow(),
            envid=envid,
            ret=ret,
        )
        followup = await self.generated(raw, address, credential, [to], origin="dsn", author_id=None)
        if followup is not None:
            plan.followups.append(followup)

    async def dsn_plan(
        self,
        to: str,
        original: bytes,
        statuses: Sequence[dsn.RecipientStatus],
        *,
        envid: str | None,
        ret: str | None,
        arrival: Any = None,
    ) -> Plan:
        """A plan holding only a DSN (the queue runner commits it with the entries' new state)."""
        plan = Plan(key="")
        await self._add_dsn(plan, to, original, statuses, envid=envid, ret=ret, arrival=arrival)
        return plan

    async def generated(
        self,
        raw: bytes,
        from_address: str,
        credential: SignerCredential,
        to: Sequence[str],
        *,
        origin: str,
        author_id: int | None,
    ) -> Plan | None:
        """Sign a message carnet writes (MDN, DSN, brick reply) and route it with a null envelope sender (replies
        of bricks: from their address). Recipients that cannot be reached are logged and skipped."""
        raw = headers.prepend(raw, [(headers.MSS_NIL_FIELD, headers.MSS_NIL)])
        signed = sign_message(raw, credential)
        result = await self.gateway.signer_result(credential, from_address)
        signature = result.to_dict()
        key = hashlib.sha256(signed).hexdigest()
        sender = "" if origin in ("mdn", "dsn") else from_address
        envelope = Envelope(sender=sender, recipients=[], origin=origin, helo=self.hostname, protocol="local")
        signed = headers.prepend(signed, [self._received(envelope, key)])
        plan = Plan(key)
        remote: list[store.NewEntry] = []
        for address in to:
            try:
                route = await self.route(address)
                if isinstance(route, RemoteRoute):
                    await self._check_remote(normalise_address(address), route)
            except RecipientRefused as exc:
                log.warning("%s from %s to %s not sent: %s", origin, from_address, address, exc.text)
                continue
            address = normalise_address(address)
            if isinstance(route, RemoteRoute):
                remote.append(store.NewEntry(address, route.domain, None, "NEVER"))
            elif isinstance(route, BrickRoute):
                stored = self._local_copy(signed, sender, signature)
                plan.bricks.append(
                    BrickItem(route.handler, BrickMessage(address, sender, from_address, stored, signature, key))
                )
            else:
                plan.local.append(
                    LocalItem(route.mailbox.id, self._local_copy(signed, sender, signature), signature, key)
                )
        if remote:
            header, _ = headers.split_message(signed)
            plan.queue.append(
                QueueItem(
                    key, sender, author_id, origin, None, None, headers.get(header, "message-id") or "", signed, remote
                )
            )
        return None if plan.empty else plan

    # Writing --------------------------------------------------------------------------------------------------------

    async def apply(self, session: AsyncSession, plan: Plan, *, depth: int = 0, batched: bool = False) -> None:
        """Write ``plan`` in ``session`` (the caller commits).

        ``batched``: leave the local deliveries (of the plan and its follow-ups) in the session for
        :meth:`deliver_batched`, which the committer calls once for every plan of its transaction."""
        local: list[Delivery] = session.info.setdefault(_LOCAL_KEY, [])
        await self._apply(session, plan, local, depth)
        if not batched:
            await self.deliver_batched(session)

    async def deliver_batched(self, session: AsyncSession) -> None:
        """Make the local deliveries :meth:`apply` left in ``session``, with one ``deliver_many`` call; a full
        mailbox refuses the message (``452``, the whole transaction: the committer then writes each plan alone)."""
        local: list[Delivery] = session.info.pop(_LOCAL_KEY, [])
        if not local:
            return
        for result in await self.local_store.deliver_many(session, local):
            if isinstance(result, QuotaExceeded):
                raise GatewayRefusal(452, "4.2.2", f"mailbox full: {result}")
            if isinstance(result, StoreError):
                raise result

    async def _apply(self, session: AsyncSession, plan: Plan, local: list[Delivery], depth: int) -> None:
        now = utcnow()
        local.extend(Delivery(item.mailbox_id, item.raw, item.delivery_key, "INBOX", item.signature)
                     for item in plan.local)
        for item in plan.queue:
            await store.enqueue(
                session,
                key=item.key,
                sender=item.sender,
                author_mailbox_id=item.author_mailbox_id,
                origin=item.origin,
                envid=item.envid,
                ret=item.ret,
                message_id=item.message_id,
                raw=item.raw,
                entries=item.entries,
                now=now,
                lifetime=self.settings.mta.queue_lifetime,
            )
        for patient_id, address, closed in plan.correspondents:
            await store.record_correspondent(session, patient_id, address, closed=closed, now=now)
        for brick in plan.bricks:
            replies = await brick.handler(session, brick.message)
            if depth < 2:
                for reply in replies:
                    followup = await self._brick_reply(reply)
                    if followup is not None:
                        await self._apply(session, followup, local, depth + 1)
        for followup in plan.followups:
            await self._apply(session, followup, local, depth + 1)

    async def _brick_reply(self, reply: Reply) -> Plan | None:
        mailbox = await self.mailbox(normalise_address(reply.from_address))
        if mailbox is None:
            log.warning("brick reply from %s dropped: not a directory mailbox", reply.from_address)
            return None
        credential = await self.gateway.credential(mailbox.certificate_serial)
        return await self.generated(
            reply.raw, mailbox.address, credential, list(reply.recipients), origin="brick", author_id=mailbox.id
        )
