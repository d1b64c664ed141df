"""Tables of the message store (migration ``0003_mailbox``). Only :mod:`carnet.mailbox.store` uses them.

- ``mbx_accounts``: one row per directory mailbox that has a message store: octets used (RFC 9208 STORAGE, counted
  per message copy), an optional quota override, and the next UIDVALIDITY to hand out (unique per account, so a
  folder deleted and re-created, or renamed onto an old name, never reuses one — RFC 9051 §2.3.1.1).
- ``mbx_folders``: the folders with their IMAP state and counters (messages, unseen, \\Deleted, octets,
  UIDNEXT, HIGHESTMODSEQ) maintained in the same transaction as every change, so SELECT/STATUS are one row read.
- ``mbx_blobs``: raw messages, content-addressed by SHA-256, stored once and reference-counted by the message rows.
- ``mbx_analyses`` and ``mbx_header_fields``: what :mod:`carnet.mailbox.analysis` derives from a blob (rendered
  ENVELOPE/BODYSTRUCTURE/BODY, the part map, decoded header fields and body text for SEARCH); removed with it.
- ``mbx_messages``: a message in a folder: UID, MODSEQ, flags (one column per system flag, keywords as
  `` kw1 kw2 `` text), internal date, size, blob, the gateway's verification result.
- ``mbx_expunged``: tombstones (UID, MODSEQ of the expunge) for QRESYNC VANISHED (RFC 7162 §3.2.5.1).
- ``mbx_delivery_keys``: deliveries already made, so a retried SMTP transaction never stores a second copy.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime

#: A 64-bit id that is still SQLite's auto-incrementing rowid.
RowId = BigInteger().with_variant(Integer(), "sqlite")


class Account(Base):
    """The message store of one directory mailbox."""

    __tablename__ = "mbx_accounts"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("dir_mailboxes.id"), primary_key=True, autoincrement=False)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    quota_limit: Mapped[int | None] = mapped_column(BigInteger)  # None: carnet.mailbox.store.DEFAULT_QUOTA
    next_uidvalidity: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Folder(Base):
    """A folder and its counters (RFC 9051 §7.2.2 STATUS items, RFC 7162 HIGHESTMODSEQ)."""

    __tablename__ = "mbx_folders"
    __table_args__ = (
        UniqueConstraint("mailbox_id", "name", name="uq_mbx_folders_mailbox_name"),
        {"sqlite_autoincrement": True},  # ids are never reused: a deleted folder's watchers never see another
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mbx_accounts.mailbox_id"))
    name: Mapped[str] = mapped_column(String(1000))
    special_use: Mapped[str | None] = mapped_column(String(16))
    subscribed: Mapped[bool] = mapped_column(Boolean)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uidnext: Mapped[int] = mapped_column(BigInteger)
    highestmodseq: Mapped[int] = mapped_column(BigInteger)
    messages: Mapped[int] = mapped_column(Integer)
    unseen: Mapped[int] = mapped_column(Integer)
    deleted: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Blob(Base):
    """A raw message, stored once whatever the number of folders and mailboxes holding it."""

    __tablename__ = "mbx_blobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256, hex
    size: Mapped[int] = mapped_column(BigInteger)
    refcount: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Analysis(Base):
    """Derived once from a blob (:func:`carnet.mailbox.analysis.analyse`)."""

    __tablename__ = "mbx_analyses"

    blob_id: Mapped[str] = mapped_column(ForeignKey("mbx_blobs.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    bodystructure: Mapped[bytes] = mapped_column(LargeBinary)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(Text)
    from_name: Mapped[str] = mapped_column(Text)
    from_address: Mapped[str] = mapped_column(Text)
    sent_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_day: Mapped[date | None] = mapped_column(Date)
    message_id: Mapped[str | None] = mapped_column(Text)
    has_attachments: Mapped[bool] = mapped_column(Boolean)
    parts: Mapped[list[Any]] = mapped_column(JSON)
    body_text: Mapped[str] = mapped_column(Text)


class HeaderField(Base):
    """A decoded, case-folded header field of a blob, for SEARCH HEADER/FROM/TO/CC/BCC/SUBJECT/TEXT."""

    __tablename__ = "mbx_header_fields"

    blob_id: Mapped[str] = mapped_column(ForeignKey("mbx_blobs.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(Text)


class Message(Base):
    """A message in a folder (RFC 9051 §2.3): UID, flags, internal date, size, MODSEQ (RFC 7162 §3.1)."""

    __tablename__ = "mbx_messages"
    __table_args__ = (
        UniqueConstraint("folder_id", "uid", name="uq_mbx_messages_folder_uid"),
        Index("ix_mbx_messages_folder_modseq", "folder_id", "modseq"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("mbx_folders.id"))
    uid: Mapped[int] = mapped_column(BigInteger)
    modseq: Mapped[int] = mapped_column(BigInteger)
    seen: Mapped[bool] = mapped_column(Boolean)
    answered: Mapped[bool] = mapped_column(Boolean)
    flagged: Mapped[bool] = mapped_column(Boolean)
    deleted: Mapped[bool] = mapped_column(Boolean)
    draft: Mapped[bool] = mapped_column(Boolean)
    keywords: Mapped[str] = mapped_column(Text)  # "" or " kw1 kw2 " (spaces around each, for LIKE)
    internal_date: Mapped[datetime] = mapped_column(UTCDateTime())
    size: Mapped[int] = mapped_column(BigInteger)
    blob_id: Mapped[str] = mapped_column(ForeignKey("mbx_blobs.id"), index=True)
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON)


#: The unseen messages of a folder, in UID order: "first unseen" and the unseen count without a scan.
UNSEEN_INDEX = Index(
    "ix_mbx_messages_unseen",
    Message.folder_id,
    Message.uid,
    sqlite_where=Message.seen == false(),
    postgresql_where=Message.seen == false(),
)


class Expunged(Base):
    """An expunged UID and the MODSEQ of its expunge (RFC 7162 §3.2.5.1 VANISHED)."""

    __tablename__ = "mbx_expunged"
    __table_args__ = (Index("ix_mbx_expunged_folder_modseq", "folder_id", "modseq"),)

    folder_id: Mapped[int] = mapped_column(ForeignKey("mbx_folders.id"), primary_key=True)
    uid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    modseq: Mapped[int] = mapped_column(BigInteger)


class DeliveryKey(Base):
    """A delivery already made to a mailbox (``deliver_in``'s idempotency key)."""

    __tablename__ = "mbx_delivery_keys"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mbx_accounts.mailbox_id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
