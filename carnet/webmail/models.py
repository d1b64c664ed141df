"""Tables of the webmail (migration ``0005_webmail``). Only :mod:`carnet.webmail.store` uses them.

- ``web_sessions``: one row per signed-in browser. The cookie carries a random token; the row keys on its SHA-256
  (a stolen database does not give usable cookies). It holds who signed in (``mailbox_id``), whose space they are
  looking at (``acting_for``: their own mailbox, or the patient they represent), the CSRF token of the session,
  whether the second factor is still to be given (``pending_totp``), and its idle and absolute expiry. Rows live
  in the database, not in the process: any ``carnet serve`` of a cluster serves any request.
- ``web_users``: per-mailbox webmail settings: the language, the sealed TOTP secret (RFC 6238) once enrolled and
  the last time step used (a code is accepted once).
- ``web_audit``: what was done in whose space, by whom (a representative's actions are recorded as theirs):
  sign-in, reading, downloading, replying, receipts, switching space, security changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime


class WebSession(Base):
    """A signed-in browser (or one half-way through sign-in, waiting for its TOTP code)."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 hex of the cookie token
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("dir_mailboxes.id"), index=True)
    acting_for: Mapped[int] = mapped_column(ForeignKey("dir_mailboxes.id"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    pending_totp: Mapped[bool] = mapped_column(Boolean)
    client_ip: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class WebUser(Base):
    """Webmail settings of a mailbox."""

    __tablename__ = "web_users"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("dir_mailboxes.id"), primary_key=True, autoincrement=False)
    language: Mapped[str] = mapped_column(String(8))
    totp_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # KeyVault.seal_secret, owner "totp:<id>"
    totp_enabled: Mapped[bool] = mapped_column(Boolean)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """One action in a mailbox's space: ``actor`` did ``action`` in the space of ``space``."""

    __tablename__ = "web_audit"
    __table_args__ = (Index("ix_web_audit_space_id", "space_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("dir_mailboxes.id"))
    actor_id: Mapped[int] = mapped_column(ForeignKey("dir_mailboxes.id"))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(400))  # e.g. "INBOX/42", an address; never message content
    client_ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
