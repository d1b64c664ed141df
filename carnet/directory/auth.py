"""The one authentication service: SMTP submission, IMAP, webmail and the API all call :func:`authenticate`.

- Passwords are hashed with argon2id (RFC 9106 §4, "second recommended option": t=3, p=4, m=64 MiB, 16-byte salt,
  32-byte tag — ``argon2.profiles.RFC_9106_LOW_MEMORY``); hashes made with other parameters are upgraded at the
  next successful login. Hashing runs in a worker thread, off the event loop.
- Per-device app passwords: 20 random base32 characters (100 bits) shown once as ``xxxxx-xxxxx-xxxxx-xxxxx``,
  stored as an argon2id hash plus their first 4 characters (``lookup``) so a login checks one hash, not all.
  Listed and revoked individually; disabling the mailbox revokes them all.
- Logins: a mailbox address (any case), or for patients their INS matricule. An unknown login, a mailbox without a
  password and a wrong password take the same time (a dummy argon2id hash is verified) and fail the same way.
- Throttling (state in ``dir_throttle``, so it holds across processes and nodes): after 5 failures for one login, or
  30 from one client address (IPv6 counted per /64), within a 15-minute window, further attempts are refused for
  1 minute, doubling with each new failure up to 1 hour (``Throttled.retry_after``). A success clears the login's
  counter, not the address's. A throttled attempt is refused before any password is checked.
- Errors are typed: :class:`BadCredentials`, :class:`Throttled`, :class:`Disabled`. Protocol layers map them to
  their answers (SMTP 535 5.7.8 / 454 4.7.0, IMAP ``NO [AUTHENTICATIONFAILED]`` / ``[UNAVAILABLE]``, HTTP 401/429).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ipaddress
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY
from sqlalchemy.ext.asyncio import AsyncSession

from carnet.db import Database, utcnow
from carnet.directory import store
from carnet.directory.addresses import AddressError, normalise_address
from carnet.directory.identifiers import looks_like_ins, normalise_matricule
from carnet.directory.models import AppPassword, Mailbox
from carnet.directory.records import (
    AppPasswordInfo,
    DirectoryError,
    IdentityStatus,
    InvalidInput,
    MailboxKind,
    NotFound,
)

log = logging.getLogger(__name__)

ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 30
WINDOW = timedelta(minutes=15)
FIRST_BLOCK = timedelta(minutes=1)
LONGEST_BLOCK = timedelta(hours=1)
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_APP_PASSWORD_CHARS = 20
_LOOKUP_CHARS = 4


class AuthError(DirectoryError):
    """Base of the authentication errors."""


class BadCredentials(AuthError):
    """Unknown login or wrong password (deliberately indistinguishable)."""


class Throttled(AuthError):
    """Too many failures for this login or from this client address; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed logins; retry in {retry_after} s")


class Disabled(AuthError):
    """Correct credentials, but the mailbox is disabled (or the patient's identity is no longer qualified)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who authenticated: their mailbox and identity, over which protocol and with which kind of secret."""

    mailbox_id: int
    address: str
    kind: MailboxKind
    display_name: str
    national_id: str | None  # IDNPS (PER) or IDNST (ORG/CAB)
    ins: str | None  # patients
    protocol: str  # smtp | imap | webmail | api
    method: str  # password | app-password
    app_password_id: int | None = None


@functools.cache
def _hasher() -> PasswordHasher:
    return PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)


@functools.cache
def _dummy_hash() -> str:
    """A hash nobody's password matches, verified for unknown logins so they take as long as known ones."""
    return _hasher().hash(secrets.token_urlsafe(32))


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password has {len(password)} characters; at least {MIN_PASSWORD} are required")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"the password is longer than {MAX_PASSWORD} characters")
    if not password.strip():
        raise InvalidInput("the password is only spaces")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher().hash, password)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher().verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _normalise_app_password(secret: str) -> str:
    return "".join(ch for ch in secret.lower() if ch.isalnum())


def _client_key(client_ip: str) -> str:
    try:
        ip = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return f"ip:{client_ip[:100]}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"ip:{ip}"


def _block_for(failures: int, limit: int) -> timedelta:
    return min(FIRST_BLOCK * (2 ** min(failures - limit, 12)), LONGEST_BLOCK)


