"""carnet's message store, and (in :mod:`carnet.mailbox.imap`) the IMAP server.

The store (:class:`~carnet.mailbox.store.MailStore`, contract in :mod:`carnet.mailbox.api`) implements:

- folders with SPECIAL-USE attributes (RFC 6154), a ``/`` hierarchy, CREATE/DELETE/RENAME/SUBSCRIBE semantics of
  RFC 9051 §6.3 (INBOX rename moves its messages; DELETE refuses folders with inferiors, [HASCHILDREN]);
- UIDs and UIDVALIDITY (RFC 9051 §2.3.1.1), flags and keywords (§2.3.2), internal date and size, per-folder MODSEQ
  with expunge tombstones for CONDSTORE/QRESYNC (RFC 7162), MOVE (RFC 6851), UIDPLUS data (RFC 4315);
- per-account storage quotas (RFC 9208 STORAGE);
- raw messages stored once in the database, content-addressed by SHA-256 and reference-counted;
- FETCH data derived once at delivery (:mod:`~carnet.mailbox.analysis`): ENVELOPE, BODYSTRUCTURE and BODY in IMAP
  syntax, the MIME part map with byte offsets (RFC 2045-2047, RFC 5322), decoded text for SEARCH;
- SEARCH evaluated in SQL without re-parsing (:mod:`~carnet.mailbox.search`);
- transactional, idempotent delivery inside the MTA's transaction, batched
  (:meth:`~carnet.mailbox.store.MailStore.deliver_many`);
- change notifications to every watching session, across processes through PostgreSQL LISTEN/NOTIFY
  (:mod:`~carnet.mailbox.notify`).

Not implemented: \\Recent bookkeeping (a session notion the IMAP layer keeps; RFC 9051 dropped it), per-user flags on
shared folders, ANNOTATE/METADATA, full-text indexing beyond substring scans of the pre-extracted text, cross-process
notifications on SQLite (use PostgreSQL to run several processes).
"""

from carnet.mailbox.api import (
    DEFAULT_FOLDERS,
    AppendResult,
    Changes,
    CopyResult,
    Delivery,
    FlagUpdate,
    FolderChange,
    FolderExists,
    FolderHasChildren,
    FolderInfo,
    InvalidFlag,
    InvalidFolderName,
    MessageState,
    MessageSummary,
    MessageTooLarge,
    NoSuchAccount,
    NoSuchFolder,
    NoSuchMessage,
    NotPermitted,
    PartLocation,
    QuotaExceeded,
    SearchKey,
    SpecialUse,
    StoreError,
    UidRange,
)

__all__ = [
    "DEFAULT_FOLDERS",
    "AppendResult",
    "Changes",
    "CopyResult",
    "Delivery",
    "FlagUpdate",
    "FolderChange",
    "FolderExists",
    "FolderHasChildren",
    "FolderInfo",
    "InvalidFlag",
    "InvalidFolderName",
    "MessageState",
    "MessageSummary",
    "MessageTooLarge",
    "NoSuchAccount",
    "NoSuchFolder",
    "NoSuchMessage",
    "NotPermitted",
    "PartLocation",
    "QuotaExceeded",
    "SearchKey",
    "SpecialUse",
    "StoreError",
    "UidRange",
]
