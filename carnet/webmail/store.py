"""Webmail persistence: sessions, per-user settings and the audit trail (tables in :mod:`carnet.webmail.models`).

Sessions follow the OWASP session-management guidance: a 256-bit random token in the cookie, only its SHA-256 in
the database; a new token at every privilege change (password accepted, second factor accepted); an idle timeout
and an absolute lifetime; sign-out and password changes delete rows, so a copied cookie stops working.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update

from carnet.db import Database, utcnow
from carnet.webmail.models import AuditEntry, WebSession, WebUser

IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_LIFETIME = timedelta(hours=12)
PENDING_LIFETIME = timedelta(minutes=5)  # between the password and the TOTP code
TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often (one write a minute, not a request)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionData:
    token_hash: str
    mailbox_id: int
    acting_for: int
    csrf_token: str
    pending_totp: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class UserSettings:
    mailbox_id: int
    language: str | None  # None: never chosen (the browser's preference applies)
    totp_enabled: bool
    totp_sealed: bytes | None
    totp_last_step: int | None


async def create_session(db: Database, mailbox_id: int, client_ip: str, *, pending_totp: bool) -> str:
    """A new session for ``mailbox_id`` (in its own space); returns the cookie token."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    lifetime = PENDING_LIFETIME if pending_totp else IDLE_TIMEOUT
    async with db.transaction() as session:
        session.add(
            WebSession(
                token_hash=_hash(token),
                mailbox_id=mailbox_id,
                acting_for=mailbox_id,
                csrf_token=secrets.token_urlsafe(32),
                pending_totp=pending_totp,
                client_ip=client_ip[:64],
                created_at=now,
                last_seen_at=now,
                expires_at=now + lifetime,
            )
        )
    return token


async def load_session(db: Database, token: str | None) -> SessionData | None:
    """The live session of a cookie token (None when unknown or expired); slides the idle timeout."""
    if not token or len(token) > 200:
        return None
    token_hash = _hash(token)
    now = utcnow()
    async with db.session() as session:
        row = (
            await session.execute(select(WebSession).where(WebSession.token_hash == token_hash))
        ).scalar_one_or_none()
    if row is None:
        return None
    if row.expires_at <= now or row.created_at + ABSOLUTE_LIFETIME <= now:
        await destroy_session(db, token)
        return None
    if not row.pending_totp and now - row.last_seen_at >= TOUCH_EVERY:
        async with db.transaction() as session:
            await session.execute(
                update(WebSession)
                .where(WebSession.token_hash == token_hash)
                .values(last_seen_at=now, expires_at=min(now + IDLE_TIMEOUT, row.created_at + ABSOLUTE_LIFETIME))
            )
    return SessionData(row.token_hash, row.mailbox_id, row.acting_for, row.csrf_token, row.pending_totp, row.created_at)


async def promote_session(db: Database, token: str, client_ip: str) -> str | None:
    """The second factor was given: replace the pending session by a full one (new token, new CSRF token).
    None when the pending session is gone meanwhile (expired, or ended by another request)."""
    async with db.transaction() as session:
        row = (await session.execute(select(WebSession).where(WebSession.token_hash == _hash(token)))
               ).scalar_one_or_none()
        if row is None:
            return None
        mailbox_id = row.mailbox_id
        await session.delete(row)
    return await create_session(db, mailbox_id, client_ip, pending_totp=False)


async def destroy_session(db: Database, token: str) -> None:
    async with db.transaction() as session:
        await session.execute(delete(WebSession).where(WebSession.token_hash == _hash(token)))


async def destroy_sessions_of(db: Database, mailbox_id: int, *, keep_token: str | None = None) -> int:
    """Sign a mailbox out everywhere (password change, second factor change), but for ``keep_token``."""
    statement = delete(WebSession).where(WebSession.mailbox_id == mailbox_id)
    if keep_token is not None:
        statement = statement.where(WebSession.token_hash != _hash(keep_token))
    async with db.transaction() as session:
        result = await session.execute(statement)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def set_acting_for(db: Database, token: str, mailbox_id: int) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(WebSession).where(WebSession.token_hash == _hash(token)).values(acting_for=mailbox_id)
        )


async def purge_expired(db: Database) -> int:
    async with db.transaction() as session:
        result = await session.execute(delete(WebSession).where(WebSession.expires_at <= utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# User settings ------------------------------------------------------------------------------------------------------


async def user_settings(db: Database, mailbox_id: int) -> UserSettings:
    async with db.session() as session:
        row = await session.get(WebUser, mailbox_id)
    if row is None:
        return UserSettings(mailbox_id, None, False, None, None)
    return UserSettings(mailbox_id, row.language or None, row.totp_enabled, row.totp_sealed, row.totp_last_step)


async def update_user(db: Database, mailbox_id: int, **values: object) -> None:
    """Set ``language``, ``totp_sealed``, ``totp_enabled`` or ``totp_last_step`` (creating the row if needed)."""
    async with db.transaction() as session:
        row = await session.get(WebUser, mailbox_id, with_for_update=True)
        if row is None:
            row = WebUser(
                mailbox_id=mailbox_id,
                language="",
                totp_sealed=None,
                totp_enabled=False,
                totp_last_step=None,
                updated_at=utcnow(),
            )
            session.add(row)
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = utcnow()


async def use_totp_step(db: Database, mailbox_id: int, step: int) -> bool:
    """Record ``step`` as used; False when it (or a later one) was already used — a replayed code (RFC 6238 §5.2).
    Atomic: two requests with the same code cannot both pass."""
    async with db.transaction() as session:
        result = await session.execute(
            update(WebUser)
            .where(WebUser.mailbox_id == mailbox_id)
            .where((WebUser.totp_last_step.is_(None)) | (WebUser.totp_last_step < step))
            .values(totp_last_step=step, updated_at=utcnow())
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# Audit trail --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    space_id: int
    actor_id: int
    action: str
    target: str
    client_ip: str
    at: datetime


async def audit(
    db: Database, *, space_id: int, actor_id: int, action: str, target: str = "", client_ip: str = ""
) -> None:
    async with db.transaction() as session:
        session.add(
            AuditEntry(
                space_id=space_id,
                actor_id=actor_id,
                action=action[:32],
                target=target[:400],
                client_ip=client_ip[:64],
                at=utcnow(),
            )
        )


async def count_actions(db: Database, space_id: int, action: str, since: datetime) -> int:
    """How many ``action`` entries the space has since ``since`` (e.g. wrong TOTP codes of a pending sign-in)."""
    statement = (select(func.count()).select_from(AuditEntry)
                 .where(AuditEntry.space_id == space_id, AuditEntry.action == action, AuditEntry.at >= since))
    async with db.session() as session:
        return int((await session.execute(statement)).scalar_one())


async def history(db: Database, space_id: int, *, before_id: int | None = None, limit: int = 50) -> list[AuditRecord]:
    """The space's audit entries, newest first (keyset on id)."""
    statement = select(AuditEntry).where(AuditEntry.space_id == space_id)
    if before_id is not None:
        statement = statement.where(AuditEntry.id < before_id)
    async with db.session() as session:
        rows = (await session.execute(statement.order_by(AuditEntry.id.desc()).limit(limit))).scalars().all()
    return [AuditRecord(r.id, r.space_id, r.actor_id, r.action, r.target, r.client_ip, r.at) for r in rows]