async def _find_login(db: Database, login: str) -> tuple[str, Mailbox | None, bool]:
    """(throttle key, mailbox, identity qualified) for a login given as an address or an INS matricule."""
    async with db.session() as session:
        if looks_like_ins(login):
            patient = await store.patient_by_ins(session, normalise_matricule(login))
            mailboxes = await store.mailboxes_of(session, patient_id=patient.id) if patient else []
            mailbox = mailboxes[0] if mailboxes else None
            qualified = patient is not None and patient.identity_status == IdentityStatus.VALI
            return f"acct:{mailbox.address if mailbox else normalise_matricule(login)}", mailbox, qualified
        try:
            address = normalise_address(login)
        except AddressError:
            return f"acct:{login.strip().lower()[:250]}", None, True
        mailbox = await store.mailbox_by_address(session, address)
        qualified = True
        if mailbox is not None and mailbox.patient_id is not None:
            patient = await store.patient_by_id(session, mailbox.patient_id)
            qualified = patient is not None and patient.identity_status == IdentityStatus.VALI
        return f"acct:{address}", mailbox, qualified


async def authenticate(
    db: Database, login: str, password: str, *, client_ip: str, protocol: str, now: datetime | None = None
) -> Principal:
    """Check ``login``/``password`` and return the :class:`Principal`, or raise BadCredentials, Throttled, Disabled."""
    now = now or utcnow()
    account_key, mailbox, qualified = await _find_login(db, login)
    address_key = _client_key(client_ip)
    async with db.session() as session:
        blocked = [
            t.blocked_until
            for t in await store.throttles(session, [account_key, address_key])
            if t.blocked_until is not None and t.blocked_until > now
        ]
        candidates: list[AppPassword] = []
        if mailbox is not None and len(password) <= MAX_PASSWORD:
            lookup = _normalise_app_password(password)[:_LOOKUP_CHARS]
            if len(_normalise_app_password(password)) == _APP_PASSWORD_CHARS:
                candidates = await store.active_app_passwords(session, mailbox.id, lookup)
    if blocked:
        raise Throttled(max(1, int((max(blocked) - now).total_seconds() + 0.999)))

    matched: AppPassword | None = None
    if len(password) > MAX_PASSWORD:
        ok = False
    elif mailbox is None or mailbox.password_hash is None:
        await asyncio.to_thread(_verify, _dummy_hash(), password)
        ok = False
    else:
        ok = await asyncio.to_thread(_verify, mailbox.password_hash, password)
    if not ok and mailbox is not None:
        secret = _normalise_app_password(password)
        for candidate in candidates:
            if await asyncio.to_thread(_verify, candidate.hash, secret):
                matched, ok = candidate, True
                break

    if not ok:
        async with db.transaction() as session:
            for key, limit in ((account_key, ACCOUNT_LIMIT), (address_key, ADDRESS_LIMIT)):
                failures = await store.record_failure(session, key, now, now - WINDOW)
                if failures >= limit:
                    await store.block(session, key, now + _block_for(failures, limit))
        log.info("failed %s login for %r from %s", protocol, login[:100], client_ip)
        raise BadCredentials("invalid login or password")

    assert mailbox is not None
    rehashed = None
    if matched is None and mailbox.password_hash is not None and _hasher().check_needs_rehash(mailbox.password_hash):
        rehashed = await hash_password(password)  # RFC 9106 parameters changed since the hash was made
    async with db.transaction() as session:
        await store.clear_throttle(session, account_key)
        if matched is not None:
            await store.touch_app_password(session, matched.id, now)
        elif rehashed is not None:
            await store.update_mailbox(session, mailbox.id, password_hash=rehashed)
        info_national_id, info_ins = await _identifiers(session, mailbox)
    if mailbox.disabled_at is not None:
        raise Disabled(f"mailbox {mailbox.address} is disabled")
    if not qualified:
        raise Disabled(f"mailbox {mailbox.address}: the patient's identity is not qualified (status VALI)")
    return Principal(
        mailbox_id=mailbox.id,
        address=mailbox.address,
        kind=MailboxKind(mailbox.kind),
        display_name=mailbox.display_name,
        national_id=info_national_id,
        ins=info_ins,
        protocol=protocol,
        method="app-password" if matched is not None else "password",
        app_password_id=matched.id if matched is not None else None,
    )


async def _identifiers(session: AsyncSession, mailbox: Mailbox) -> tuple[str | None, str | None]:
    if mailbox.professional_id is not None:
        pro = await store.professional_by_id(session, mailbox.professional_id)
        return (pro.national_id if pro else None), None
    if mailbox.organisation_id is not None:
        org = await store.organisation_by_id(session, mailbox.organisation_id)
        return (org.national_id if org else None), None
    if mailbox.patient_id is not None:
        pat = await store.patient_by_id(session, mailbox.patient_id)
        return None, (pat.ins if pat else None)
    return None, None


