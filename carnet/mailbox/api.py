"""The message store's public API: the data it returns and the operations SMTP delivery, IMAP, the webmail and
the bricks call. :class:`carnet.mailbox.store.MailStore` implements :class:`MailStoreAPI`.

Conventions:

- A mailbox account is a directory mailbox (``carnet.directory``), identified by its ``mailbox_id``; its folders
  are named in UTF-8 with ``/`` as the hierarchy delimiter (IMAP converts to modified UTF-7 for rev1 clients).
- UIDs are per folder, strictly ascending, never reused within one UIDVALIDITY (RFC 9051 §2.3.1.1).
- MODSEQ is per folder, strictly ascending across every change in it (RFC 7162 §3.1); expunges leave tombstones
  with their MODSEQ so QRESYNC can report VANISHED (RFC 7162 §3.2.5.1).
- Every write is one transaction; a failed call writes nothing. Writes publish a :class:`FolderChange` after
  commit, to every session of every process watching the folder.
- Sequence numbers are an IMAP session concept and never reach the store.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")


class SpecialUse(enum.StrEnum):
    """RFC 6154 special-use attributes of the default folders."""

    SENT = "\\Sent"
    DRAFTS = "\\Drafts"
    TRASH = "\\Trash"
    ARCHIVE = "\\Archive"
    JUNK = "\\Junk"


#: Folders every mailbox gets (name, special use). INBOX is always there and cannot be deleted or renamed away.
DEFAULT_FOLDERS: tuple[tuple[str, SpecialUse | None], ...] = (
    ("INBOX", None),
    ("Sent", SpecialUse.SENT),
    ("Drafts", SpecialUse.DRAFTS),
    ("Trash", SpecialUse.TRASH),
    ("Archive", SpecialUse.ARCHIVE),
    ("Junk", SpecialUse.JUNK),
)


class StoreError(Exception):
    """Base of the store's typed errors; the message is fit to show a client (IMAP NO text)."""


class NoSuchFolder(StoreError): ...


class FolderExists(StoreError): ...


class QuotaExceeded(StoreError): ...


class InvalidFolderName(StoreError): ...


# Added by the store implementation (carnet.mailbox.store); IMAP response codes in brackets.


class NoSuchAccount(StoreError):
    """The directory mailbox does not exist, or has no message store yet (``ensure_account``)."""


class NoSuchMessage(StoreError):
    """No message with that UID or blob id — it may have been expunged meanwhile."""


class FolderHasChildren(StoreError):
    """DELETE of a folder with inferior names ([HASCHILDREN], RFC 9051 §6.3.5)."""


class NotPermitted(StoreError):
    """An operation the rules forbid, e.g. deleting INBOX ([CANNOT])."""


class InvalidFlag(StoreError):
    """A flag that is neither a system flag nor a valid keyword atom (RFC 9051 §2.3.2) — a client error."""


class MessageTooLarge(StoreError):
    """A message above the store's size limit ([TOOBIG], RFC 5530 §3)."""


@dataclass(frozen=True, slots=True)
class FolderInfo:
    id: int
    name: str  # UTF-8, "/"-delimited
    special_use: SpecialUse | None
    subscribed: bool
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    unseen: int
    deleted: int  # messages flagged \\Deleted
    size: int  # sum of RFC822.SIZE
    has_children: bool = False


