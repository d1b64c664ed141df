"""The message store: folders, messages, flags, MODSEQ, quotas and blobs, on SQLite or PostgreSQL.

:class:`MailStore` implements :class:`carnet.mailbox.api.MailStoreAPI` for SMTP delivery, IMAP, the webmail and the
bricks. Every SQL statement of the store is in this module (and :mod:`carnet.mailbox.search`).

How it stays correct with several processes on one PostgreSQL database (and several sessions on SQLite):

- **Per-folder serialisation.** Every write to a folder starts with a row-locking ``UPDATE mbx_folders … RETURNING``
  on that folder (PostgreSQL: the row lock is held to commit; SQLite: the first statement being a write takes the
  database write lock at once, waiting up to ``busy_timeout``, so no transaction upgrades a stale read snapshot).
  UIDNEXT, HIGHESTMODSEQ and the counters are then read and written under that lock: UIDs are strictly ascending
  and never reused (RFC 9051 §2.3.1.1), MODSEQs strictly ascending per folder (RFC 7162 §3.1). Writes touching two
  folders lock them in id order; the account row (quota) is always locked last. (SMTP delivery goes through
  :meth:`MailStore.deliver_many`, which locks all the folders of a batch in id order, then their accounts.)
- **Counters in the folder row** (messages, unseen, \\Deleted, octets, UIDNEXT, HIGHESTMODSEQ) are updated in the
  transaction of every change, so SELECT/STATUS/:meth:`MailStore.get_folder` read one row whatever the folder size.
- **Blobs in the database, content-addressed.** A raw message is stored once (``mbx_blobs``, SHA-256 key) with its
  analysis, and reference-counted by message rows: APPEND/delivery of known content, COPY and MOVE never duplicate
  it; the expunge (or folder delete) that drops the last reference deletes it in the same transaction. Keeping blobs
  in the database (rather than files under the data directory) makes a delivery one atomic commit — no orphan file
  after a rollback, no missing file after a crash — and lets every node read every message without a shared file
  system; PostgreSQL stores large ``bytea`` values out of line (TOAST), so listing queries never read them.
- **Quota** (RFC 9208 STORAGE): octets of every message copy of the account, charged by a conditional ``UPDATE``
  that fails when the limit would be exceeded, so concurrent appends cannot overshoot it; a refused write writes
  nothing. The limit is :data:`DEFAULT_QUOTA` unless the account has its own.
- **Folders.** INBOX is case-insensitive and always exists (RFC 9051 §5.1); names are NFC UTF-8 with ``/`` as the
  hierarchy delimiter. CREATE makes missing superiors (RFC 9051 §6.3.4). DELETE of INBOX is refused, and so is
  DELETE of a folder that has inferiors (:class:`FolderHasChildren`, the HASCHILDREN behaviour RFC 9051 §6.3.5
  permits): carnet never has \\Noselect placeholders, every folder holds messages. RENAME moves the inferiors with
  the folder and keeps UIDVALIDITY (UIDVALIDITY values are unique within an account, so a later folder of the old
  name gets a new one); RENAME of INBOX moves its messages to the new folder and leaves INBOX empty, its inferiors
  stay (RFC 9051 §6.3.6).
- **Notifications** are staged on the writing session and published after commit (:mod:`carnet.mailbox.notify`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Row,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from carnet.db import Database, utcnow
from carnet.mailbox import analysis as analysis_module
from carnet.mailbox import models
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
from carnet.mailbox.notify import FolderWatch, Notifier
from carnet.mailbox.search import compile_search, uid_condition

#: Default storage quota of an account, in octets (RFC 9208 STORAGE counts units of 1024 octets).
DEFAULT_QUOTA = 2 * 1024**3
#: Largest message accepted (APPEND, delivery); IMAP advertises it as APPENDLIMIT (RFC 7889).
MAX_MESSAGE_SIZE = 64 * 1024**2
#: Longest folder name, in characters, and longest hierarchy level.
MAX_NAME_LENGTH = 900
MAX_LEVEL_LENGTH = 255
#: Messages above this size are analysed in a worker thread, not on the event loop.
THREADED_ANALYSIS = 256 * 1024
#: Bound parameters per IN list.
CHUNK = 500

A: Table = models.Account.__table__  # type: ignore[assignment]
F: Table = models.Folder.__table__  # type: ignore[assignment]
B: Table = models.Blob.__table__  # type: ignore[assignment]
AN: Table = models.Analysis.__table__  # type: ignore[assignment]
H: Table = models.HeaderField.__table__  # type: ignore[assignment]
M: Table = models.Message.__table__  # type: ignore[assignment]
X: Table = models.Expunged.__table__  # type: ignore[assignment]
K: Table = models.DeliveryKey.__table__  # type: ignore[assignment]

_SYSTEM_FLAGS = {"\\seen": "\\Seen", "\\answered": "\\Answered", "\\flagged": "\\Flagged",
                 "\\deleted": "\\Deleted", "\\draft": "\\Draft"}
_FLAG_COLUMNS = (("seen", "\\Seen"), ("answered", "\\Answered"), ("flagged", "\\Flagged"),
                 ("deleted", "\\Deleted"), ("draft", "\\Draft"))
_ATOM_SPECIALS = frozenset('(){ %*"\\]')
#: The system flags of a row as one integer (bit n: the n-th of _FLAG_COLUMNS).
_FLAG_BITS = sum((cast(M.c[column], Integer) * (1 << n) for n, (column, _name) in enumerate(_FLAG_COLUMNS)),
                 start=literal(0)).label("bits")


# Names and flags -----------------------------------------------------------------------------------------------


def normalize_folder_name(name: str) -> str:
    """The stored form of a folder name: NFC, ``INBOX`` in upper case as first level (RFC 9051 §5.1).

    Refused (:class:`InvalidFolderName`): empty names or levels (``a//b``, leading or trailing ``/``), control
    characters, the LIST wildcards ``%`` and ``*``, a leading ``#`` (namespace prefixes, RFC 2342), over-long names.
    """
    name = unicodedata.normalize("NFC", name)
    if not name:
        raise InvalidFolderName("folder name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidFolderName(f"folder name is longer than {MAX_NAME_LENGTH} characters")
    if name.startswith("#"):
        raise InvalidFolderName("folder names starting with # are reserved for namespaces")
    for char in name:
        if char in "%*" or unicodedata.category(char) in ("Cc", "Cs") or char in "\u2028\u2029":
            raise InvalidFolderName(f"folder name contains a forbidden character {char!r}")
    levels = name.split("/")
    if any(not level for level in levels):
        raise InvalidFolderName("folder name has an empty hierarchy level")
    if any(len(level) > MAX_LEVEL_LENGTH for level in levels):
        raise InvalidFolderName(f"a folder name level is longer than {MAX_LEVEL_LENGTH} characters")
    if levels[0].upper() == "INBOX":
        levels[0] = "INBOX"
    return "/".join(levels)


def _superiors(name: str) -> list[str]:
    levels = name.split("/")
    return ["/".join(levels[:index]) for index in range(1, len(levels))]


def parse_flags(flags: Iterable[str]) -> tuple[set[str], list[str]]:
    """(system flags in canonical spelling, keywords in given spelling, de-duplicated case-insensitively).

    ``\\Recent`` cannot be set by a client and is ignored (RFC 3501 §2.3.2); other backslash names and keywords that
    are not atoms raise :class:`InvalidFlag`. Keywords compare case-insensitively.
    """
    system: set[str] = set()
    keywords: list[str] = []
    seen: set[str] = set()
    for flag in flags:
        lower = flag.lower()
        if lower in _SYSTEM_FLAGS:
            system.add(_SYSTEM_FLAGS[lower])
        elif lower == "\\recent":
            continue
        elif (
            not flag
            or flag.startswith("\\")
            or len(flag) > 100
            or any(ord(char) <= 0x20 or ord(char) >= 0x7F or char in _ATOM_SPECIALS for char in flag)
        ):
            raise InvalidFlag(f"invalid flag {flag!r}")
        elif lower not in seen:
            seen.add(lower)
            keywords.append(flag)
    return system, keywords


def _keywords_text(keywords: Sequence[str]) -> str:
    return " " + " ".join(keywords) + " " if keywords else ""


def _keywords_list(text: str) -> list[str]:
    return text.split()


def _ranges(uids: Iterable[int]) -> list[UidRange]:
    ordered = sorted(set(uids))
    ranges: list[UidRange] = []
    for uid in ordered:
        if ranges and ranges[-1].last == uid - 1:
            ranges[-1] = UidRange(ranges[-1].first, uid)
        else:
            ranges.append(UidRange(uid, uid))
    return ranges


def _uid_chunks(uids: Sequence[int] | None) -> Iterator[ColumnElement[bool] | None]:
    """UID conditions small enough for any backend: ranges when compact, IN lists of :data:`CHUNK` otherwise."""
    if uids is None:
        yield None
        return
    ranges = _ranges(uids)
    if len(ranges) <= 50:
        yield uid_condition(ranges) if ranges else false()
        return
    ordered = sorted(set(uids))
    for start in range(0, len(ordered), CHUNK):
        yield M.c.uid.in_(ordered[start: start + CHUNK])


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start: start + CHUNK]


# Folder state under lock ---------------------------------------------------------------------------------------

_FOLDER_COLUMNS = (F.c.id, F.c.mailbox_id, F.c.name, F.c.uidvalidity, F.c.uidnext, F.c.highestmodseq,
                   F.c.messages, F.c.unseen, F.c.deleted, F.c.size)

# Statements of the write path, built once (building a statement costs about as much as running a small one).

#: Lock a folder by name and count ``n`` new messages in it: their UIDs and MODSEQs end at the returned values.
_ALLOCATE = update(F).where(F.c.mailbox_id == bindparam("f_mailbox"), F.c.name == bindparam("f_name")).values(
    uidnext=F.c.uidnext + bindparam("n", type_=Integer), highestmodseq=F.c.highestmodseq + bindparam("n"),
    messages=F.c.messages + bindparam("n"), unseen=F.c.unseen + bindparam("n_unseen", type_=Integer),
    deleted=F.c.deleted + bindparam("n_deleted", type_=Integer), size=F.c.size + bindparam("octets", type_=BigInteger),
).returning(*_FOLDER_COLUMNS)
#: Write a locked folder's counters back (executemany).
_SAVE = update(F).where(F.c.id == bindparam("folder")).values(
    uidnext=bindparam("new_uidnext"), highestmodseq=bindparam("new_modseq"), messages=bindparam("new_messages"),
    unseen=bindparam("new_unseen"), deleted=bindparam("new_deleted"), size=bindparam("new_size"))
#: Charge an account, unless that would exceed its quota (then no row comes back).
_CHARGE = (update(A).where(A.c.mailbox_id == bindparam("account"),
                           A.c.used + bindparam("octets", type_=BigInteger)
                           <= func.coalesce(A.c.quota_limit, bindparam("default_quota", type_=BigInteger)))
           .values(used=A.c.used + bindparam("octets")).returning(A.c.used))
#: Add to (or, negative, take from) an account's usage unconditionally (executemany).
_ADD_USED = update(A).where(A.c.mailbox_id == bindparam("account")).values(
    used=A.c.used + bindparam("octets", type_=BigInteger))
_DELIVERED = select(K.c.mailbox_id, K.c.key).where(K.c.key.in_(bindparam("keys", expanding=True)),
                                                   K.c.mailbox_id.in_(bindparam("accounts", expanding=True)))
_KNOWN_BLOBS = select(B.c.id).where(B.c.id.in_(bindparam("ids", expanding=True)))
_INSERT_MESSAGES = insert(M)
_INSERT_ANALYSES = insert(AN)
_INSERT_HEADER_FIELDS = insert(H)


@dataclass(slots=True)
class _Locked:
    """A folder row locked for the transaction; changed in memory, written back by :meth:`MailStore._save`."""

    id: int
    mailbox_id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    unseen: int
    deleted: int
    size: int
    before: tuple[int, int] = (0, 0)
    #: (uidnext, highestmodseq, messages, unseen, deleted, size) as the database has them in this transaction.
    written: tuple[int, ...] = ()

    @classmethod
    def of(cls, row: Row[Any]) -> _Locked:
        locked = cls(row.id, row.mailbox_id, row.name, row.uidvalidity, row.uidnext, row.highestmodseq,
                     row.messages, row.unseen, row.deleted, row.size)
        locked.before = (row.highestmodseq, row.uidnext)
        locked.written = locked.counters()
        return locked

    def counters(self) -> tuple[int, ...]:
        return (self.uidnext, self.highestmodseq, self.messages, self.unseen, self.deleted, self.size)

    def next_modseq(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq


@dataclass(slots=True)
class _Pending:
    """A delivery of a batch being written (:meth:`MailStore.deliver_many`)."""

    index: int
    delivery: Delivery
    folder: str
    blob_id: str = ""


class MailStore:
    """The store on one :class:`~carnet.db.Database` (one per process; see the module docstring)."""

    def __init__(self, db: Database, *, default_quota: int = DEFAULT_QUOTA) -> None:
        self.db = db
        self.default_quota = default_quota
        self.dialect = db.engine.dialect.name
        dsn = None
        if self.dialect == "postgresql":
            dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.notifier = Notifier(self.dialect, dsn, self._load_change)
        self._flag_sets: dict[tuple[Any, ...], frozenset[str]] = {}
        upsert = self._insert(B)
        self._upsert_blobs = upsert.on_conflict_do_update(
            index_elements=[B.c.id], set_={"refcount": B.c.refcount + upsert.excluded.refcount},
        ).returning(B.c.id, B.c.refcount)
        self._record_keys = (self._insert(K).on_conflict_do_nothing(index_elements=[K.c.mailbox_id, K.c.key])
                             .returning(K.c.mailbox_id, K.c.key))

    async def close(self) -> None:
        """Stop the change listener and end every watch (the database stays open: it is the caller's)."""
        await self.notifier.close()

    # Helpers -------------------------------------------------------------------------------------------------

    def _insert(self, table: Table) -> Any:
        return pg_insert(table) if self.dialect == "postgresql" else sqlite_insert(table)

    def _flags(self, seen: bool, answered: bool, flagged: bool, deleted: bool, draft: bool,
               keywords: str) -> frozenset[str]:
        key = (seen, answered, flagged, deleted, draft, keywords)
        cached = self._flag_sets.get(key)
        if cached is None:
            if len(self._flag_sets) > 4096:
                self._flag_sets.clear()
            names = [name for (_column, name), on in zip(_FLAG_COLUMNS, key[:5], strict=True) if on]
            cached = frozenset(names + _keywords_list(keywords))
            self._flag_sets[key] = cached
        return cached

    def _state(self, row: Row[Any]) -> MessageState:
        return MessageState(row.uid, row.modseq,
                            self._flags(row.seen, row.answered, row.flagged, row.deleted, row.draft, row.keywords))

    async def _lock(self, session: AsyncSession, condition: ColumnElement[bool], missing: str) -> _Locked:
        statement = update(F).where(condition).values(uidnext=F.c.uidnext).returning(*_FOLDER_COLUMNS)
        row = (await session.execute(statement)).one_or_none()
        if row is None:
            raise NoSuchFolder(missing)
        return _Locked.of(row)

    async def _lock_id(self, session: AsyncSession, folder_id: int) -> _Locked:
        return await self._lock(session, F.c.id == folder_id, f"folder {folder_id} does not exist")

    async def _lock_name(self, session: AsyncSession, mailbox_id: int, name: str) -> _Locked:
        return await self._lock(session, and_(F.c.mailbox_id == mailbox_id, F.c.name == name),
                                f"folder {name!r} does not exist")

    async def _save(self, session: AsyncSession, folder: _Locked) -> None:
        await session.execute(update(F).where(F.c.id == folder.id).values(
            uidnext=folder.uidnext, highestmodseq=folder.highestmodseq, messages=folder.messages,
            unseen=folder.unseen, deleted=folder.deleted, size=folder.size))

    async def _stage(self, session: AsyncSession, folder: _Locked, *, added: Sequence[int] = (),
                     expunged: Sequence[int] = (), flags: Sequence[MessageState] = (), origin: str = "") -> None:
        change = FolderChange(folder.id, folder.highestmodseq, folder.uidnext, tuple(added), tuple(expunged),
                              tuple(flags), origin)
        await self.notifier.stage(session, change, folder.before)

    async def _charge(self, session: AsyncSession, mailbox_id: int, octets: int) -> None:
        """Add ``octets`` to the account's usage, or raise :class:`QuotaExceeded` writing nothing (RFC 9208 §5)."""
        if octets <= 0:
            if octets < 0:
                await session.execute(update(A).where(A.c.mailbox_id == mailbox_id).values(used=A.c.used + octets))
            return
        limit = func.coalesce(A.c.quota_limit, self.default_quota)
        statement = (update(A).where(A.c.mailbox_id == mailbox_id, A.c.used + octets <= limit)
                     .values(used=A.c.used + octets).returning(A.c.used))
        if (await session.execute(statement)).one_or_none() is None:
            raise QuotaExceeded("the mailbox is over its storage quota")

    async def _allocate_uidvalidity(self, session: AsyncSession, mailbox_id: int, count: int) -> int:
        statement = (update(A).where(A.c.mailbox_id == mailbox_id)
                     .values(next_uidvalidity=A.c.next_uidvalidity + count).returning(A.c.next_uidvalidity))
        value = (await session.execute(statement)).scalar_one_or_none()
        if value is None:
            raise NoSuchAccount(f"mailbox {mailbox_id} has no message store")
        return int(value) - count

    async def _new_folder(self, session: AsyncSession, mailbox_id: int, name: str, special_use: str | None,
                          uidvalidity: int, *, subscribed: bool = True, if_missing: bool = False) -> None:
        values = dict(mailbox_id=mailbox_id, name=name, special_use=special_use, subscribed=subscribed,
                      uidvalidity=uidvalidity, uidnext=1, highestmodseq=1, messages=0, unseen=0, deleted=0, size=0,
                      created_at=utcnow())
        statement = self._insert(F).values(**values)
        if if_missing:
            statement = statement.on_conflict_do_nothing(index_elements=[F.c.mailbox_id, F.c.name])
        await session.execute(statement)

    @staticmethod
    def _info(row: Row[Any], has_children: bool) -> FolderInfo:
        return FolderInfo(
            id=row.id, name=row.name, special_use=SpecialUse(row.special_use) if row.special_use else None,
            subscribed=bool(row.subscribed), uidvalidity=row.uidvalidity, uidnext=row.uidnext,
            highestmodseq=row.highestmodseq, messages=row.messages, unseen=row.unseen, deleted=row.deleted,
            size=row.size, has_children=has_children)

    @staticmethod
    def _children_of(name: str, table: Any = F) -> ColumnElement[bool]:
        prefix = name + "/"
        return func.substr(table.c.name, 1, len(prefix)) == prefix

    # Accounts and folders ------------------------------------------------------------------------------------

    async def ensure_account(self, mailbox_id: int) -> None:
        """Create the account and its default folders (RFC 6154 special-use) if missing; idempotent and safe to
        run concurrently. Raises :class:`NoSuchAccount` if ``mailbox_id`` is not a directory mailbox."""
        try:
            async with self.db.transaction() as session:
                await self._ensure_account_in(session, mailbox_id)
        except IntegrityError as exc:
            raise NoSuchAccount(f"mailbox {mailbox_id} is not in the directory") from exc

    async def _ensure_account_in(self, session: AsyncSession, mailbox_id: int) -> None:
        statement = self._insert(A).values(mailbox_id=mailbox_id, used=0, quota_limit=None,
                                           next_uidvalidity=int(time.time()), created_at=utcnow())
        await session.execute(statement.on_conflict_do_nothing(index_elements=[A.c.mailbox_id]))
        names = set((await session.execute(select(F.c.name).where(F.c.mailbox_id == mailbox_id))).scalars())
        missing = [(name, use) for name, use in DEFAULT_FOLDERS if name not in names]
        if not missing:
            return
        first = await self._allocate_uidvalidity(session, mailbox_id, len(missing))
        for offset, (name, use) in enumerate(missing):
            await self._new_folder(session, mailbox_id, name, use.value if use else None, first + offset,
                                   if_missing=True)

    async def list_folders(self, mailbox_id: int) -> list[FolderInfo]:
        """Every folder of the account, by name; ``has_children`` set (LIST \\HasChildren, RFC 9051 §7.3.1)."""
        async with self.db.session() as session:
            rows = (await session.execute(select(F).where(F.c.mailbox_id == mailbox_id).order_by(F.c.name))).all()
        parents = {name for row in rows for name in _superiors(row.name)}
        return [self._info(row, row.name in parents) for row in rows]

    async def get_folder(self, mailbox_id: int, name: str) -> FolderInfo:
        """One folder, from its row and counters (O(1) in the number of messages). Raises NoSuchFolder."""
        name = normalize_folder_name(name)
        inner = F.alias("inferior")
        children = exists(select(literal(1)).select_from(inner).where(
            inner.c.mailbox_id == mailbox_id, self._children_of(name, inner))).label("has_children")
        async with self.db.session() as session:
            row = (await session.execute(select(F, children).where(F.c.mailbox_id == mailbox_id,
                                                                   F.c.name == name))).one_or_none()
        if row is None:
            raise NoSuchFolder(f"folder {name!r} does not exist")
        return self._info(row, bool(row.has_children))

    async def folder_by_id(self, folder_id: int) -> FolderInfo:
        """A folder by id (a selected folder may have been renamed meanwhile). Raises NoSuchFolder."""
        async with self.db.session() as session:
            row = (await session.execute(select(F).where(F.c.id == folder_id))).one_or_none()
            if row is None:
                raise NoSuchFolder(f"folder {folder_id} does not exist")
            children = (await session.execute(select(exists().where(
                F.c.mailbox_id == row.mailbox_id, self._children_of(row.name))))).scalar()
        return self._info(row, bool(children))

    async def create_folder(self, mailbox_id: int, name: str, special_use: SpecialUse | None = None) -> FolderInfo:
        """CREATE (RFC 9051 §6.3.4), with missing superior names; CREATE-SPECIAL-USE (RFC 6154 §3).

        Raises InvalidFolderName, FolderExists (INBOX always exists), NoSuchAccount."""
        name = normalize_folder_name(name)
        if name == "INBOX":
            raise FolderExists("INBOX always exists")
        try:
            async with self.db.transaction() as session:
                # Lock the account first (a write: see the module docstring on SQLite).
                await self._allocate_uidvalidity(session, mailbox_id, 0)
                wanted = [*_superiors(name), name]
                existing = set((await session.execute(select(F.c.name).where(
                    F.c.mailbox_id == mailbox_id, F.c.name.in_(wanted)))).scalars())
                if name in existing:
                    raise FolderExists(f"folder {name!r} already exists")
                missing = [level for level in wanted if level not in existing]
                first = await self._allocate_uidvalidity(session, mailbox_id, len(missing))
                for offset, level in enumerate(missing):
                    use = special_use.value if special_use is not None and level == name else None
                    await self._new_folder(session, mailbox_id, level, use, first + offset)
        except IntegrityError as exc:  # a concurrent CREATE of the same name won
            raise FolderExists(f"folder {name!r} already exists") from exc
        return await self.get_folder(mailbox_id, name)

    async def delete_folder(self, mailbox_id: int, name: str) -> None:
        """DELETE (RFC 9051 §6.3.5): the folder, its messages and tombstones. INBOX cannot be deleted; a folder
        with inferiors is refused with :class:`FolderHasChildren` (its messages stay)."""
        name = normalize_folder_name(name)
        if name == "INBOX":
            raise NotPermitted("INBOX cannot be deleted")
        async with self.db.transaction() as session:
            folder = await self._lock_name(session, mailbox_id, name)
            has_children = (await session.execute(select(exists().where(
                F.c.mailbox_id == mailbox_id, self._children_of(name))))).scalar()
            if has_children:
                raise FolderHasChildren(f"folder {name!r} has subfolders; delete them first")
            rows = (await session.execute(select(M.c.uid, M.c.size, M.c.blob_id)
                                          .where(M.c.folder_id == folder.id).order_by(M.c.uid))).all()
            await session.execute(delete(M).where(M.c.folder_id == folder.id))
            await self._release_blobs(session, Counter(row.blob_id for row in rows))
            await self._charge(session, mailbox_id, -sum(row.size for row in rows))
            await session.execute(delete(X).where(X.c.folder_id == folder.id))
            await session.execute(delete(F).where(F.c.id == folder.id))
            folder.next_modseq()
            folder.messages = folder.unseen = folder.deleted = folder.size = 0
            await self._stage(session, folder, expunged=[row.uid for row in rows])

    async def rename_folder(self, mailbox_id: int, old: str, new: str) -> None:
        """RENAME (RFC 9051 §6.3.6) with inferiors; INBOX: its messages move to ``new``, INBOX stays, empty.

        Raises NoSuchFolder, FolderExists (``new`` or one of the renamed inferiors' new names exists),
        InvalidFolderName (including renaming a folder below itself)."""
        old, new = normalize_folder_name(old), normalize_folder_name(new)
        if new == "INBOX" or new == old:
            raise FolderExists(f"folder {new!r} already exists")
        if new.startswith(old + "/"):
            raise InvalidFolderName(f"cannot rename {old!r} below itself")
        try:
            async with self.db.transaction() as session:
                if old == "INBOX":
                    await self._rename_inbox(session, mailbox_id, new)
                    return
                folder = await self._lock_name(session, mailbox_id, old)
                moving = (await session.execute(select(F.c.id, F.c.name).where(
                    F.c.mailbox_id == mailbox_id, self._children_of(old)))).all()
                renames = [(folder.id, new)] + [(row.id, new + row.name[len(old):]) for row in moving]
                targets = [target for _id, target in renames]
                if any(len(target) > MAX_NAME_LENGTH for target in targets):
                    raise InvalidFolderName(f"folder name is longer than {MAX_NAME_LENGTH} characters")
                clash = (await session.execute(select(F.c.name).where(
                    F.c.mailbox_id == mailbox_id, F.c.name.in_(targets)).limit(1))).scalar()
                if clash is not None:
                    raise FolderExists(f"folder {clash!r} already exists")
                await self._create_superiors(session, mailbox_id, new)
                for folder_id, target in renames:
                    await session.execute(update(F).where(F.c.id == folder_id).values(name=target))
        except IntegrityError as exc:
            raise FolderExists(f"folder {new!r} already exists") from exc

    async def _create_superiors(self, session: AsyncSession, mailbox_id: int, name: str) -> None:
        superiors = _superiors(name)
        if not superiors:
            return
        existing = set((await session.execute(select(F.c.name).where(
            F.c.mailbox_id == mailbox_id, F.c.name.in_(superiors)))).scalars())
        missing = [level for level in superiors if level not in existing]
        if missing:
            first = await self._allocate_uidvalidity(session, mailbox_id, len(missing))
            for offset, level in enumerate(missing):
                await self._new_folder(session, mailbox_id, level, None, first + offset)

    async def _rename_inbox(self, session: AsyncSession, mailbox_id: int, new: str) -> None:
        inbox = await self._lock_name(session, mailbox_id, "INBOX")
        if (await session.execute(select(F.c.id).where(F.c.mailbox_id == mailbox_id, F.c.name == new))).first():
            raise FolderExists(f"folder {new!r} already exists")
        await self._create_superiors(session, mailbox_id, new)
        uidvalidity = await self._allocate_uidvalidity(session, mailbox_id, 1)
        await self._new_folder(session, mailbox_id, new, None, uidvalidity)
        target = await self._lock_name(session, mailbox_id, new)
        # The new folder has a new UIDVALIDITY: the messages keep their UIDs and MODSEQs there.
        target.uidnext, target.highestmodseq = inbox.uidnext, inbox.highestmodseq
        target.messages, target.unseen, target.deleted, target.size = (inbox.messages, inbox.unseen, inbox.deleted,
                                                                        inbox.size)
        await self._save(session, target)
        uids = list((await session.execute(select(M.c.uid).where(M.c.folder_id == inbox.id)
                                           .order_by(M.c.uid))).scalars())
        modseq = inbox.next_modseq()
        await session.execute(insert(X).from_select(
            ["folder_id", "uid", "modseq"],
            select(literal(inbox.id), M.c.uid, literal(modseq)).where(M.c.folder_id == inbox.id)))
        await session.execute(update(M).where(M.c.folder_id == inbox.id).values(folder_id=target.id))
        inbox.messages = inbox.unseen = inbox.deleted = inbox.size = 0
        await self._save(session, inbox)
        await self._stage(session, inbox, expunged=uids)

    async def set_subscribed(self, mailbox_id: int, name: str, subscribed: bool) -> None:
        """SUBSCRIBE/UNSUBSCRIBE (RFC 9051 §6.3.7-8) of an existing folder. Raises NoSuchFolder."""
        name = normalize_folder_name(name)
        async with self.db.transaction() as session:
            result = await session.execute(update(F).where(F.c.mailbox_id == mailbox_id, F.c.name == name)
                                           .values(subscribed=subscribed).returning(F.c.id))
            if result.first() is None:
                raise NoSuchFolder(f"folder {name!r} does not exist")

    async def quota(self, mailbox_id: int) -> tuple[int, int]:
        """(used octets, limit octets) of the account — RFC 9208 STORAGE. Raises NoSuchAccount."""
        async with self.db.session() as session:
            row = (await session.execute(select(A.c.used, A.c.quota_limit)
                                         .where(A.c.mailbox_id == mailbox_id))).one_or_none()
        if row is None:
            raise NoSuchAccount(f"mailbox {mailbox_id} has no message store")
        return int(row.used), int(row.quota_limit if row.quota_limit is not None else self.default_quota)

    async def set_quota(self, mailbox_id: int, limit: int | None) -> None:
        """Set the account's own storage limit in octets (None: back to the default). Existing mail stays."""
        if limit is not None and limit < 0:
            raise StoreError("a quota cannot be negative")
        async with self.db.transaction() as session:
            result = await session.execute(update(A).where(A.c.mailbox_id == mailbox_id)
                                           .values(quota_limit=limit).returning(A.c.mailbox_id))
            if result.first() is None:
                raise NoSuchAccount(f"mailbox {mailbox_id} has no message store")

    # Appending and delivering --------------------------------------------------------------------------------

    @staticmethod
    async def _analyse(raw: bytes) -> analysis_module.Analysis:
        if len(raw) > THREADED_ANALYSIS:
            return await asyncio.to_thread(analysis_module.analyse, raw)
        return analysis_module.analyse(raw)

    async def _known_blobs(self, connection: AsyncConnection, blob_ids: Collection[str]) -> set[str]:
        known: set[str] = set()
        for chunk in _chunks(sorted(blob_ids)):
            known.update((await connection.execute(_KNOWN_BLOBS, {"ids": chunk})).scalars())
        return known

    async def _store_blobs(self, connection: AsyncConnection, references: Counter[str], raws: dict[str, bytes],
                           analyses: dict[str, analysis_module.Analysis]) -> None:
        """Add ``references[blob]`` references to each blob, storing the new ones with their analyses.

        One upsert for every blob (in id order, so two transactions never wait on each other's blobs crosswise): a
        stored blob gets its refcount raised, a new one is inserted; the refcount it returns tells them apart (a
        stored blob has at least one reference: the transaction dropping the last one deletes it). A concurrent
        transaction storing the same octets makes it an increment (PostgreSQL waits for that transaction first).
        ``analyses`` holds the analysis of blobs believed new; a blob deleted meanwhile is analysed here."""
        if not references:
            return
        now = utcnow()
        rows = [{"id": blob_id, "size": len(raws[blob_id]), "refcount": count, "created_at": now,
                 "data": raws[blob_id]} for blob_id, count in sorted(references.items())]
        new = [blob_id for blob_id, refcount in (await connection.execute(self._upsert_blobs, rows)).all()
               if refcount == references[blob_id]]
        if not new:
            return
        analysis_rows: list[dict[str, Any]] = []
        header_rows: list[dict[str, Any]] = []
        for blob_id in new:
            analysis = analyses.get(blob_id) or await self._analyse(raws[blob_id])
            analysis_rows.append({
                "blob_id": blob_id, "version": analysis_module.ANALYSIS_VERSION, "envelope": analysis.envelope,
                "bodystructure": analysis.bodystructure, "body": analysis.body, "subject": analysis.subject,
                "from_name": analysis.from_name, "from_address": analysis.from_address,
                "sent_date": analysis.sent_date, "sent_day": analysis.sent_day, "message_id": analysis.message_id,
                "has_attachments": analysis.has_attachments,
                "parts": [_part_json(part) for part in analysis.parts], "body_text": analysis.body_text})
            header_rows.extend({"blob_id": blob_id, "position": position, "name": name, "value": value}
                               for position, (name, value) in enumerate(analysis.header_fields))
        await connection.execute(_INSERT_ANALYSES, analysis_rows)
        if header_rows:
            await connection.execute(_INSERT_HEADER_FIELDS, header_rows)

    async def _release_blobs(self, session: AsyncSession, references: Counter[str]) -> None:
        """Drop references; delete blobs (and their analyses) nobody references any more."""
        if not references:
            return
        for count, blob_ids in _group_by_count(references).items():
            for chunk in _chunks(blob_ids):
                await session.execute(update(B).where(B.c.id.in_(chunk)).values(refcount=B.c.refcount - count))
        for chunk in _chunks(sorted(references)):
            dead = list((await session.execute(select(B.c.id).where(B.c.id.in_(chunk), B.c.refcount <= 0)))
                        .scalars())
            if dead:
                await session.execute(delete(H).where(H.c.blob_id.in_(dead)))
                await session.execute(delete(AN).where(AN.c.blob_id.in_(dead)))
                await session.execute(delete(B).where(B.c.id.in_(dead)))

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
        """APPEND (RFC 9051 §6.3.12): store one message, analysed once here. Raises NoSuchFolder, QuotaExceeded,
        MessageTooLarge, InvalidFlag, InvalidFolderName; a refused APPEND writes nothing.

        One transaction of five statements: the folder row is locked by the ``UPDATE`` that takes the UID and
        MODSEQ and counts the message (a refusal after it rolls everything back), then the quota, the blob upsert
        (with its analysis when new), the message row."""
        name = normalize_folder_name(folder)
        system, keywords = parse_flags(flags)
        if len(raw) > MAX_MESSAGE_SIZE:
            raise MessageTooLarge(f"message of {len(raw)} octets is above the limit of {MAX_MESSAGE_SIZE}")
        when = (internal_date or datetime.now(UTC)).replace(microsecond=0)
        if when.tzinfo is None:
            raise StoreError("the internal date must carry a time zone")
        blob_id = hashlib.sha256(raw).hexdigest()
        analyses: dict[str, analysis_module.Analysis] = {}
        if len(raw) <= THREADED_ANALYSIS:
            analyses[blob_id] = analysis_module.analyse(raw)  # cheaper than asking whether the blob is stored
        else:
            async with self.db.session() as own:
                if not await self._known_blobs(await own.connection(), [blob_id]):
                    analyses[blob_id] = await self._analyse(raw)
        seen, deleted = "\\Seen" in system, "\\Deleted" in system
        async with self.db.transaction() as session:
            connection = await session.connection()
            locked = await self._allocate(connection, mailbox_id, name, messages=1, unseen=int(not seen),
                                          deleted=int(deleted), octets=len(raw))
            if locked is None:
                raise NoSuchFolder(f"folder {name!r} does not exist")
            charge = {"account": mailbox_id, "octets": len(raw), "default_quota": self.default_quota}
            if (await connection.execute(_CHARGE, charge)).first() is None:
                raise QuotaExceeded("the mailbox is over its storage quota")
            await self._store_blobs(connection, Counter({blob_id: 1}), {blob_id: raw}, analyses)
            uid, modseq = locked.uidnext, locked.next_modseq()
            await connection.execute(_INSERT_MESSAGES, [{
                "folder_id": locked.id, "uid": uid, "modseq": modseq, "seen": seen,
                "answered": "\\Answered" in system, "flagged": "\\Flagged" in system, "deleted": deleted,
                "draft": "\\Draft" in system, "keywords": _keywords_text(keywords), "internal_date": when,
                "size": len(raw), "blob_id": blob_id, "signature": signature}])
            locked.uidnext, locked.messages = uid + 1, locked.messages + 1
            locked.unseen, locked.deleted, locked.size = (locked.unseen + (not seen), locked.deleted + deleted,
                                                          locked.size + len(raw))
            await self._stage(session, locked, added=[uid], origin=origin)
        return AppendResult(locked.id, locked.uidvalidity, uid, modseq)

    @staticmethod
    async def _allocate(connection: AsyncConnection, mailbox_id: int, name: str, *, messages: int, unseen: int,
                        deleted: int, octets: int) -> _Locked | None:
        """Lock a folder and count ``messages`` new messages in it, with one ``UPDATE … RETURNING`` (None: no such
        folder). The result holds the folder as it was before (the new messages' UIDs start at its ``uidnext``,
        their MODSEQs after its ``highestmodseq``); ``written`` holds what the database now has."""
        row = (await connection.execute(_ALLOCATE, {
            "f_mailbox": mailbox_id, "f_name": name, "n": messages, "n_unseen": unseen, "n_deleted": deleted,
            "octets": octets})).one_or_none()
        if row is None:
            return None
        locked = _Locked(row.id, row.mailbox_id, row.name, row.uidvalidity, row.uidnext - messages,
                         row.highestmodseq - messages, row.messages - messages, row.unseen - unseen,
                         row.deleted - deleted, row.size - octets)
        locked.before = (locked.highestmodseq, locked.uidnext)
        locked.written = (row.uidnext, row.highestmodseq, row.messages, row.unseen, row.deleted, row.size)
        return locked

    async def deliver_in(
        self,
        session: AsyncSession,
        mailbox_id: int,
        raw: bytes,
        *,
        folder: str = "INBOX",
        signature: dict[str, object] | None = None,
        delivery_key: str,
    ) -> AppendResult | None:
        """One delivery inside the caller's open transaction: :meth:`deliver_many` of one, its refusal raised.

        Returns None (writing nothing) when ``delivery_key`` was already delivered to the mailbox. Raises
        NoSuchFolder, QuotaExceeded, MessageTooLarge, StoreError (bad key) having written nothing, so the caller's
        transaction stays usable."""
        [result] = await self.deliver_many(session, [Delivery(mailbox_id, raw, delivery_key, folder, signature)])
        if isinstance(result, StoreError):
            raise result
        return result

    async def deliver_many(
        self, session: AsyncSession, deliveries: Sequence[Delivery],
    ) -> list[AppendResult | StoreError | None]:
        """Deliver a batch inside the caller's open transaction (the MTA's group commit: its messages, deliveries
        and queue entries commit once). One result per delivery, in order:

        - an :class:`AppendResult`: delivered (INBOX or ``folder``, no flags, internal date now);
        - None: ``(mailbox_id, delivery_key)`` was already delivered (earlier, or earlier in this batch) — nothing
          written. Keys are kept after the message is expunged or moved, until :meth:`prune_delivery_keys`;
        - a :class:`StoreError` (NoSuchFolder, QuotaExceeded, MessageTooLarge, InvalidFolderName, a bad key): that
          delivery was refused and nothing was written for it; the others are delivered and the caller's
          transaction stays usable. Quota is checked per delivery in batch order, as successive deliveries would.

        Creates the account and its default folders on a mailbox's first delivery; ``mailbox_id`` must be a
        directory mailbox (a foreign-key violation otherwise aborts the caller's transaction).

        The cost is per batch, not per message: each distinct message is analysed once (the same octets to N
        mailboxes: one blob with N references); folders are locked in id order and each gets one range of UIDs and
        MODSEQs and one counter update; account rows are locked last; keys, blobs, analyses and message rows are
        written with one multi-row statement each. A key delivered by a concurrent transaction (PostgreSQL: it
        waits for it) counts as already delivered. One FolderChange per folder is published after the caller's
        commit (a session ``after_commit`` hook; dropped on rollback), with a NOTIFY on PostgreSQL.
        """
        results: list[AppendResult | StoreError | None] = [None] * len(deliveries)
        first: dict[tuple[int, str], int] = {}
        duplicates: list[tuple[int, int]] = []
        todo: list[_Pending] = []
        for index, delivery in enumerate(deliveries):
            if not delivery.delivery_key or len(delivery.delivery_key) > 255:
                results[index] = StoreError("a delivery key has 1 to 255 characters")
                continue
            if len(delivery.raw) > MAX_MESSAGE_SIZE:
                results[index] = MessageTooLarge(
                    f"message of {len(delivery.raw)} octets is above the limit of {MAX_MESSAGE_SIZE}")
                continue
            try:
                name = normalize_folder_name(delivery.folder)
            except InvalidFolderName as exc:
                results[index] = exc
                continue
            pair = (delivery.mailbox_id, delivery.delivery_key)
            if pair in first:
                duplicates.append((index, first[pair]))
                continue
            first[pair] = index
            todo.append(_Pending(index, delivery, name))
        if todo:
            await self._deliver(session, todo, results)
        for index, original in duplicates:
            outcome = results[original]
            results[index] = outcome if isinstance(outcome, StoreError) else None
        return results

    async def _deliver(self, session: AsyncSession, todo: list[_Pending],
                       results: list[AppendResult | StoreError | None]) -> None:
        connection = await session.connection()
        # Already delivered (a retried SMTP transaction, a queue retry): nothing to do for those.
        done: set[tuple[int, str]] = set()
        accounts = sorted({item.delivery.mailbox_id for item in todo})
        for chunk in _chunks(sorted({item.delivery.delivery_key for item in todo})):
            rows = await connection.execute(_DELIVERED, {"keys": chunk, "accounts": accounts})
            done.update((row.mailbox_id, row.key) for row in rows)
        todo = [item for item in todo if (item.delivery.mailbox_id, item.delivery.delivery_key) not in done]
        if not todo:
            return
        # Analysis (CPU) before any lock, once per distinct message, skipped for stored ones.
        raws: dict[str, bytes] = {}
        for item in todo:
            item.blob_id = hashlib.sha256(item.delivery.raw).hexdigest()
            raws.setdefault(item.blob_id, item.delivery.raw)
        known = await self._known_blobs(connection, raws)
        analyses = {blob_id: await self._analyse(raw) for blob_id, raw in raws.items() if blob_id not in known}
        # Folders, locked in id order (one folder: its UIDs, MODSEQs and counters taken at once, for every
        # delivery; corrected below if some are refused); accounts created on first delivery.
        folders = await self._lock_folders(connection, todo)
        missing = sorted({(item.delivery.mailbox_id, item.folder) for item in todo} - folders.keys())
        if missing:
            mailbox_ids = sorted({mailbox_id for mailbox_id, _name in missing})
            have = set((await connection.execute(select(A.c.mailbox_id).where(A.c.mailbox_id.in_(mailbox_ids))))
                       .scalars())
            created = [mailbox_id for mailbox_id in mailbox_ids if mailbox_id not in have]
            for mailbox_id in created:
                await self._ensure_account_in(session, mailbox_id)
            if created:
                folders.update(await self._lock_folders(connection, [
                    item for item in todo if (item.delivery.mailbox_id, item.folder) in missing
                    and item.delivery.mailbox_id in created]))
        placed: list[_Pending] = []
        for item in todo:
            if (item.delivery.mailbox_id, item.folder) in folders:
                placed.append(item)
            else:
                results[item.index] = NoSuchFolder(f"folder {item.folder!r} does not exist")
        if not placed:
            await self._save_folders(connection, folders.values())
            return
        # Quota, accounts locked last: each delivery charged in turn, refused when it would overflow.
        accepted = await self._charge_batch(connection, placed, results)
        # Delivery keys; one a concurrent transaction has just recorded is already delivered (its charge refunded).
        now = utcnow()
        recorded = {(row.mailbox_id, row.key) for row in await connection.execute(self._record_keys, [
            {"mailbox_id": item.delivery.mailbox_id, "key": item.delivery.delivery_key, "created_at": now}
            for item in accepted])} if accepted else set()
        refunds = Counter[int]()
        for item in accepted:
            if (item.delivery.mailbox_id, item.delivery.delivery_key) not in recorded:
                refunds[item.delivery.mailbox_id] -= len(item.delivery.raw)
        if refunds:
            await connection.execute(_ADD_USED, [{"account": account, "octets": octets}
                                                 for account, octets in sorted(refunds.items())])
            accepted = [item for item in accepted
                        if (item.delivery.mailbox_id, item.delivery.delivery_key) in recorded]
        await self._store_blobs(connection, Counter(item.blob_id for item in accepted), raws, analyses)
        # Messages: UIDs and MODSEQs taken in batch order, counters written once per folder.
        when = datetime.now(UTC).replace(microsecond=0)
        rows: list[dict[str, Any]] = []
        added: dict[int, list[int]] = {}
        for item in accepted:
            folder = folders[(item.delivery.mailbox_id, item.folder)]
            uid = folder.uidnext
            folder.uidnext += 1
            modseq = folder.next_modseq()
            folder.messages += 1
            folder.unseen += 1
            folder.size += len(item.delivery.raw)
            added.setdefault(folder.id, []).append(uid)
            rows.append({"folder_id": folder.id, "uid": uid, "modseq": modseq, "seen": False, "answered": False,
                         "flagged": False, "deleted": False, "draft": False, "keywords": "", "internal_date": when,
                         "size": len(item.delivery.raw), "blob_id": item.blob_id,
                         "signature": item.delivery.signature})
            results[item.index] = AppendResult(folder.id, folder.uidvalidity, uid, modseq)
        if rows:
            await connection.execute(_INSERT_MESSAGES, rows)
        await self._save_folders(connection, folders.values())
        for folder in sorted(folders.values(), key=lambda folder: folder.id):
            if folder.id in added:
                await self._stage(session, folder, added=added[folder.id])

    async def _lock_folders(self, connection: AsyncConnection, items: Sequence[_Pending]) -> dict[tuple[int, str],
                                                                                                    _Locked]:
        """Lock the folders the deliveries go to, in id order (absent ones are left out).

        One folder: :meth:`_allocate` takes the UIDs, MODSEQs and counters of every delivery at once. Several:
        SQLite locks them with one ``UPDATE … RETURNING`` (its first write takes the database's write lock, see the
        module docstring); PostgreSQL with ``SELECT … ORDER BY id FOR NO KEY UPDATE``, which locks the rows in id
        order (the lock an ``UPDATE`` takes; the message rows' foreign keys only need KEY SHARE)."""
        pairs = sorted({(item.delivery.mailbox_id, item.folder) for item in items})
        if len(pairs) == 1:
            [(mailbox_id, name)] = pairs
            locked = await self._allocate(connection, mailbox_id, name, messages=len(items), unseen=len(items),
                                          deleted=0, octets=sum(len(item.delivery.raw) for item in items))
            return {} if locked is None else {(mailbox_id, name): locked}
        folders: dict[tuple[int, str], _Locked] = {}
        for chunk in _chunks(pairs):
            condition = tuple_(F.c.mailbox_id, F.c.name).in_(list(chunk))
            if self.dialect == "postgresql":
                statement: Any = (select(*_FOLDER_COLUMNS).where(condition).order_by(F.c.id)
                                  .with_for_update(key_share=True))
            else:
                statement = update(F).where(condition).values(uidnext=F.c.uidnext).returning(*_FOLDER_COLUMNS)
            for row in await connection.execute(statement):
                folders[(row.mailbox_id, row.name)] = _Locked.of(row)
        return folders

    @staticmethod
    async def _save_folders(connection: AsyncConnection, folders: Iterable[_Locked]) -> None:
        """Write back the counters of locked folders that differ from what the database has."""
        changed = [{"folder": folder.id, "new_uidnext": folder.uidnext, "new_modseq": folder.highestmodseq,
                    "new_messages": folder.messages, "new_unseen": folder.unseen, "new_deleted": folder.deleted,
                    "new_size": folder.size}
                   for folder in sorted(folders, key=lambda folder: folder.id) if folder.counters() != folder.written]
        if changed:
            await connection.execute(_SAVE, changed)

    async def _charge_batch(self, connection: AsyncConnection, items: list[_Pending],
                            results: list[AppendResult | StoreError | None]) -> list[_Pending]:
        """Charge the deliveries to their accounts (locked in id order); the ones that would overflow a quota are
        refused (in ``results``), each checked in turn as successive deliveries would be. One account whose quota
        takes the whole batch: one conditional ``UPDATE``."""
        accounts = sorted({item.delivery.mailbox_id for item in items})
        if len(accounts) == 1:
            charge = {"account": accounts[0], "octets": sum(len(item.delivery.raw) for item in items),
                      "default_quota": self.default_quota}
            if (await connection.execute(_CHARGE, charge)).first() is not None:
                return items
        statement = (select(A.c.mailbox_id, A.c.used, A.c.quota_limit).where(A.c.mailbox_id.in_(accounts))
                     .order_by(A.c.mailbox_id).with_for_update(key_share=True))
        room = {row.mailbox_id: (row.quota_limit if row.quota_limit is not None else self.default_quota) - row.used
                for row in await connection.execute(statement)}
        accepted: list[_Pending] = []
        charges = Counter[int]()
        for item in items:
            size = len(item.delivery.raw)
            if size > room[item.delivery.mailbox_id]:
                results[item.index] = QuotaExceeded("the mailbox is over its storage quota")
                continue
            room[item.delivery.mailbox_id] -= size
            charges[item.delivery.mailbox_id] += size
            accepted.append(item)
        if charges:
            await connection.execute(_ADD_USED, [{"account": account, "octets": octets}
                                                 for account, octets in sorted(charges.items())])
        return accepted

    async def prune_delivery_keys(self, older_than: datetime) -> int:
        """Forget delivery keys recorded before ``older_than`` (once the MTA can no longer retry them)."""
        async with self.db.transaction() as session:
            result = await session.execute(delete(K).where(K.c.created_at < older_than).returning(K.c.key))
            return len(result.all())

    # Reading -------------------------------------------------------------------------------------------------

    async def _require_folder(self, session: AsyncSession, folder_id: int) -> None:
        if (await session.execute(select(F.c.id).where(F.c.id == folder_id))).first() is None:
            raise NoSuchFolder(f"folder {folder_id} does not exist")

    async def snapshot(self, folder_id: int) -> list[MessageState]:
        """All messages of a folder in UID order (a session's sequence-number map). Raises NoSuchFolder.

        The system flags travel as one integer per row and flag sets are shared between equal rows: this is the one
        read proportional to the folder size (~4 µs per message)."""
        statement = select(M.c.uid, M.c.modseq, _FLAG_BITS, M.c.keywords).where(M.c.folder_id == folder_id)
        async with self.db.session() as session:
            rows = (await session.execute(statement.order_by(M.c.uid))).all()
            if not rows:
                await self._require_folder(session, folder_id)
        sets: dict[tuple[int, str], frozenset[str]] = {}
        out = []
        for uid, modseq, bits, keywords in rows:
            flags = sets.get((bits, keywords))
            if flags is None:
                flags = sets[(bits, keywords)] = self._flags(*(bool(int(bits) >> n & 1) for n in range(5)), keywords)
            out.append(MessageState(uid, modseq, flags))
        return out

    async def count_before_first_unseen(self, folder_id: int) -> int | None:
        """Sequence number of the first unseen message (RFC 3501 §6.3.1 UNSEEN), or None; one indexed query."""
        first_unseen = (select(func.min(M.c.uid)).where(M.c.folder_id == folder_id, M.c.seen == false())
                        .scalar_subquery())
        statement = select(func.count()).select_from(M).where(M.c.folder_id == folder_id, M.c.uid <= first_unseen)
        async with self.db.session() as session:
            count = (await session.execute(statement)).scalar_one()
        return int(count) or None

    _SUMMARY_COLUMNS = (M.c.uid, M.c.modseq, M.c.seen, M.c.answered, M.c.flagged, M.c.deleted, M.c.draft,
                        M.c.keywords, M.c.internal_date, M.c.size, M.c.blob_id, M.c.signature, AN.c.envelope,
                        AN.c.bodystructure, AN.c.body, AN.c.subject, AN.c.from_name, AN.c.from_address,
                        AN.c.sent_date, AN.c.has_attachments)

    def _summary(self, row: Row[Any]) -> MessageSummary:
        return MessageSummary(
            uid=row[0], modseq=row[1], flags=self._flags(row[2], row[3], row[4], row[5], row[6], row[7]),
            internal_date=row[8], size=row[9], blob_id=row[10], envelope=row[12], bodystructure=row[13],
            body=row[14], subject=row[15], from_name=row[16], from_address=row[17], sent_date=row[18],
            has_attachments=bool(row[19]), signature=row[11])

    async def summaries(self, folder_id: int, uids: Sequence[int]) -> list[MessageSummary]:
        """Pre-rendered FETCH data of the given UIDs (absent ones skipped), in UID order, one query per chunk."""
        base = (select(*self._SUMMARY_COLUMNS).select_from(M.join(AN, AN.c.blob_id == M.c.blob_id))
                .where(M.c.folder_id == folder_id))
        out: list[MessageSummary] = []
        async with self.db.session() as session:
            for condition in _uid_chunks(uids):
                statement = base.where(condition) if condition is not None else base
                out.extend(self._summary(row) for row in (await session.execute(statement.order_by(M.c.uid))).all())
        return out

    async def page(self, folder_id: int, *, before_uid: int | None = None, limit: int = 50) -> list[MessageSummary]:
        """Up to ``limit`` summaries of the folder with a UID below ``before_uid`` (all when None), newest first.

        Keyset pagination on the ``(folder_id, uid)`` unique index: the cost of a page does not grow with the
        folder or with how deep the page is (no OFFSET). The webmail's message list."""
        statement = (select(*self._SUMMARY_COLUMNS).select_from(M.join(AN, AN.c.blob_id == M.c.blob_id))
                     .where(M.c.folder_id == folder_id))
        if before_uid is not None:
            statement = statement.where(M.c.uid < before_uid)
        statement = statement.order_by(M.c.uid.desc()).limit(max(1, min(limit, 1000)))
        async with self.db.session() as session:
            return [self._summary(row) for row in (await session.execute(statement)).all()]

    async def raw(self, blob_id: str) -> bytes:
        """The stored message octets. Raises NoSuchMessage."""
        async with self.db.session() as session:
            data = (await session.execute(select(B.c.data).where(B.c.id == blob_id))).scalar_one_or_none()
        if data is None:
            raise NoSuchMessage(f"message {blob_id} does not exist")
        return bytes(data)

    async def parts(self, folder_id: int, uid: int) -> list[PartLocation]:
        """The part map of a message (RFC 9051 §6.4.5 sections as byte ranges). Raises NoSuchMessage."""
        statement = (select(AN.c.parts).select_from(M.join(AN, AN.c.blob_id == M.c.blob_id))
                     .where(M.c.folder_id == folder_id, M.c.uid == uid))
        async with self.db.session() as session:
            parts = (await session.execute(statement)).scalar_one_or_none()
        if parts is None:
            raise NoSuchMessage(f"message UID {uid} does not exist")
        return [PartLocation(*item) for item in parts]

    async def message_blob(self, folder_id: int, uid: int) -> str:
        """The blob id of a message (for :meth:`raw`). Raises NoSuchMessage."""
        async with self.db.session() as session:
            blob_id = (await session.execute(select(M.c.blob_id).where(M.c.folder_id == folder_id, M.c.uid == uid))
                       ).scalar_one_or_none()
        if blob_id is None:
            raise NoSuchMessage(f"message UID {uid} does not exist")
        return str(blob_id)

    # Flags ---------------------------------------------------------------------------------------------------

    async def store_flags(
        self,
        folder_id: int,
        uids: Sequence[int],
        mode: str,
        flags: Sequence[str],
        *,
        unchanged_since: int | None = None,
        origin: str = "",
    ) -> FlagUpdate:
        """STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3): each changed message gets its own new
        MODSEQ; messages whose MODSEQ is above ``unchanged_since`` are left alone and reported in ``failed_uids``.
        Absent UIDs are ignored. Raises NoSuchFolder, InvalidFlag."""
        if mode not in ("add", "remove", "replace"):
            raise StoreError(f"unknown STORE mode {mode!r}")
        system, keywords = parse_flags(flags)
        wanted = {key.lower() for key in keywords}
        changed: list[MessageState] = []
        unchanged: list[MessageState] = []
        failed: list[int] = []
        async with self.db.transaction() as session:
            folder = await self._lock_id(session, folder_id)
            updates: list[dict[str, Any]] = []
            for condition in _uid_chunks(uids):
                statement = select(M.c.id, M.c.uid, M.c.modseq, M.c.seen, M.c.answered, M.c.flagged, M.c.deleted,
                                   M.c.draft, M.c.keywords).where(M.c.folder_id == folder_id)
                if condition is not None:
                    statement = statement.where(condition)
                for row in (await session.execute(statement.order_by(M.c.uid))).all():
                    if unchanged_since is not None and row.modseq > unchanged_since:
                        failed.append(row.uid)
                        continue
                    current = {name for column, name in _FLAG_COLUMNS if getattr(row, column)}
                    current_keywords = _keywords_list(row.keywords)
                    if mode == "add":
                        new_system = current | system
                        lowered = {key.lower() for key in current_keywords}
                        new_keywords = current_keywords + [key for key in keywords if key.lower() not in lowered]
                    elif mode == "remove":
                        new_system = current - system
                        new_keywords = [key for key in current_keywords if key.lower() not in wanted]
                    else:
                        new_system, new_keywords = set(system), list(keywords)
                    if new_system == current and new_keywords == current_keywords:
                        unchanged.append(self._state(row))
                        continue
                    modseq = folder.next_modseq()
                    values = {column: name in new_system for column, name in _FLAG_COLUMNS}
                    folder.unseen += row.seen - values["seen"]
                    folder.deleted += values["deleted"] - row.deleted
                    text = _keywords_text(new_keywords)
                    updates.append({"row_id": row.id, "modseq": modseq, "new_keywords": text,
                                    **{f"new_{column}": value for column, value in values.items()}})
                    changed.append(MessageState(row.uid, modseq, self._flags(*(values[c] for c, _ in _FLAG_COLUMNS),
                                                                             text)))
            if updates:
                statement = (update(M).where(M.c.id == bindparam("row_id")).values(
                    modseq=bindparam("modseq"), keywords=bindparam("new_keywords"),
                    **{column: bindparam(f"new_{column}") for column, _ in _FLAG_COLUMNS}))
                await session.execute(statement, updates)
                await self._save(session, folder)
                await self._stage(session, folder, flags=changed, origin=origin)
        return FlagUpdate(tuple(changed), tuple(unchanged), tuple(sorted(failed)))

    # Copy, move, expunge -------------------------------------------------------------------------------------

    async def _lock_pair(self, session: AsyncSession, source_id: int, dest_id: int) -> tuple[_Locked, _Locked]:
        if source_id == dest_id:
            folder = await self._lock_id(session, source_id)
            return folder, folder
        first, second = sorted((source_id, dest_id))
        locked = {first: await self._lock_id(session, first), second: await self._lock_id(session, second)}
        return locked[source_id], locked[dest_id]

    async def _source_rows(self, session: AsyncSession, folder_id: int, uids: Sequence[int]) -> list[Row[Any]]:
        rows: list[Row[Any]] = []
        for condition in _uid_chunks(uids):
            statement = select(M).where(M.c.folder_id == folder_id)
            if condition is not None:
                statement = statement.where(condition)
            rows.extend((await session.execute(statement.order_by(M.c.uid))).all())
        rows.sort(key=lambda row: row.uid)
        return rows

    async def copy(self, folder_id: int, uids: Sequence[int], dest_folder_id: int, *, origin: str = "") -> CopyResult:
        """COPY (RFC 9051 §6.4.7): flags, internal date and verification result kept; the blob is shared, not
        duplicated; the destination account is charged (QuotaExceeded writes nothing). UIDPLUS data (RFC 4315)."""
        async with self.db.transaction() as session:
            _source, dest = await self._lock_pair(session, folder_id, dest_folder_id)
            rows = await self._source_rows(session, folder_id, uids)
            if not rows:
                return CopyResult(dest.uidvalidity, (), ())
            await self._charge(session, dest.mailbox_id, sum(row.size for row in rows))
            references = Counter(row.blob_id for row in rows)
            for count, blob_ids in _group_by_count(references).items():
                for chunk in _chunks(blob_ids):
                    await session.execute(update(B).where(B.c.id.in_(chunk)).values(refcount=B.c.refcount + count))
            new_rows, dest_uids = [], []
            for row in rows:
                uid = dest.uidnext
                dest.uidnext += 1
                dest_uids.append(uid)
                new_rows.append({
                    "folder_id": dest.id, "uid": uid, "modseq": dest.next_modseq(), "seen": row.seen,
                    "answered": row.answered, "flagged": row.flagged, "deleted": row.deleted, "draft": row.draft,
                    "keywords": row.keywords, "internal_date": row.internal_date, "size": row.size,
                    "blob_id": row.blob_id, "signature": row.signature})
                dest.messages += 1
                dest.unseen += not row.seen
                dest.deleted += bool(row.deleted)
                dest.size += row.size
            await session.execute(insert(M), new_rows)
            await self._save(session, dest)
            await self._stage(session, dest, added=dest_uids, origin=origin)
            return CopyResult(dest.uidvalidity, tuple(row.uid for row in rows), tuple(dest_uids))

    async def move(self, folder_id: int, uids: Sequence[int], dest_folder_id: int, *, origin: str = "") -> CopyResult:
        """MOVE (RFC 6851): atomically give the messages new UIDs in the destination and expunge them from the
        source (tombstones for QRESYNC). The blob and the row stay; only quota across accounts moves."""
        async with self.db.transaction() as session:
            source, dest = await self._lock_pair(session, folder_id, dest_folder_id)
            rows = await self._source_rows(session, folder_id, uids)
            if not rows:
                return CopyResult(dest.uidvalidity, (), ())
            octets = sum(row.size for row in rows)
            if source.mailbox_id != dest.mailbox_id:
                await self._charge(session, dest.mailbox_id, octets)
                await self._charge(session, source.mailbox_id, -octets)
            moves, dest_uids = [], []
            for row in rows:
                uid = dest.uidnext
                dest.uidnext += 1
                dest_uids.append(uid)
                moves.append({"row_id": row.id, "new_folder": dest.id, "new_uid": uid,
                              "new_modseq": dest.next_modseq()})
                for folder, sign in ((source, -1), (dest, 1)):
                    folder.messages += sign
                    folder.unseen += sign * (not row.seen)
                    folder.deleted += sign * bool(row.deleted)
                    folder.size += sign * row.size
            await session.execute(update(M).where(M.c.id == bindparam("row_id")).values(
                folder_id=bindparam("new_folder"), uid=bindparam("new_uid"), modseq=bindparam("new_modseq")), moves)
            tombstone = source.next_modseq()
            await session.execute(insert(X), [{"folder_id": source.id, "uid": row.uid, "modseq": tombstone}
                                              for row in rows])
            await self._save(session, source)
            if dest is not source:
                await self._save(session, dest)
            source_uids = [row.uid for row in rows]
            if dest is source:
                await self._stage(session, source, added=dest_uids, expunged=source_uids, origin=origin)
            else:
                await self._stage(session, source, expunged=source_uids, origin=origin)
                await self._stage(session, dest, added=dest_uids, origin=origin)
            return CopyResult(dest.uidvalidity, tuple(source_uids), tuple(dest_uids))

    async def expunge(self, folder_id: int, uids: Sequence[int] | None = None, *, origin: str = "") -> list[int]:
        """EXPUNGE / UID EXPUNGE (RFC 9051 §6.4.3, §6.4.9): remove messages flagged \\Deleted (only those in
        ``uids`` when given), leave tombstones with one new MODSEQ (RFC 7162 §3.2.5.1), release their blobs and
        quota. Returns the expunged UIDs, ascending."""
        async with self.db.transaction() as session:
            folder = await self._lock_id(session, folder_id)
            rows: list[Row[Any]] = []
            for condition in _uid_chunks(uids):
                statement = (select(M.c.id, M.c.uid, M.c.size, M.c.blob_id, M.c.seen)
                             .where(M.c.folder_id == folder_id, M.c.deleted.is_(True)))
                if condition is not None:
                    statement = statement.where(condition)
                rows.extend((await session.execute(statement)).all())
            if not rows:
                return []
            rows.sort(key=lambda row: row.uid)
            for chunk in _chunks([row.id for row in rows]):
                await session.execute(delete(M).where(M.c.id.in_(chunk)))
            modseq = folder.next_modseq()
            await session.execute(insert(X), [{"folder_id": folder.id, "uid": row.uid, "modseq": modseq}
                                              for row in rows])
            await self._release_blobs(session, Counter(row.blob_id for row in rows))
            octets = sum(row.size for row in rows)
            await self._charge(session, folder.mailbox_id, -octets)
            folder.messages -= len(rows)
            folder.unseen -= sum(1 for row in rows if not row.seen)
            folder.deleted -= len(rows)
            folder.size -= octets
            await self._save(session, folder)
            expunged = [row.uid for row in rows]
            await self._stage(session, folder, expunged=expunged, origin=origin)
            return expunged

    # Search and resynchronisation ----------------------------------------------------------------------------

    async def search(self, folder_id: int, key: SearchKey, *, recent_uids: Collection[int] = ()) -> list[int]:
        """SEARCH (RFC 9051 §6.4.4): UIDs matching ``key``, ascending, evaluated in SQL on pre-extracted data.
        ``recent_uids``: the session's \\Recent messages (RECENT, NEW, OLD keys). Raises NoSuchFolder."""
        compiled = compile_search(key, dialect=self.dialect, recent=recent_uids)
        source = M.join(AN, AN.c.blob_id == M.c.blob_id) if compiled.needs_analysis else M
        statement = (select(M.c.uid).select_from(source).where(M.c.folder_id == folder_id, compiled.condition)
                     .order_by(M.c.uid))
        async with self.db.session() as session:
            uids = [int(uid) for uid in (await session.execute(statement)).scalars()]
            if not uids:
                await self._require_folder(session, folder_id)
        return uids

    async def changes_since(self, folder_id: int, modseq: int) -> Changes:
        """CONDSTORE/QRESYNC resynchronisation (RFC 7162 §3.1.4.1, §3.2.5): messages whose MODSEQ is above
        ``modseq`` and UIDs expunged after it (tombstones are kept for the folder's life). Raises NoSuchFolder."""
        async with self.db.session() as session:
            highest = (await session.execute(select(F.c.highestmodseq).where(F.c.id == folder_id))).scalar()
            if highest is None:
                raise NoSuchFolder(f"folder {folder_id} does not exist")
            rows = (await session.execute(
                select(M.c.uid, M.c.modseq, M.c.seen, M.c.answered, M.c.flagged, M.c.deleted, M.c.draft,
                       M.c.keywords).where(M.c.folder_id == folder_id, M.c.modseq > modseq).order_by(M.c.uid))).all()
            vanished = (await session.execute(select(X.c.uid).where(X.c.folder_id == folder_id, X.c.modseq > modseq)
                                              .order_by(X.c.uid))).scalars().all()
        return Changes(int(highest), tuple(self._state(row) for row in rows), tuple(int(uid) for uid in vanished))

    async def _load_change(self, folder_id: int, modseq: int, uidnext: int, until: int) -> FolderChange | None:
        """A change reconstructed from the database (NOTIFY pointer, or catching up after a reconnection)."""
        async with self.db.session() as session:
            folder = (await session.execute(select(F.c.highestmodseq, F.c.uidnext).where(F.c.id == folder_id))).first()
            if folder is None:
                return FolderChange(folder_id, 0, 0)
            window = and_(M.c.folder_id == folder_id, M.c.modseq > modseq, M.c.modseq <= until)
            rows = (await session.execute(
                select(M.c.uid, M.c.modseq, M.c.seen, M.c.answered, M.c.flagged, M.c.deleted, M.c.draft,
                       M.c.keywords).where(window).order_by(M.c.uid))).all()
            gone = (await session.execute(select(X.c.uid).where(
                X.c.folder_id == folder_id, X.c.modseq > modseq, X.c.modseq <= until).order_by(X.c.uid))).scalars()
            expunged = tuple(int(uid) for uid in gone)
        added = tuple(row.uid for row in rows if row.uid >= uidnext)
        flags = tuple(self._state(row) for row in rows if row.uid < uidnext)
        if not (added or expunged or flags):
            return None
        if until >= folder.highestmodseq:
            highest, next_uid = int(folder.highestmodseq), int(folder.uidnext)
        else:
            highest, next_uid = until, max([uidnext, *(uid + 1 for uid in added)])
        return FolderChange(folder_id, highest, next_uid, added, expunged, flags)

    # Notifications -------------------------------------------------------------------------------------------

    def watch(self, folder_id: int) -> FolderWatch:
        """Changes of a folder as they commit, from this process and (PostgreSQL) every other sharing the database.

        The watch is registered when this returns; ``await watch.ready()`` (or ``async with``) also waits until the
        cross-process listener is active. Close it when done."""
        return FolderWatch(self.notifier, folder_id)

    async def start(self) -> None:
        """Start listening for other processes' changes now rather than at the first watch (``carnet serve``)."""
        await self.notifier.ensure_listening()


def _group_by_count(references: Counter[str]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for blob_id, count in sorted(references.items()):
        grouped.setdefault(count, []).append(blob_id)
    return grouped


def _part_json(part: PartLocation) -> list[Any]:
    return [part.section, part.header_start, part.header_end, part.body_end, part.content_type,
            part.transfer_encoding, part.charset, part.is_message, part.message_body_start]
