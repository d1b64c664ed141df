"""Serialisation of server responses (RFC 9051 §7, §9): strings, literals, flag lists, dates, sets, status lines.

Everything here returns ``bytes``; the connection joins them and writes in batches. A string that cannot be sent
as an atom or a quoted string (CR, LF, NUL, 8-bit text to a client that has not enabled UTF-8, or long text) is sent
as a literal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from carnet.mailbox.imap import utf7
from carnet.mailbox.imap.parser import MONTHS

_ATOM_OK = frozenset(b"!#$&'+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[^_`abcdefghijklmnopqrstuvwxyz|}~]")
_QUOTED_MAX = 1024


class ImapError(Exception):
    """A command that fails with a tagged ``NO`` (or ``BAD``) and an optional response code (RFC 9051 §7.1)."""

    def __init__(self, text: str, code: str | None = None, *, status: str = "NO") -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.status = status


class _Answered:
    """Returned by a handler that already sent its tagged response (STARTTLS, RFC 9051 §6.2.1)."""

    def __repr__(self) -> str:
        return "ANSWERED"


ANSWERED = _Answered()


def literal(data: bytes, *, binary: bool = False) -> bytes:
    """``literal`` (``{n}``) or ``literal8`` (``~{n}``, RFC 3516 §4.3)."""
    return (b"~{%d}\r\n" if binary else b"{%d}\r\n") % len(data) + data


def quoted(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def string(value: str | bytes, *, utf8: bool = True) -> bytes:
    """``string``: quoted when it can be, a literal otherwise."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if (
        len(data) > _QUOTED_MAX
        or b"\r" in data
        or b"\n" in data
        or b"\x00" in data
        or (not utf8 and any(b > 0x7E for b in data))
    ):
        return literal(data)
    return quoted(data)


def astring(value: str | bytes, *, utf8: bool = True) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    if data and data.upper() != b"NIL" and all(b in _ATOM_OK for b in data):
        return data
    return string(data, utf8=utf8)


def nstring(value: str | bytes | None, *, utf8: bool = True) -> bytes:
    return b"NIL" if value is None else string(value, utf8=utf8)


def mailbox_name(name: str, *, utf8: bool) -> bytes:
    """A mailbox name: UTF-8 for IMAP4rev2 / UTF8=ACCEPT clients, modified UTF-7 otherwise (RFC 9051 §5.1,
    RFC 3501 §5.1.3); an atom when it can be one (as the RFC examples write them), else a quoted string."""
    if name == "INBOX":
        return b"INBOX"
    return astring(name if utf8 else utf7.encode(name), utf8=utf8)


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(sorted(flags, key=_flag_order)).encode("utf-8") + b")"


def _flag_order(flag: str) -> tuple[int, str]:
    return (0 if flag.startswith("\\") else 1, flag)


_DATETIMES: dict[datetime, bytes] = {}


def imap_datetime(moment: datetime) -> bytes:
    """``date-time`` (RFC 9051 §9): ``"dd-Mon-yyyy hh:mm:ss +zzzz"``, in the moment's own zone (UTC if naive).
    Recent values are memoised (FETCH renders thousands of them)."""
    cached = _DATETIMES.get(moment)
    if cached is not None and moment.utcoffset() == _OFFSETS.get(moment):
        return cached
    text = _imap_datetime(moment)
    if len(_DATETIMES) > 50_000:
        _DATETIMES.clear()
        _OFFSETS.clear()
    _DATETIMES[moment] = text
    _OFFSETS[moment] = moment.utcoffset()
    return text


_OFFSETS: dict[datetime, object] = {}


def _imap_datetime(moment: datetime) -> bytes:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return (
        f'"{moment.day:02d}-{MONTHS[moment.month - 1]}-{moment.year:04d} '
        f'{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"'
    ).encode("ascii")


def number_set(numbers: Sequence[int]) -> str:
    """A compact ``sequence-set`` of ascending numbers: ``1:3,5,8:9`` (RFC 9051 §9)."""
    out: list[str] = []
    i = 0
    n = len(numbers)
    while i < n:
        start = numbers[i]
        j = i
        while j + 1 < n and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(start) if j == i else f"{start}:{numbers[j]}")
        i = j + 1
    return ",".join(out)


def uid_set_of(numbers: Iterable[int]) -> str:
    """Like :func:`number_set` for any iterable (sorted and deduplicated first)."""
    return number_set(sorted(set(numbers)))


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    code_part = f"[{code}] " if code else ""
    return f"{tag} {status} {code_part}{_one_line(text)}\r\n".encode()


def untagged(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return b"* " + data + b"\r\n"


def untagged_status(status: str, text: str, code: str | None = None) -> bytes:
    code_part = f"[{code}] " if code else ""
    return f"* {status} {code_part}{_one_line(text)}\r\n".encode()


def continuation(text: str = "") -> bytes:
    """``continue-req`` (RFC 9051 §7.5); an empty text is an empty SASL challenge."""
    return f"+ {' '.join(text.split())}\r\n".encode()


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "done"