@dataclass(frozen=True, slots=True)
class MessageState:
    """The part of a message that changes: what SELECT, STORE and change notifications carry."""

    uid: int
    modseq: int
    flags: frozenset[str]  # system flags and keywords, as IMAP spells them


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """What FETCH of the usual summary items needs, derived once at delivery (never re-parsed per command)."""

    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: datetime
    size: int  # RFC822.SIZE: octets of the stored message
    blob_id: str  # sha256 hex of the raw message (content-addressed, stored once)
    envelope: bytes  # ENVELOPE, rendered in IMAP syntax (RFC 9051 §7.5.2)
    bodystructure: bytes  # BODYSTRUCTURE (extensible form), rendered in IMAP syntax
    body: bytes  # BODY (non-extensible form), rendered in IMAP syntax
    #: Decoded fields for the webmail and bricks: subject, from (display, address), date, message_id,
    #: has_attachments, and the stored verification result of the gateway (``signature``: dict or None).
    subject: str = ""
    from_name: str = ""
    from_address: str = ""
    sent_date: datetime | None = None
    has_attachments: bool = False
    signature: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class PartLocation:
    """Where a MIME part sits inside the raw message, for BODY[section] and BINARY[section] (RFC 9051 §6.4.5)."""

    section: str  # "" (whole message), "1", "1.2", …
    header_start: int
    header_end: int  # start of the part's body (after the empty line)
    body_end: int
    content_type: str  # "text/plain"
    transfer_encoding: str  # "7bit", "base64", "quoted-printable", …
    charset: str | None
    is_message: bool  # message/rfc822 (its sub-parts are numbered below it, RFC 9051 §6.4.5)
    #: For ``is_message`` parts: where the encapsulated message's body starts, so that its header (``n.HEADER``)
    #: is ``[header_end, message_body_start)`` and its text (``n.TEXT``) ``[message_body_start, body_end)``.
    message_body_start: int | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    folder_id: int
    uidvalidity: int
    uid: int
    modseq: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message for one mailbox, for :meth:`carnet.mailbox.store.MailStore.deliver_many` (SMTP delivery).

    ``delivery_key`` makes it idempotent per mailbox (the MTA uses the message's key); ``signature`` is the
    gateway's verification result, kept with the message."""

    mailbox_id: int
    raw: bytes
    delivery_key: str
    folder: str = "INBOX"
    signature: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class CopyResult:
    """COPYUID / MOVE data (RFC 4315 §3): source UIDs and the UIDs they got in the destination, in order."""

    uidvalidity: int
    source_uids: tuple[int, ...]
    dest_uids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FlagUpdate:
    """Result of a STORE (RFC 9051 §6.4.6, RFC 7162 §3.1.3 UNCHANGEDSINCE)."""

    changed: tuple[MessageState, ...]  # messages whose flags changed (new modseq)
    unchanged: tuple[MessageState, ...]  # matched but already in the requested state
    failed_uids: tuple[int, ...]  # UNCHANGEDSINCE conflicts (MODIFIED response code)


@dataclass(frozen=True, slots=True)
class FolderChange:
    """Published after commit of any write to a folder; sessions turn it into EXISTS/EXPUNGE/FETCH (RFC 9051 §7)."""

    folder_id: int
    highestmodseq: int
    uidnext: int
    added: tuple[int, ...] = ()  # new UIDs
    expunged: tuple[int, ...] = ()  # UIDs gone
    flags: tuple[MessageState, ...] = ()  # flag changes
    origin: str = ""  # opaque id of the session that made the change (to skip echoing it), may be ""


@dataclass(frozen=True, slots=True)
class Changes:
    """Everything that changed in a folder since a MODSEQ (CONDSTORE/QRESYNC, RFC 7162 §3.1.4.1, §3.2.5)."""

    highestmodseq: int
    changed: tuple[MessageState, ...]
    vanished: tuple[int, ...]  # expunged UIDs with a tombstone modseq > the given one


# Search criteria (RFC 9051 §6.4.4). The IMAP parser builds these; the store evaluates them. Sequence-number
# keys are translated to UID sets by the IMAP session before the store sees them.


@dataclass(frozen=True, slots=True)
class UidRange:
    first: int
    last: int  # inclusive; use a huge value for "*" resolved by the caller


@dataclass(frozen=True, slots=True)
class SearchKey:
    """One search key. ``op`` is one of:

    ``all``; ``flag`` (``value``: flag name, ``negate``: True for UN-flags); ``keyword`` (value, negate);
    ``new``, ``old``, ``recent``; ``header`` (``field``: lower-case header name, ``value``: substring, "" = has
    the header); ``from``/``to``/``cc``/``bcc``/``subject`` (value: substring of the decoded field);
    ``body``/``text`` (value: substring of the decoded body / headers+body); ``before``/``on``/``since``
    (``day``: internal date); ``sentbefore``/``senton``/``sentsince`` (day: Date header); ``larger``/``smaller``
    (``number``: octets); ``uid`` (``uids``: ranges); ``modseq`` (number); ``not`` (``children[0]``); ``or``
    (children[0], children[1]); ``and`` (children). Substring matching is case-insensitive on Unicode
    (casefold), as RFC 9051 §6.4.4 requires for UTF-8.
    """

    op: str
    value: str = ""
    field: str = ""
    day: date | None = None
    number: int = 0
    uids: tuple[UidRange, ...] = ()
    negate: bool = False
    children: tuple[SearchKey, ...] = ()


class MailStoreAPI(Protocol):
    # Accounts and folders -------------------------------------------------------------------------------------
    async def ensure_account(self, mailbox_id: int) -> None:
        """Create the default folders of a mailbox if missing (idempotent)."""

    async def list_folders(self, mailbox_id: int) -> list[FolderInfo]: ...
    async def get_folder(self, mailbox_id: int, name: str) -> FolderInfo:
        """Raises NoSuchFolder. ``INBOX`` is case-insensitive (RFC 9051 §5.1)."""

    async def create_folder(self, mailbox_id: int, name: str, special_use: SpecialUse | None = None) -> FolderInfo: ...
    async def delete_folder(self, mailbox_id: int, name: str) -> None: ...
    async def rename_folder(self, mailbox_id: int, old: str, new: str) -> None:
        """Renaming INBOX moves its messages to the new folder and leaves INBOX empty (RFC 9051 §6.3.6)."""

    async def set_subscribed(self, mailbox_id: int, name: str, subscribed: bool) -> None: ...
    async def quota(self, mailbox_id: int) -> tuple[int, int]:
        """(used octets, limit octets) — RFC 9208 STORAGE resource."""

    # Messages ---------------------------------------------------------------------------------------------------
    async def append(
        self,
        mailbox_id: int,
        folder: str,
        raw: bytes,
        flags: Sequence[str] = (),
        internal_date: datetime | None = None,
        *,
        signature: dict[str, object] | None = None,
        origin: str = "",
    ) -> AppendResult:
        """Store one message (analysed once here). Raises NoSuchFolder, QuotaExceeded."""

    async def snapshot(self, folder_id: int) -> list[MessageState]:
        """All messages of a folder in UID order (for a session's sequence-number map)."""

    async def count_before_first_unseen(self, folder_id: int) -> int | None:
        """Sequence number of the first unseen message (RFC 3501 UNSEEN), or None — without loading the folder."""

    async def summaries(self, folder_id: int, uids: Sequence[int]) -> list[MessageSummary]: ...
    async def page(self, folder_id: int, *, before_uid: int | None = None, limit: int = 50) -> list[MessageSummary]:
        """Up to ``limit`` summaries below ``before_uid``, newest first (keyset pagination, the webmail's list)."""

    async def raw(self, blob_id: str) -> bytes: ...
    async def parts(self, folder_id: int, uid: int) -> list[PartLocation]: ...
    async def store_flags(
        self,
        folder_id: int,
        uids: Sequence[int],
        mode: str,  # "add" | "remove" | "replace"
        flags: Sequence[str],
        *,
        unchanged_since: int | None = None,
        origin: str = "",
    ) -> FlagUpdate: ...
    async def copy(
        self, folder_id: int, uids: Sequence[int], dest_folder_id: int, *, origin: str = ""
    ) -> CopyResult: ...
    async def move(
        self, folder_id: int, uids: Sequence[int], dest_folder_id: int, *, origin: str = ""
    ) -> CopyResult: ...
    async def expunge(self, folder_id: int, uids: Sequence[int] | None = None, *, origin: str = "") -> list[int]:
        """Remove messages flagged \\Deleted (only those in ``uids`` when given); returns their UIDs."""

    async def search(self, folder_id: int, key: SearchKey) -> list[int]:
        """UIDs matching ``key``, ascending."""

    async def changes_since(self, folder_id: int, modseq: int) -> Changes: ...

    # Notifications ----------------------------------------------------------------------------------------------
    def watch(self, folder_id: int) -> AsyncIterator[FolderChange]:
        """Changes of a folder as they commit, from this process and (PostgreSQL) from every other."""