# Who may send as whom ----------------------------------------------------------------------------------------------


async def may_send_as(db: Database, principal: Principal, address: str, *, today: date | None = None) -> bool:
    """Whether ``principal`` may use ``address`` as From: their own mailbox; for a professional, the ORG/CAB mailboxes
    they were granted (:func:`carnet.directory.mailboxes.grant_send_as`); for a legal representative, the mailbox of
    each patient they currently represent. Disabled mailboxes are never usable."""
    return normalise_or_none(address) in await send_as_addresses(db, principal, today=today)


def normalise_or_none(address: str) -> str | None:
    try:
        return normalise_address(address)
    except AddressError:
        return None


async def send_as_addresses(db: Database, principal: Principal, *, today: date | None = None) -> list[str]:
    """Every address ``principal`` may send as, their own first."""
    today = today or datetime.now(UTC).date()
    async with db.session() as session:
        own = await store.mailbox_by_id(session, principal.mailbox_id)
        if own is None or own.disabled_at is not None:
            return []
        allowed = [own.address]
        if own.professional_id is not None:
            allowed += [m.address for m in await store.send_as_mailboxes(session, own.professional_id)]
        if own.patient_id is not None:
            for patient in await store.represented_patients(session, own.patient_id, today):
                if patient.identity_status != IdentityStatus.VALI:
                    continue
                allowed += [
                    m.address for m in await store.mailboxes_of(session, patient_id=patient.id) if m.disabled_at is None
                ]
        return allowed


# Managing secrets ---------------------------------------------------------------------------------------------------


async def _mailbox(db: Database, address: str) -> Mailbox:
    try:
        normalised = normalise_address(address)
    except AddressError as exc:
        raise InvalidInput(str(exc)) from None
    async with db.session() as session:
        mailbox = await store.mailbox_by_address(session, normalised)
    if mailbox is None:
        raise NotFound(f"no mailbox {normalised}")
    return mailbox


async def set_password(db: Database, address: str, password: str) -> None:
    """Set a mailbox's password (argon2id) after checking the policy (at least 12 characters)."""
    check_password_policy(password)
    mailbox = await _mailbox(db, address)
    hashed = await hash_password(password)
    async with db.transaction() as session:
        await store.update_mailbox(session, mailbox.id, password_hash=hashed, password_changed_at=utcnow())


def _new_app_secret() -> str:
    raw = base64.b32encode(secrets.token_bytes(15)).decode().lower()[:_APP_PASSWORD_CHARS]
    return "-".join(raw[i : i + 5] for i in range(0, _APP_PASSWORD_CHARS, 5))


async def create_app_password(db: Database, address: str, label: str) -> tuple[AppPasswordInfo, str]:
    """A new app password for a device; the secret is returned once and only its hash is kept."""
    label = " ".join(label.split())
    if not label or len(label) > 100 or not label.isprintable():
        raise InvalidInput("the device label must be 1 to 100 printable characters")
    mailbox = await _mailbox(db, address)
    if mailbox.disabled_at is not None:
        raise InvalidInput(f"{mailbox.address} is disabled")
    secret = _new_app_secret()
    normalised = _normalise_app_password(secret)
    row = AppPassword(
        mailbox_id=mailbox.id,
        label=label,
        lookup=normalised[:_LOOKUP_CHARS],
        hash=await hash_password(normalised),
        created_at=utcnow(),
    )
    async with db.transaction() as session:
        await store.add(session, row)
    return _app_info(row), secret


async def list_app_passwords(db: Database, address: str) -> list[AppPasswordInfo]:
    mailbox = await _mailbox(db, address)
    async with db.session() as session:
        return [_app_info(row) for row in await store.app_passwords(session, mailbox.id)]


async def revoke_app_password(db: Database, address: str, password_id: int) -> None:
    mailbox = await _mailbox(db, address)
    async with db.transaction() as session:
        if not await store.revoke_app_password(session, mailbox.id, password_id, utcnow()):
            raise NotFound(f"{mailbox.address} has no active app password {password_id}")


def _app_info(row: AppPassword) -> AppPasswordInfo:
    return AppPasswordInfo(row.id, row.label, row.created_at, row.last_used_at, row.revoked_at)
