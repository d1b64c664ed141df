"""SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 7162 §3.1.5 MODSEQ) compiled to one SQL query.

Every key of :class:`~carnet.mailbox.api.SearchKey` becomes a SQL condition on the message row, its analysis (decoded
body text, sent day) or its decoded header fields (an ``EXISTS`` on ``mbx_header_fields``), so a search never reads
or re-parses a raw message. Substring keys compare case-folded text on both sides (``instr`` on SQLite, ``strpos``
on PostgreSQL: exact substring semantics, no LIKE wildcards to escape), which gives Unicode case-insensitive
matching as RFC 9051 §6.4.4 asks for UTF-8.

Choices: dates of BEFORE/ON/SINCE are the internal date's UTC calendar day; SENT* keys use the Date header's day in
its own zone (messages without a parsable Date match none of them, and so match their NOT); body text is that of
text/* parts (HTML reduced to its text), capped at :data:`carnet.mailbox.analysis.MAX_SEARCH_TEXT` characters;
\\Recent is a session notion (RFC 9051 dropped it): the IMAP session passes its recent UIDs, the store keeps none.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import ColumnElement, Table, and_, exists, false, func, literal, not_, or_, select, true

from carnet.mailbox.api import SearchKey, UidRange
from carnet.mailbox.models import Analysis, HeaderField, Message

M: Table = Message.__table__  # type: ignore[assignment]
A: Table = Analysis.__table__  # type: ignore[assignment]
H: Table = HeaderField.__table__  # type: ignore[assignment]

SYSTEM_FLAG_COLUMNS = {
    "\\seen": "seen",
    "\\answered": "answered",
    "\\flagged": "flagged",
    "\\deleted": "deleted",
    "\\draft": "draft",
}
_ADDRESS_KEYS = ("from", "to", "cc", "bcc", "subject")


class InvalidSearch(ValueError):
    """A search key the store does not know (a bug in the caller, not a client error)."""


@dataclass(slots=True)
class Compiled:
    condition: ColumnElement[bool]
    needs_analysis: bool


def uid_condition(ranges: Sequence[UidRange] | Collection[int]) -> ColumnElement[bool]:
    """``uid`` within the given ranges or UIDs (single UIDs as one IN list, ranges as BETWEEN)."""
    singles: list[int] = []
    spans: list[ColumnElement[bool]] = []
    for item in ranges:
        if isinstance(item, UidRange):
            first, last = min(item.first, item.last), max(item.first, item.last)
            if first == last:
                singles.append(first)
            else:
                spans.append(M.c.uid.between(first, last))
        else:
            singles.append(int(item))
    if singles:
        spans.append(M.c.uid.in_(sorted(set(singles))))
    if not spans:
        return false()
    return or_(*spans) if len(spans) > 1 else spans[0]


class _Compiler:
    def __init__(self, dialect: str, recent: Collection[int]) -> None:
        self.dialect = dialect
        self.recent = recent
        self.needs_analysis = False

    def contains(self, haystack: ColumnElement[str], needle: str) -> ColumnElement[bool]:
        if self.dialect == "postgresql":
            return func.strpos(haystack, needle) > 0
        return func.instr(haystack, needle) > 0

    def recent_condition(self) -> ColumnElement[bool]:
        return uid_condition(self.recent) if self.recent else false()

    def header(self, name: str | None, needle: str | None) -> ColumnElement[bool]:
        conditions: list[ColumnElement[bool]] = [H.c.blob_id == M.c.blob_id]
        if name is not None:
            conditions.append(H.c.name == name)
        if needle:
            conditions.append(self.contains(H.c.value if name is not None else H.c.name + literal(": ") + H.c.value,
                                            needle))
        return exists(select(literal(1)).select_from(H).where(*conditions))

    def day_start(self, key: SearchKey) -> datetime:
        if key.day is None:
            raise InvalidSearch(f"search key {key.op} needs a day")
        return datetime.combine(key.day, time(0), UTC)

    def compile(self, key: SearchKey) -> ColumnElement[bool]:
        op = key.op
        if op == "all":
            return true()
        if op == "and":
            return and_(true(), *(self.compile(child) for child in key.children))
        if op == "or":
            if len(key.children) != 2:
                raise InvalidSearch("OR takes two search keys")
            return or_(self.compile(key.children[0]), self.compile(key.children[1]))
        if op == "not":
            if len(key.children) != 1:
                raise InvalidSearch("NOT takes one search key")
            return not_(self.compile(key.children[0]))
        if op in ("flag", "keyword"):
            return self.flag(key)
        if op == "recent":
            return self.recent_condition()
        if op == "new":
            return and_(self.recent_condition(), M.c.seen == false())
        if op == "old":
            return not_(self.recent_condition())
        if op == "header":
            return self.header(key.field.lower(), key.value.casefold())
        if op in _ADDRESS_KEYS:
            return self.header(op, key.value.casefold())
        if op == "body":
            self.needs_analysis = True
            return self.contains(A.c.body_text, key.value.casefold())
        if op == "text":
            self.needs_analysis = True
            needle = key.value.casefold()
            return or_(self.contains(A.c.body_text, needle), self.header(None, needle))
        if op in ("before", "on", "since"):
            start = self.day_start(key)
            if op == "before":
                return M.c.internal_date < start
            if op == "since":
                return M.c.internal_date >= start
            return and_(M.c.internal_date >= start, M.c.internal_date < start + timedelta(days=1))
        if op in ("sentbefore", "senton", "sentsince"):
            if key.day is None:
                raise InvalidSearch(f"search key {op} needs a day")
            self.needs_analysis = True
            day = A.c.sent_day
            comparison = {"sentbefore": day < key.day, "senton": day == key.day, "sentsince": day >= key.day}[op]
            return and_(day.is_not(None), comparison)
        if op == "larger":
            return M.c.size > key.number
        if op == "smaller":
            return M.c.size < key.number
        if op == "uid":
            return uid_condition(key.uids)
        if op == "modseq":
            return M.c.modseq >= key.number
        raise InvalidSearch(f"unknown search key {op!r}")

    def flag(self, key: SearchKey) -> ColumnElement[bool]:
        name = key.value.lower()
        condition: ColumnElement[bool]
        if name in SYSTEM_FLAG_COLUMNS:
            condition = M.c[SYSTEM_FLAG_COLUMNS[name]] == true()
        elif name == "\\recent":
            condition = self.recent_condition()
        elif name.startswith("\\") or not name or " " in name:
            condition = false()  # no message can carry it
        else:
            condition = func.lower(M.c.keywords).contains(f" {name} ", autoescape=True)
        return not_(condition) if key.negate else condition


def compile_search(key: SearchKey, *, dialect: str, recent: Collection[int] = ()) -> Compiled:
    """The SQL condition for ``key`` on ``mbx_messages`` (joined with ``mbx_analyses`` if ``needs_analysis``)."""
    compiler = _Compiler(dialect, recent)
    condition = compiler.compile(key)
    return Compiled(condition, compiler.needs_analysis)
