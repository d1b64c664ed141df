"""The IMAP command grammar (RFC 9051 §9, RFC 3501 §9 and the extensions' ABNF), as a tokenizer over one command.

The connection reads a command as its lines and literals (:mod:`carnet.mailbox.imap.server`), joined with CRLF and
the literal markers kept (``{5}\\r\\n`` + 5 octets), and hands the bytes to :func:`parse_command`. The parser walks
them with a cursor — atoms, quoted strings, literals (synchronising ``{n}``, non-synchronising ``{n+}`` of LITERAL+
and LITERAL- (RFC 7888), ``~{n}`` literal8 of BINARY (RFC 3516)), lists, sequence sets, dates — and builds one typed
argument object per command. Search criteria become :class:`carnet.mailbox.api.SearchKey` trees; sequence-number
keys become ``SearchKey(op="seq")`` that the session turns into UID ranges before the store sees them.

Every syntax error raises :class:`ParseError` whose text the server sends with ``BAD``; nothing else escapes
(see the property test in ``tests/mailbox/imap/test_parser.py``). Nesting, sequence-set size and the number of
search keys are bounded (:data:`MAX_DEPTH`, :data:`MAX_SET_RANGES`, :data:`MAX_SEARCH_KEYS`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from carnet.mailbox.api import SearchKey, UidRange

MAX_DEPTH = 32
MAX_SET_RANGES = 100_000
MAX_SEARCH_KEYS = 2_000
MAX_NUMBER = 2**32 - 1  # number, nz-number (RFC 9051 §9)
MAX_NUMBER64 = 2**63 - 1  # number64, mod-sequence-value (RFC 7162 §7)
STAR = 0  # "*" in a sequence set (0 is never a valid sequence number or UID)

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {m.upper(): i + 1 for i, m in enumerate(MONTHS)}

# RFC 9051 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x20)) | {0x7F}
_ATOM_CHARS = frozenset(range(256)) - _ATOM_SPECIALS - frozenset(range(0x80, 0x100))
_ASTRING_CHARS = _ATOM_CHARS | {ord("]")}
_LIST_CHARS = _ASTRING_CHARS | {ord("%"), ord("*")}
_TAG_CHARS = _ASTRING_CHARS - {ord("+")}
_DIGITS = frozenset(b"0123456789")


class ParseError(Exception):
    """A command that does not follow the grammar: answered ``BAD`` with this text (and the tag when known)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


# Arguments ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """``sequence-set`` (RFC 9051 §9): ranges of numbers, :data:`STAR` standing for ``*``; or ``$``, the saved
    search result (SEARCHRES, RFC 5182 §2.1)."""

    ranges: tuple[tuple[int, int], ...] = ()
    saved: bool = False

    def __str__(self) -> str:
        if self.saved:
            return "$"
        return ",".join(_range_text(a, b) for a, b in self.ranges)


def _range_text(first: int, last: int) -> str:
    a = "*" if first == STAR else str(first)
    b = "*" if last == STAR else str(last)
    return a if first == last else f"{a}:{b}"


@dataclass(frozen=True, slots=True)
class Section:
    """``section`` of BODY[...] / BINARY[...] (RFC 9051 §6.4.5): part numbers and an optional text specifier
    (``HEADER``, ``HEADER.FIELDS``, ``HEADER.FIELDS.NOT``, ``TEXT``, ``MIME``)."""

    part: tuple[int, ...] = ()
    text: str = ""
    fields: tuple[str, ...] = ()

    def spec(self) -> str:
        """The section as it is echoed in the FETCH response, e.g. ``1.2.HEADER.FIELDS (FROM TO)``."""
        out = ".".join(str(p) for p in self.part)
        if self.text:
            out = f"{out}.{self.text}" if out else self.text
        if self.fields:
            out += " (" + " ".join(self.fields) + ")"
        return out


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One ``fetch-att``: ``name`` is upper-case (``FLAGS``, ``BODY.PEEK``, ``BINARY.SIZE``…)."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None  # (origin, count)


@dataclass(frozen=True, slots=True)
class QresyncParams:
    """``QRESYNC (uidvalidity modseq [known-uids [(seq-match-data)]])`` of SELECT/EXAMINE (RFC 7162 §3.2.5)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    match_seqs: SequenceSet | None = None
    match_uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class Login:
    user: str
    password: str

    def __repr__(self) -> str:
        return f"Login(user={self.user!r}, password=<hidden>)"


@dataclass(frozen=True, slots=True)
class Authenticate:
    mechanism: str
    initial: bytes | None  # decoded SASL-IR initial response (RFC 4959), None if absent

    def __repr__(self) -> str:
        return f"Authenticate(mechanism={self.mechanism!r}, initial=<hidden>)"


@dataclass(frozen=True, slots=True)
class Select:
    mailbox: str
    condstore: bool = False
    qresync: QresyncParams | None = None


@dataclass(frozen=True, slots=True)
class MailboxArg:
    mailbox: str


