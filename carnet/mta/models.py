"""Tables of the MTA (migration ``0004_mta``). Only :mod:`carnet.mta.store` uses them.

- ``mta_messages``: one row per message accepted for remote delivery (or a DSN/MDN carnet generated for a remote
  recipient): the signed message as it leaves, its envelope sender and the RFC 3461 envelope parameters.
  ``key`` (message key, see :func:`carnet.mta.router.message_key`) makes accepting it twice a no-op.
- ``mta_queue``: one row per (message, remote recipient): its state, attempts, next attempt, expiry and the
  RFC 3461 ``NOTIFY``/``ORCPT`` of that recipient. Runners of several processes claim due rows with
  ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) and push ``next_attempt_at`` forward as a lease.
- ``mta_correspondents``: for each local patient mailbox, the addresses that wrote to it and whether the
  exchange was closed (``X-MSS-MES: FIN``): a patient may only write to an open correspondent.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime


class QueuedMessage(Base):
    """A message waiting (or having waited) for remote delivery."""

    __tablename__ = "mta_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    sender: Mapped[str] = mapped_column(String(320))  # envelope sender, "" for the null reverse-path
    #: Local mailbox whose key signs DSNs and MDNs about this message (the author), if any.
    author_mailbox_id: Mapped[int | None] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(16))  # submission | trusted | relay | dsn | mdn
    envid: Mapped[str | None] = mapped_column(String(100))  # RFC 3461 §4.4 ENVID
    ret: Mapped[str | None] = mapped_column(String(4))  # RFC 3461 §4.3 RET=FULL|HDRS
    message_id: Mapped[str] = mapped_column(String(998), default="")
    size: Mapped[int] = mapped_column(Integer)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class QueueEntry(Base):
    """One remote recipient of a queued message."""

    __tablename__ = "mta_queue"
    __table_args__ = (
        UniqueConstraint("message_id", "recipient", name="uq_mta_queue_message_recipient"),
        Index("ix_mta_queue_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("mta_messages.id", ondelete="CASCADE"), index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    domain: Mapped[str] = mapped_column(String(253))
    orcpt: Mapped[str | None] = mapped_column(String(500))  # RFC 3461 §4.2
    notify: Mapped[str | None] = mapped_column(String(40))  # RFC 3461 §4.1: NEVER or SUCCESS,FAILURE,DELAY
    state: Mapped[str] = mapped_column(String(10))  # queued | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delay_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str] = mapped_column(Text, default="")
    remote_mta: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Correspondent(Base):
    """An address that wrote to a local patient; ``closed_at`` set when the exchange was closed with FIN."""

    __tablename__ = "mta_correspondents"
    __table_args__ = (UniqueConstraint("patient_mailbox_id", "address", name="uq_mta_correspondents_pair"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_mailbox_id: Mapped[int] = mapped_column(ForeignKey("dir_mailboxes.id"), index=True)
    address: Mapped[str] = mapped_column(String(320))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