@dataclass(frozen=True, slots=True)
class Create:
    mailbox: str
    special_use: tuple[str, ...] = ()  # CREATE-SPECIAL-USE (RFC 6154 §3)


@dataclass(frozen=True, slots=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class ListArgs:
    """LIST (RFC 9051 §6.3.9) with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154);
    LSUB (RFC 3501 §6.3.9) sets ``lsub``."""

    reference: str
    patterns: tuple[str, ...]
    selection: tuple[str, ...] = ()
    returns: tuple[str, ...] = ()
    status_items: tuple[str, ...] | None = None
    lsub: bool = False
    extended: bool = False  # a selection or return option was given (RFC 5258 §3)


@dataclass(frozen=True, slots=True)
class Status:
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Append:
    mailbox: str
    flags: tuple[str, ...]
    internal_date: datetime | None
    message: bytes
    binary: bool = False  # literal8 (RFC 3516 §4.4)
    utf8: bool = False  # UTF8 (…) data extension (RFC 6855 §4)

    def __repr__(self) -> str:
        return f"Append(mailbox={self.mailbox!r}, flags={self.flags!r}, octets={len(self.message)})"


@dataclass(frozen=True, slots=True)
class Fetch:
    set: SequenceSet
    items: tuple[FetchAtt, ...]
    changedsince: int | None = None  # RFC 7162 §3.1.4.1
    vanished: bool = False  # RFC 7162 §3.2.6


@dataclass(frozen=True, slots=True)
class Store:
    set: SequenceSet
    mode: str  # add | remove | replace
    silent: bool
    flags: tuple[str, ...]
    unchangedsince: int | None = None  # RFC 7162 §3.1.3


@dataclass(frozen=True, slots=True)
class Search:
    key: SearchKey
    charset: str | None = None
    returns: tuple[str, ...] | None = None  # None: no RETURN (RFC 4731 §3); () is RETURN ()


@dataclass(frozen=True, slots=True)
class CopyMove:
    set: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Expunge:
    set: SequenceSet | None = None  # UID EXPUNGE (RFC 4315 §2.1)


@dataclass(frozen=True, slots=True)
class Enable:
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Id:
    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class QuotaRoot:
    name: str


@dataclass(frozen=True, slots=True)
class SetQuota:
    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class NoArgs:
    pass


@dataclass(frozen=True, slots=True)
class Command:
    tag: str
    name: str  # upper-case; UID commands are ``FETCH``… with ``uid=True``
    args: Any = field(default_factory=NoArgs)
    uid: bool = False

    @property
    def display_name(self) -> str:
        return f"UID {self.name}" if self.uid else self.name


# The tokenizer --------------------------------------------------------------------------------------------------


class Reader:
    """A cursor over the bytes of one command."""

    __slots__ = ("buf", "depth", "pos", "search_keys", "utf8")

    def __init__(self, buf: bytes, *, utf8: bool = False) -> None:
        self.buf = buf
        self.pos = 0
        self.depth = 0
        self.search_keys = 0
        self.utf8 = utf8

    # Primitives

    def at_end(self) -> bool:
        return self.pos >= len(self.buf)

    def peek(self, n: int = 1) -> bytes:
        return self.buf[self.pos : self.pos + n]

    def error(self, what: str) -> ParseError:
        near = self.buf[self.pos : self.pos + 20].decode("ascii", "replace")
        if self.at_end():
            return ParseError(f"{what} expected at end of command")
        printable = "".join(c if c.isprintable() else "?" for c in near)
        return ParseError(f"{what} expected at octet {self.pos} near {printable!r}")

    def take(self, token: bytes) -> bool:
        """Consume ``token`` (ASCII case-insensitive) if it comes next."""
        end = self.pos + len(token)
        if self.buf[self.pos : end].upper() == token:
            self.pos = end
            return True
        return False

    def expect(self, token: bytes, what: str | None = None) -> None:
        if not self.take(token):
            raise self.error(what or repr(token.decode()))

    def sp(self) -> None:
        if not self.take(b" "):
            raise self.error("space")

    def end(self) -> None:
        if not self.at_end():
            raise self.error("end of command")

    def _span(self, chars: frozenset[int]) -> bytes:
        buf, start = self.buf, self.pos
        end = start
        n = len(buf)
        while end < n and buf[end] in chars:
            end += 1
        self.pos = end
        return buf[start:end]

    def _text(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("string is not valid UTF-8") from None

    def atom(self, what: str = "atom") -> str:
        data = self._span(_ATOM_CHARS)
        if not data:
            raise self.error(what)
        return data.decode("ascii")

    def keyword(self, what: str = "keyword") -> str:
        """An atom, upper-cased (command names, options, search keys)."""
        return self.atom(what).upper()

    def number(self, *, nonzero: bool = False, limit: int = MAX_NUMBER, what: str = "number") -> int:
        data = self._span(_DIGITS)
        if not data:
            raise self.error(what)
        if len(data) > 20 or int(data) > limit:
            raise ParseError(f"{what} {data[:25].decode()} is too large")
        value = int(data)
        if nonzero and value == 0:
            raise ParseError(f"{what} must not be zero")
        return value

    def number64(self, *, nonzero: bool = False, what: str = "mod-sequence") -> int:
        return self.number(nonzero=nonzero, limit=MAX_NUMBER64, what=what)

    def quoted_bytes(self) -> bytes:
        """``quoted`` (RFC 9051 §9): no CR/LF/NUL; ``\\`` escapes only ``\\`` and ``"``. 8-bit octets are accepted
        (UTF-8, RFC 6855 §3 and RFC 9051 ``QUOTED-CHAR =/ UTF8-2 / UTF8-3 / UTF8-4``)."""
        buf = self.buf
        if self.pos >= len(buf) or buf[self.pos] != 0x22:
            raise self.error("quoted string")
        i = self.pos + 1
        n = len(buf)
        # Fast path: no escapes.
        end = buf.find(b'"', i)
        if end >= 0 and buf.find(b"\\", i, end) < 0:
            data = buf[i:end]
            if b"\r" in data or b"\n" in data or b"\x00" in data:
                raise ParseError("CR, LF and NUL are not allowed in a quoted string")
            self.pos = end + 1
            return data
        out = bytearray()
        while True:
            if i >= n:
                raise ParseError("unterminated quoted string")
            c = buf[i]
            if c == 0x22:
                self.pos = i + 1
                return bytes(out)
            if c == 0x5C:
                if i + 1 >= n or buf[i + 1] not in (0x5C, 0x22):
                    raise ParseError("only \\\\ and \\\" may be escaped in a quoted string")
                out.append(buf[i + 1])
                i += 2
                continue
            if c in (0x0D, 0x0A, 0x00):
                raise ParseError("CR, LF and NUL are not allowed in a quoted string")
            out.append(c)
            i += 1

    def literal_bytes(self, *, allow8: bool = False) -> tuple[bytes, bool]:
        """``literal`` / ``literal8``: ``{n}``, ``{n+}``, ``{n-}`` (RFC 7888) or ``~{n}`` (RFC 3516), then CRLF and n
        octets. Returns (data, is_literal8)."""
        binary = False
        if self.peek() == b"~":
            if not allow8:
                raise ParseError("literal8 (~{n}) is only allowed in APPEND and after ENABLE of BINARY data")
            binary = True
            self.pos += 1
        self.expect(b"{", "literal")
        size = self.number(what="literal size")
        if not self.take(b"+"):
            self.take(b"-")
        self.expect(b"}", "'}'")
        self.expect(b"\r\n", "CRLF after literal size")
        end = self.pos + size
        if end > len(self.buf):
            raise ParseError("literal is shorter than announced")
        data = self.buf[self.pos : end]
        self.pos = end
        if not binary and b"\x00" in data:
            raise ParseError("NUL is not allowed in a literal (use literal8, RFC 3516)")
        return data, binary

    def string_bytes(self) -> bytes:
        c = self.peek()
        if c == b'"':
            return self.quoted_bytes()
        if c == b"{":
            return self.literal_bytes()[0]
        raise self.error("string")

    def string(self) -> str:
        return self._text(self.string_bytes())

    def astring_bytes(self) -> bytes:
        c = self.peek()
        if c in (b'"', b"{"):
            return self.string_bytes()
        data = self._span(_ASTRING_CHARS)
        if not data:
            raise self.error("astring")
        return data

    def astring(self) -> str:
        return self._text(self.astring_bytes())

    def nstring(self) -> str | None:
        if self.take(b"NIL"):
            return None
        return self.string()

    def mailbox(self) -> str:
        """``mailbox`` (RFC 9051 §9): an astring, ``INBOX`` in any case meaning INBOX (RFC 9051 §5.1)."""
        name = self.astring()
        if name.upper() == "INBOX":
            return "INBOX"
        return name

    def list_mailbox(self) -> str:
        c = self.peek()
        if c in (b'"', b"{"):
            return self.string()
        data = self._span(_LIST_CHARS)
        if not data:
            raise self.error("mailbox pattern")
        return self._text(data)

    def flag(self) -> str:
        """``flag`` / ``flag-keyword``: ``\\Seen``… or a keyword atom (RFC 9051 §2.3.2). ``\\*`` is refused."""
        if self.take(b"\\"):
            name = self.atom("flag name")
            canonical = _SYSTEM_FLAG_CASE.get(name.upper())
            if canonical is None:
                raise ParseError(f"unknown system flag \\{name}")
            return canonical
        return self.atom("flag keyword")

    def flag_list(self) -> tuple[str, ...]:
        self.expect(b"(", "flag list")
        flags: list[str] = []
        if not self.take(b")"):
            while True:
                flags.append(self.flag())
                if self.take(b")"):
                    break
                self.sp()
        return tuple(dict.fromkeys(flags))

    def date(self) -> date:
        """``date`` (RFC 9051 §9): ``d-Mon-yyyy``, optionally quoted."""
        quoted = self.take(b'"')
        day = self.number(what="day")
        self.expect(b"-", "'-' in date")
        month_name = self._span(frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")).upper()
        month = _MONTH_NUMBER.get(month_name.decode("ascii"))
        if month is None:
            raise ParseError("month name expected in date (Jan … Dec)")
        self.expect(b"-", "'-' in date")
        year = self.number(what="year")
        if quoted:
            self.expect(b'"', "closing quote of date")
        try:
            return date(year, month, day)
        except ValueError:
            raise ParseError(f"invalid date {day}-{MONTHS[month - 1]}-{year}") from None

    def date_time(self) -> datetime:
        """``date-time`` (RFC 9051 §9): ``"dd-Mon-yyyy hh:mm:ss +zzzz"`` (day may be space-padded)."""
        self.expect(b'"', "date-time")
        self.take(b" ")
        day = self.number(what="day")
        self.expect(b"-", "'-' in date-time")
        month = _MONTH_NUMBER.get(self.buf[self.pos : self.pos + 3].decode("ascii", "replace").upper())
        if month is None:
            raise ParseError("month name expected in date-time")
        self.pos += 3
        self.expect(b"-", "'-' in date-time")
        year = self.number(what="year")
        self.sp()
        hms = []
        for i in range(3):
            if i:
                self.expect(b":", "':' in time")
            start = self.pos
            value = self.number(what="time")
            if self.pos - start != 2:
                raise ParseError("time fields have two digits")
            hms.append(value)
        self.sp()
        sign = self.peek()
        if sign not in (b"+", b"-"):
            raise self.error("zone (+hhmm or -hhmm)")
        self.pos += 1
        start = self.pos
        zone = self.number(what="zone")
        if self.pos - start != 4 or zone % 100 >= 60:
            raise ParseError("zone is +hhmm or -hhmm")
        self.expect(b'"', "closing quote of date-time")
        offset = timedelta(hours=zone // 100, minutes=zone % 100)
        try:
            return datetime(year, month, day, hms[0], hms[1], hms[2],
                            tzinfo=timezone(-offset if sign == b"-" else offset))
        except ValueError:
            raise ParseError("invalid date-time") from None

    def seq_number(self) -> int:
        if self.take(b"*"):
            return STAR
        return self.number(nonzero=True, what="sequence number")

    def sequence_set(self) -> SequenceSet:
        """``sequence-set`` / ``$`` (RFC 9051 §9, RFC 5182)."""
        if self.take(b"$"):
            return SequenceSet(saved=True)
        ranges: list[tuple[int, int]] = []
        while True:
            first = self.seq_number()
            last = first
            if self.take(b":"):
                last = self.seq_number()
            ranges.append((first, last))
            if len(ranges) > MAX_SET_RANGES:
                raise ParseError(f"sequence set has more than {MAX_SET_RANGES} elements")
            if not self.take(b","):
                break
        return SequenceSet(tuple(ranges))

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(f"nesting deeper than {MAX_DEPTH}")

    def leave(self) -> None:
        self.depth -= 1


_SYSTEM_FLAG_CASE = {
    "SEEN": "\\Seen",
    "ANSWERED": "\\Answered",
    "FLAGGED": "\\Flagged",
    "DELETED": "\\Deleted",
    "DRAFT": "\\Draft",
    "RECENT": "\\Recent",
}


# Command grammar ------------------------------------------------------------------------------------------------


def parse_tag(buf: bytes) -> str | None:
    """The tag of a (possibly malformed) command, to answer BAD to it; None if there is none."""
    r = Reader(buf)
    tag = r._span(_TAG_CHARS)
    return tag.decode("ascii") if tag else None


def parse_command(buf: bytes, *, utf8: bool = False) -> Command:
    """Parse one complete command (``tag SP command`` without the final CRLF)."""
    r = Reader(buf, utf8=utf8)
    tag_bytes = r._span(_TAG_CHARS)
    if not tag_bytes:
        raise ParseError("command tag expected")
    tag = tag_bytes.decode("ascii")
    r.sp()
    name = r.keyword("command name")
    uid = False
    if name == "UID":
        r.sp()
        uid = True
        name = r.keyword("command name after UID")
        if name not in _UID_COMMANDS:
            raise ParseError(f"UID {name} is not a command")
    grammar = _uid_expunge if uid and name == "EXPUNGE" else _GRAMMAR.get(name)
    if grammar is None:
        raise ParseError(f"unknown command {name}")
    args = grammar(r)
    r.end()
    return Command(tag, name, args, uid)


def _no_args(r: Reader) -> NoArgs:
    return NoArgs()


def _login(r: Reader) -> Login:
    r.sp()
    user = r.astring()
    r.sp()
    return Login(user, r.astring())


def _authenticate(r: Reader) -> Authenticate:
    r.sp()
    mechanism = r.keyword("SASL mechanism")
    initial: bytes | None = None
    if r.take(b" "):
        initial = decode_sasl(r._span(_ATOM_CHARS | {ord("=")}))
    return Authenticate(mechanism, initial)


def decode_sasl(data: bytes) -> bytes:
    """A SASL response in base64; ``=`` is the empty response (RFC 4959 §3)."""
    if data == b"=":
        return b""
    if not data:
        raise ParseError("base64 SASL response expected")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("invalid base64 in SASL response") from None


def _select(r: Reader) -> Select:
    r.sp()
    mailbox = r.mailbox()
    condstore = False
    qresync = None
    if r.take(b" "):
        # select-params (RFC 4466 §2.1): "(" select-param *(SP select-param) ")"
        r.expect(b"(", "select parameters")
        while True:
            param = r.keyword("select parameter")
            if param == "CONDSTORE":
                condstore = True  # RFC 7162 §3.1.8
            elif param == "QRESYNC":
                r.sp()
                qresync = _qresync_params(r)
            else:
                raise ParseError(f"unknown SELECT parameter {param}")
            if r.take(b")"):
                break
            r.sp()
    return Select(mailbox, condstore, qresync)


def _qresync_params(r: Reader) -> QresyncParams:
    """RFC 7162 §3.2.5: ``"(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"``."""
    r.expect(b"(", "QRESYNC parameters")
    uidvalidity = r.number(nonzero=True, what="UIDVALIDITY")
    r.sp()
    modseq = r.number64(nonzero=True)
    known = match_seqs = match_uids = None
    if r.take(b" "):
        if r.peek() != b"(":
            known = r.sequence_set()
            if known.saved or any(STAR in rg for rg in known.ranges):
                raise ParseError("known-uids must not contain '*' or '$'")
            r.take(b" ")
        if r.take(b"("):
            match_seqs = r.sequence_set()
            r.sp()
            match_uids = r.sequence_set()
            r.expect(b")", "')' after seq-match-data")
    r.expect(b")", "')' after QRESYNC parameters")
    return QresyncParams(uidvalidity, modseq, known, match_seqs, match_uids)


def _mailbox_arg(r: Reader) -> MailboxArg:
    r.sp()
    return MailboxArg(r.mailbox())


def _create(r: Reader) -> Create:
    r.sp()
    mailbox = r.mailbox()
    uses: list[str] = []
    if r.take(b" "):
        # create-param (RFC 4466 §2.2), USE (RFC 6154 §3)
        r.expect(b"(", "CREATE parameters")
        r.expect(b"USE", "USE")
        r.sp()
        r.expect(b"(", "special-use list")
        while not r.take(b")"):
            if uses:
                r.sp()
            r.expect(b"\\", "special-use attribute")
            uses.append("\\" + r.atom("special-use attribute"))
        r.expect(b")", "')'")
    return Create(mailbox, tuple(uses))


def _rename(r: Reader) -> Rename:
    r.sp()
    old = r.mailbox()
    r.sp()
    return Rename(old, r.mailbox())


_LIST_SELECTION = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
_LIST_RETURN = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"}


def _list(r: Reader) -> ListArgs:
    """LIST (RFC 9051 §6.3.9, RFC 5258 §6, RFC 5819 §2)."""
    r.sp()
    selection: list[str] = []
    extended = False
    if r.take(b"("):
        extended = True
        while not r.take(b")"):
            if selection:
                r.sp()
            option = r.keyword("LIST selection option")
            if option not in _LIST_SELECTION:
                raise ParseError(f"unknown LIST selection option {option}")
            selection.append(option)
        r.sp()
    reference = r.mailbox()
    r.sp()
    patterns: list[str] = []
    if r.take(b"("):
        while True:
            patterns.append(r.list_mailbox())
            if r.take(b")"):
                break
            r.sp()
    else:
        patterns.append(r.list_mailbox())
    returns: list[str] = []
    status_items: tuple[str, ...] | None = None
    if r.take(b" "):
        r.expect(b"RETURN", "RETURN")
        extended = True
        r.sp()
        r.expect(b"(", "return options")
        while not r.take(b")"):
            if returns:
                r.sp()
            option = r.keyword("LIST return option")
            if option not in _LIST_RETURN:
                raise ParseError(f"unknown LIST return option {option}")
            if option == "STATUS":
                r.sp()
                status_items = _status_items(r)
            returns.append(option)
    if "RECURSIVEMATCH" in selection and len(selection) == 1:
        raise ParseError("RECURSIVEMATCH needs another selection option (RFC 5258 §3)")
    return ListArgs(reference, tuple(patterns), tuple(selection), tuple(returns), status_items, False, extended)


def _lsub(r: Reader) -> ListArgs:
    r.sp()
    reference = r.mailbox()
    r.sp()
    return ListArgs(reference, (r.list_mailbox(),), lsub=True)


STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "HIGHESTMODSEQ")


def _status_items(r: Reader) -> tuple[str, ...]:
    r.expect(b"(", "status items")
    items: list[str] = []
    while True:
        item = r.keyword("status item")
        if item not in STATUS_ITEMS:
            raise ParseError(f"unknown STATUS item {item}")
        items.append(item)
        if r.take(b")"):
            break
        r.sp()
    return tuple(dict.fromkeys(items))


def _status(r: Reader) -> Status:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return Status(mailbox, _status_items(r))


def _append(r: Reader) -> Append:
    """APPEND (RFC 9051 §6.3.12), literal8 (RFC 3516 §4.4), UTF8 data (RFC 6855 §4). No MULTIAPPEND."""
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    flags: tuple[str, ...] = ()
    internal_date = None
    if r.peek() == b"(":
        flags = r.flag_list()
        r.sp()
    if r.peek() == b'"':
        internal_date = r.date_time()
        r.sp()
    utf8 = False
    if r.take(b"UTF8"):
        r.sp()
        r.expect(b"(", "'(' of UTF8 data")
        if r.peek() != b"~":
            raise r.error("literal8")
        message, binary = r.literal_bytes(allow8=True)
        r.expect(b")", "')' after UTF8 data")
        utf8, binary = True, False
    else:
        message, binary = r.literal_bytes(allow8=True)
    if r.peek() == b" ":
        raise ParseError("MULTIAPPEND is not supported: one message per APPEND")
    return Append(mailbox, flags, internal_date, message, binary, utf8)


_SIMPLE_FETCH = {"ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "RFC822", "RFC822.HEADER", "RFC822.TEXT",
                 "BODYSTRUCTURE", "UID", "MODSEQ", "BODY"}
_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_FETCH_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")


def _fetch_att(r: Reader) -> FetchAtt:
    """One ``fetch-att`` (RFC 9051 §9, RFC 3516 §4.2, RFC 7162 §3.1.4)."""
    name = r._span(_FETCH_NAME_CHARS).decode("ascii").upper()
    if not name:
        raise r.error("fetch item")
    if name in ("BODY", "BODY.PEEK") and r.peek() == b"[":
        section = _section(r)
        return FetchAtt(name, section, _partial(r))
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        section = _binary_section(r)
        partial = _partial(r) if name != "BINARY.SIZE" else None
        return FetchAtt(name, section, partial)
    if name in _SIMPLE_FETCH:
        return FetchAtt(name)
    raise ParseError(f"unknown FETCH item {name}")


def _section_part(r: Reader) -> list[int]:
    parts: list[int] = []
    while r.peek() in _DIGIT_BYTES:
        parts.append(r.number(nonzero=True, what="section part"))
        if len(parts) > MAX_DEPTH:
            raise ParseError("section nested too deeply")
        if not r.take(b"."):
            break
        if r.peek() not in _DIGIT_BYTES:
            r.pos -= 1  # the dot introduces a section-text
            break
    return parts


_DIGIT_BYTES = {bytes([d]) for d in b"0123456789"}


def _section(r: Reader) -> Section:
    """``section`` (RFC 9051 §9)."""
    r.expect(b"[", "'['")
    parts = _section_part(r)
    text = ""
    fields: tuple[str, ...] = ()
    if parts:
        if r.take(b"."):
            text = r._span(_FETCH_NAME_CHARS).decode("ascii").upper()
            if text not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"):
                raise ParseError(f"unknown section text {text!r}")
    elif r.peek() != b"]":
        text = r._span(_FETCH_NAME_CHARS).decode("ascii").upper()
        if text not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"):
            raise ParseError(f"unknown section text {text!r}")
    if text.startswith("HEADER.FIELDS"):
        r.sp()
        r.expect(b"(", "header list")
        names: list[str] = []
        while True:
            name = r.astring()
            if not name or any(c <= " " or c == ":" or ord(c) > 126 for c in name):
                raise ParseError(f"invalid header field name {name!r}")
            names.append(name.upper())
            if r.take(b")"):
                break
            r.sp()
        fields = tuple(names)
    r.expect(b"]", "']'")
    return Section(tuple(parts), text, fields)


def _binary_section(r: Reader) -> Section:
    """``section-binary`` (RFC 3516 §4.2): part numbers only."""
    r.expect(b"[", "'['")
    parts = _section_part(r)
    r.expect(b"]", "']' (BINARY sections are part numbers only)")
    return Section(tuple(parts))


def _partial(r: Reader) -> tuple[int, int] | None:
    if not r.take(b"<"):
        return None
    origin = r.number(what="partial origin")
    r.expect(b".", "'.' in partial")
    count = r.number(nonzero=True, what="partial length")
    r.expect(b">", "'>'")
    return origin, count


def _fetch(r: Reader) -> Fetch:
    """FETCH (RFC 9051 §6.4.5) with CHANGEDSINCE/VANISHED modifiers (RFC 7162 §3.1.4.1, §3.2.6)."""
    r.sp()
    seqset = r.sequence_set()
    r.sp()
    items: list[FetchAtt] = []
    if r.take(b"("):
        while True:
            items.append(_fetch_att(r))
            if r.take(b")"):
                break
            r.sp()
    else:
        start = r.pos
        word = r._span(_FETCH_NAME_CHARS).decode("ascii").upper()
        if word in _MACROS:
            items = [FetchAtt(n) for n in _MACROS[word]]
        else:
            r.pos = start
            items.append(_fetch_att(r))
    changedsince = None
    vanished = False
    if r.take(b" "):
        r.expect(b"(", "fetch modifiers")
        while True:
            modifier = r.keyword("fetch modifier")
            if modifier == "CHANGEDSINCE":
                r.sp()
                changedsince = r.number64()
            elif modifier == "VANISHED":
                vanished = True
            else:
                raise ParseError(f"unknown FETCH modifier {modifier}")
            if r.take(b")"):
                break
            r.sp()
        if vanished and changedsince is None:
            raise ParseError("VANISHED requires CHANGEDSINCE (RFC 7162 §3.2.6)")
    return Fetch(seqset, tuple(items), changedsince, vanished)


def _store(r: Reader) -> Store:
    """STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3)."""
    r.sp()
    seqset = r.sequence_set()
    r.sp()
    unchangedsince = None
    if r.take(b"("):
        modifier = r.keyword("store modifier")
        if modifier != "UNCHANGEDSINCE":
            raise ParseError(f"unknown STORE modifier {modifier}")
        r.sp()
        unchangedsince = r.number64()
        r.expect(b")", "')'")
        r.sp()
    mode = "replace"
    if r.take(b"+"):
        mode = "add"
    elif r.take(b"-"):
        mode = "remove"
    word = r._span(_FETCH_NAME_CHARS).decode("ascii").upper()
    if word not in ("FLAGS", "FLAGS.SILENT"):
        raise ParseError("FLAGS or FLAGS.SILENT expected in STORE")
    r.sp()
    if r.peek() == b"(":
        flags = r.flag_list()
    else:
        found = [r.flag()]
        while r.take(b" "):
            found.append(r.flag())
        flags = tuple(dict.fromkeys(found))
    return Store(seqset, mode, word.endswith(".SILENT"), flags, unchangedsince)


def _copy_move(r: Reader) -> CopyMove:
    r.sp()
    seqset = r.sequence_set()
    r.sp()
    return CopyMove(seqset, r.mailbox())


def _expunge(r: Reader) -> Expunge:
    return Expunge()


def _uid_expunge(r: Reader) -> Expunge:
    r.sp()
    return Expunge(r.sequence_set())


def _enable(r: Reader) -> Enable:
    caps: list[str] = []
    while r.take(b" "):
        caps.append(r.keyword("capability"))
    if not caps:
        raise ParseError("ENABLE needs at least one capability")
    return Enable(tuple(caps))


def _id(r: Reader) -> Id:
    """ID (RFC 2971 §3.1): NIL or a list of string / nstring pairs."""
    r.sp()
    if r.take(b"NIL"):
        return Id(None)
    r.expect(b"(", "ID parameter list")
    params: list[tuple[str, str | None]] = []
    while True:
        while r.take(b" "):  # aioimaplib writes "( … )": tolerated
            pass
        if r.take(b")"):
            break
        key = r.string()
        r.sp()
        params.append((key, r.nstring()))
        if len(params) > 30:
            raise ParseError("more than 30 ID fields (RFC 2971 §3.3)")
    return Id(tuple(params))


def _quota_root_name(r: Reader) -> QuotaRoot:
    r.sp()
    return QuotaRoot(r.astring())


def _setquota(r: Reader) -> SetQuota:
    r.sp()
    root = r.astring()
    r.sp()
    r.expect(b"(", "quota limits")
    limits: list[tuple[str, int]] = []
    while not r.take(b")"):
        if limits:
            r.sp()
        name = r.keyword("resource name")
        r.sp()
        limits.append((name, r.number64(what="limit")))
    return SetQuota(root, tuple(limits))


def _search(r: Reader) -> Search:
    """SEARCH (RFC 9051 §6.4.4) with ESEARCH's RETURN (RFC 4731 §3), SEARCHRES's SAVE (RFC 5182) and
    CONDSTORE's MODSEQ key (RFC 7162 §3.1.5)."""
    r.sp()
    returns: tuple[str, ...] | None = None
    if r.take(b"RETURN "):
        r.expect(b"(", "return options")
        opts: list[str] = []
        while not r.take(b")"):
            if opts:
                r.sp()
            option = r.keyword("search return option")
            if option not in ("MIN", "MAX", "ALL", "COUNT", "SAVE"):
                raise ParseError(f"unknown SEARCH return option {option}")
            opts.append(option)
        returns = tuple(dict.fromkeys(opts))
        r.sp()
    charset = None
    if r.take(b"CHARSET "):
        charset = r.astring().upper()
        r.sp()
    keys = [search_key(r)]
    while r.take(b" "):
        keys.append(search_key(r))
    key = keys[0] if len(keys) == 1 else SearchKey("and", children=tuple(keys))
    return Search(key, charset, returns)


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", False), "DELETED": ("\\Deleted", False), "DRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", False), "SEEN": ("\\Seen", False),
    "UNANSWERED": ("\\Answered", True), "UNDELETED": ("\\Deleted", True), "UNDRAFT": ("\\Draft", True),
    "UNFLAGGED": ("\\Flagged", True), "UNSEEN": ("\\Seen", True),
}
_STRING_KEYS = {"BCC": "bcc", "BODY": "body", "CC": "cc", "FROM": "from", "SUBJECT": "subject", "TEXT": "text",
                "TO": "to"}
_DATE_KEYS = {"BEFORE": "before", "ON": "on", "SINCE": "since", "SENTBEFORE": "sentbefore", "SENTON": "senton",
              "SENTSINCE": "sentsince"}


def search_key(r: Reader) -> SearchKey:
    """One ``search-key`` (RFC 9051 §9, RFC 3501 §9, RFC 7162 §7)."""
    r.search_keys += 1
    if r.search_keys > MAX_SEARCH_KEYS:
        raise ParseError(f"more than {MAX_SEARCH_KEYS} search keys")
    c = r.peek()
    if c == b"(":
        r.pos += 1
        r.enter()
        keys = [search_key(r)]
        while r.take(b" "):
            keys.append(search_key(r))
        r.expect(b")", "')' closing search keys")
        r.leave()
        return keys[0] if len(keys) == 1 else SearchKey("and", children=tuple(keys))
    if c in _DIGIT_BYTES or c in (b"*", b"$"):
        seqset = r.sequence_set()
        return _set_key("seq", seqset)
    name = r.keyword("search key")
    if name in _FLAG_KEYS:
        flag, negate = _FLAG_KEYS[name]
        return SearchKey("flag", value=flag, negate=negate)
    if name in _STRING_KEYS:
        r.sp()
        return SearchKey(_STRING_KEYS[name], value=r.astring())
    if name in _DATE_KEYS:
        r.sp()
        return SearchKey(_DATE_KEYS[name], day=r.date())
    if name == "ALL":
        return SearchKey("all")
    if name in ("NEW", "OLD", "RECENT"):
        return SearchKey(name.lower())
    if name in ("KEYWORD", "UNKEYWORD"):
        r.sp()
        keyword = r.flag()
        return SearchKey("keyword" if not keyword.startswith("\\") else "flag", value=keyword,
                         negate=name == "UNKEYWORD")
    if name == "HEADER":
        r.sp()
        field_name = r.astring()
        if not field_name or any(ch <= " " or ch == ":" or ord(ch) > 126 for ch in field_name):
            raise ParseError(f"invalid header field name {field_name!r}")
        r.sp()
        return SearchKey("header", field=field_name.lower(), value=r.astring())
    if name in ("LARGER", "SMALLER"):
        r.sp()
        return SearchKey(name.lower(), number=r.number64(what="size"))
    if name == "NOT":
        r.sp()
        r.enter()
        child = search_key(r)
        r.leave()
        return SearchKey("not", children=(child,))
    if name == "OR":
        r.sp()
        r.enter()
        left = search_key(r)
        r.sp()
        right = search_key(r)
        r.leave()
        return SearchKey("or", children=(left, right))
    if name == "UID":
        r.sp()
        return _set_key("uid", r.sequence_set())
    if name == "MODSEQ":
        # RFC 7162 §3.1.5: MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer
        r.sp()
        if r.peek() == b'"':
            r.quoted_bytes()
            r.sp()
            entry_type = r.keyword("entry type")
            if entry_type not in ("PRIV", "SHARED", "ALL"):
                raise ParseError("entry type is priv, shared or all")
            r.sp()
        return SearchKey("modseq", number=r.number64())
    raise ParseError(f"unknown search key {name}")


def _set_key(op: str, seqset: SequenceSet) -> SearchKey:
    """Sequence sets in search keys: ``UidRange`` with :data:`STAR` for ``*``; ``$`` is ``value="$"``."""
    if seqset.saved:
        return SearchKey(op, value="$")
    return SearchKey(op, uids=tuple(UidRange(a, b) for a, b in seqset.ranges))


_GRAMMAR: dict[str, Callable[[Reader], Any]] = {
    "CAPABILITY": _no_args,
    "NOOP": _no_args,
    "LOGOUT": _no_args,
    "STARTTLS": _no_args,
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "ENABLE": _enable,
    "ID": _id,
    "NAMESPACE": _no_args,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _create,
    "DELETE": _mailbox_arg,
    "RENAME": _rename,
    "SUBSCRIBE": _mailbox_arg,
    "UNSUBSCRIBE": _mailbox_arg,
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _no_args,
    "CHECK": _no_args,
    "CLOSE": _no_args,
    "UNSELECT": _no_args,
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_move,
    "MOVE": _copy_move,
    "GETQUOTA": _quota_root_name,
    "GETQUOTAROOT": _mailbox_arg,
    "SETQUOTA": _setquota,
}
_UID_COMMANDS = {"FETCH", "SEARCH", "STORE", "COPY", "MOVE", "EXPUNGE"}

