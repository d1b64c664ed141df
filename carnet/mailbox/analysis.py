"""Everything FETCH and SEARCH need, derived once when a message is stored (never re-parsed per command).

:func:`analyse` walks the raw octets of a message and returns an :class:`Analysis`:

- the MIME tree with byte offsets (RFC 2045 §5-6, RFC 2046 §5.1.1 boundaries, RFC 2046 §5.2.1 message/rfc822),
  numbered as IMAP sections (RFC 9051 §6.4.5) into :class:`~carnet.mailbox.api.PartLocation` rows, so that
  ``BODY[1.2.MIME]``, ``BODY[1.2]`` or ``BODY[2.HEADER]`` are slices of the stored message;
- ENVELOPE, BODYSTRUCTURE (extensible form, with body-fld-param, disposition, language and location) and BODY
  (non-extensible form) rendered in IMAP syntax (RFC 9051 §7.5.2 and §9, RFC 3501 §7.4.2): ``NIL``, quoted strings
  with ``\\`` escapes, literals ``{n}\\r\\n…`` for values with 8-bit octets or line breaks; types, subtypes,
  encodings, parameter and disposition names in upper case, as the RFC examples and common servers write them;
- decoded header fields (RFC 2047 encoded-words, RFC 6532 UTF-8) and decoded body text (transfer encoding of
  RFC 2045 §6 and charset undone, text/html reduced to its text) for SEARCH, case-folded, size-capped;
- subject, sender, sent date and "has attachments" for the webmail.

Parsing is done on bytes with our own boundary scanner (header fields are split and unfolded here too; the
standard :mod:`email` package only parses parameter lists and dates). Nothing here raises on malformed input: an
unterminated multipart keeps what it has, a multipart without any boundary line, a nesting deeper than
:data:`MAX_DEPTH` or a part beyond :data:`MAX_PARTS` is presented as a text/plain leaf, and any unexpected error
degrades the whole message to one text/plain part (:func:`analyse` catches it).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.message
import email.utils
import html
import quopri
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from carnet.mailbox.api import PartLocation

#: Version of the derived data; stored with it so that a later release can re-derive old rows.
ANALYSIS_VERSION = 1
#: Nesting levels of multipart and message/rfc822 entities that are descended into.
MAX_DEPTH = 24
#: MIME entities analysed per message; later ones stay inside their parent's body, unparsed.
MAX_PARTS = 1000
#: Characters of decoded body text kept for SEARCH BODY/TEXT.
MAX_SEARCH_TEXT = 256 * 1024
#: Header fields of one message kept for SEARCH HEADER, and characters of each value.
MAX_SEARCH_FIELDS = 300
MAX_SEARCH_VALUE = 2000

_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)")
_HTML_DROP = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]*>")
_SIGNATURE_TYPES = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})


@dataclass(slots=True)
class Analysis:
    """What :func:`analyse` derives from one message; stored with the blob (content-addressed)."""

    envelope: bytes
    bodystructure: bytes
    body: bytes
    parts: list[PartLocation]
    subject: str
    from_name: str
    from_address: str
    sent_date: datetime | None
    #: The Date header's calendar day in its own time zone (SENTBEFORE/SENTON/SENTSINCE, RFC 9051 §6.4.4).
    sent_day: date | None
    message_id: str | None
    has_attachments: bool
    #: (lower-case field name, decoded and case-folded value) of each header field, in order.
    header_fields: list[tuple[str, str]]
    #: Decoded, case-folded text of the text parts (and of encapsulated messages' headers).
    body_text: str
    degraded: bool = False


# Header fields -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Header:
    """The header fields of one entity: (lower-case name, raw unfolded value as str with surrogate escapes)."""

    fields: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]


def _bytes_to_str(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _str_to_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _split_header(raw: bytes, start: int, end: int) -> tuple[int, _Header]:
    """Find where the header of the entity at ``raw[start:end]`` ends and split its fields (RFC 5322 §2.2).

    The header ends after the first empty line, or (malformed input) before the first line that is neither a
    field nor a continuation. Returns the offset where the body starts and the unfolded fields.
    """
    fields: list[tuple[str, str]] = []
    pos = start
    current: list[bytes] | None = None
    name = ""
    while pos < end:
        newline = raw.find(b"\n", pos, end)
        line_end = end if newline < 0 else newline + 1
        line = raw[pos:line_end]
        content = line.rstrip(b"\r\n")
        if not content and line:  # the empty line
            pos = line_end
            break
        if content[:1] in (b" ", b"\t") and current is not None:
            current.append(content)
        else:
            match = _FIELD_NAME.match(content)
            if match is None:
                if pos == start and content.startswith(b"From "):  # an mbox separator line
                    pos = line_end
                    continue
                break  # the body starts here, without the empty line
            if current is not None:
                fields.append((name, _bytes_to_str(b"".join(current)).strip()))
            name = _bytes_to_str(content[: match.end() - 1]).strip().lower()
            current = [content[match.end():]]
        pos = line_end
    if current is not None:
        fields.append((name, _bytes_to_str(b"".join(current)).strip()))
    return pos, _Header(fields)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words (§6.2: white space between adjacent encoded-words is dropped); never raises.

    Raw 8-bit octets (RFC 6532 UTF-8 headers, or legacy charsets) come in as surrogate escapes and are decoded as
    UTF-8, falling back to Windows-1252.
    """
    text = _undo_surrogates(value)
    if "=?" not in text:
        return text
    text = _BETWEEN_WORDS.sub(r"\1", text)
    return _ENCODED_WORD.sub(_decode_word, text)


def _undo_surrogates(value: str) -> str:
    if value.isascii():
        return value
    data = _str_to_bytes(value)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _decode_word(match: re.Match[str]) -> str:
    charset, kind, text = match.group(1), match.group(2).upper(), match.group(3)
    charset = charset.split("*", 1)[0]  # RFC 2231 §5 language suffix
    try:
        if kind == "B":
            data = base64.b64decode(text + "=" * (-len(text) % 4))
        else:
            data = quopri.decodestring(text.replace("_", " ").encode("ascii", "replace"), header=False)
    except (binascii.Error, ValueError):
        return match.group(0)
    return _decode_text(data, charset)


def _decode_text(data: bytes, charset: str | None) -> str:
    if charset:
        try:
            return data.decode(codecs.lookup(charset.strip().strip('"')).name, "replace")
        except (LookupError, ValueError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


# Content-Type and friends ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _MediaType:
    maintype: str
    subtype: str
    params: list[tuple[str, str]]  # lower-case name, decoded value (RFC 2231 collapsed)

    @property
    def value(self) -> str:
        return f"{self.maintype}/{self.subtype}"

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


def _parse_params(header_name: str, value: str) -> tuple[str, list[tuple[str, str]]]:
    """(lower-case first token, [(name, value)…]) of a Content-Type/-Disposition value (RFC 2045 §5.1, RFC 2231)."""
    message = email.message.Message()
    message[header_name] = _undo_surrogates(value)
    try:
        raw_params = message.get_params(header=header_name) or []
    except Exception:  # the email package's parameter parser can trip on pathological input
        return value.split(";", 1)[0].strip().lower(), []
    first = raw_params[0][0].strip().lower() if raw_params else ""
    params: list[tuple[str, str]] = []
    for name, param_value in raw_params[1:]:
        if not name:
            continue
        try:
            decoded = email.utils.collapse_rfc2231_value(param_value, errors="replace")
        except (LookupError, TypeError, ValueError):
            decoded = param_value[2] if isinstance(param_value, tuple) else str(param_value)
        params.append((name.strip().lower(), str(decoded)))
    return first, params


def _media_type(header: _Header, default: str) -> tuple[_MediaType, bool]:
    """The entity's media type and whether it was given (RFC 2045 §5.2 defaults otherwise)."""
    value = header.get("content-type")
    if value is not None:
        first, params = _parse_params("content-type", value)
        maintype, slash, subtype = first.partition("/")
        if slash and maintype and subtype and " " not in first:
            if maintype == "text" and not any(name == "charset" for name, _ in params):
                params.insert(0, ("charset", "US-ASCII"))  # RFC 2045 §5.2
            return _MediaType(maintype, subtype, params), True
    maintype, _, subtype = default.partition("/")
    params = [("charset", "US-ASCII")] if maintype == "text" else []
    return _MediaType(maintype, subtype, params), False


# The MIME tree -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entity:
    start: int
    body_start: int
    end: int
    header: _Header
    media: _MediaType
    encoding: str
    children: list[_Entity] = field(default_factory=list)
    message: _Entity | None = None  # the encapsulated message of a message/rfc822 (or message/global) part

    @property
    def is_multipart(self) -> bool:
        return bool(self.children)


class _Budget:
    def __init__(self) -> None:
        self.parts = 0


def _parse_entity(raw: bytes, start: int, end: int, depth: int, default: str, budget: _Budget) -> _Entity:
    budget.parts += 1
    body_start, header = _split_header(raw, start, end)
    media, _given = _media_type(header, default)
    encoding = (header.get("content-transfer-encoding") or "7bit").strip().lower() or "7bit"
    entity = _Entity(start, body_start, end, header, media, encoding)
    if depth >= MAX_DEPTH or budget.parts >= MAX_PARTS:
        if media.maintype in ("multipart", "message"):
            _degrade(entity)
        return entity
    if media.maintype == "multipart":
        boundary = media.param("boundary")
        ranges = _split_multipart(raw, body_start, end, _str_to_bytes(boundary)) if boundary else []
        if not ranges:
            _degrade(entity)
            return entity
        child_default = "message/rfc822" if media.subtype == "digest" else "text/plain"
        for part_start, part_end in ranges:
            if budget.parts >= MAX_PARTS:
                break
            entity.children.append(_parse_entity(raw, part_start, part_end, depth + 1, child_default, budget))
    elif media.value in ("message/rfc822", "message/global"):
        if encoding not in _IDENTITY_ENCODINGS:  # RFC 2046 §5.2.1 forbids it; we cannot slice inside base64
            entity.media = _MediaType("application", "octet-stream", media.params)
        else:
            entity.message = _parse_entity(raw, body_start, end, depth + 1, "text/plain", budget)
    return entity


def _degrade(entity: _Entity) -> None:
    entity.media = _MediaType("text", "plain", [("charset", "US-ASCII")])
    entity.children = []
    entity.message = None


def _split_multipart(raw: bytes, body_start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """Body-part ranges between ``--boundary`` delimiter lines (RFC 2046 §5.1.1).

    The line break before a delimiter belongs to the delimiter; transport padding after it is ignored. A missing
    close delimiter ends the last part at the end of the multipart.
    """
    if not boundary:
        return []
    delimiter = b"--" + boundary
    ranges: list[tuple[int, int]] = []
    current: int | None = None
    pos = body_start
    while True:
        index = raw.find(delimiter, pos, end)
        if index < 0:
            break
        if index != body_start and raw[index - 1] != 0x0A:
            pos = index + 1
            continue
        after = index + len(delimiter)
        newline = raw.find(b"\n", after, end)
        line_end = end if newline < 0 else newline + 1
        closing = raw.startswith(b"--", after)
        if not closing and raw[after:line_end].strip():
            pos = index + 1  # a longer boundary that starts with ours
            continue
        if current is not None:
            part_end = index
            if part_end > current and raw[part_end - 1] == 0x0A:
                part_end -= 1
                if part_end > current and raw[part_end - 1] == 0x0D:
                    part_end -= 1
            ranges.append((current, part_end))
        if closing:
            return ranges
        current = line_end
        pos = line_end
    if current is not None:
        ranges.append((current, end))
    return ranges


# IMAP syntax ---------------------------------------------------------------------------------------------------


def nstring(value: str | bytes | None) -> bytes:
    """An IMAP nstring (RFC 9051 §4.3, §9): NIL, a quoted string, or a literal for 8-bit, CR/LF or many quotes."""
    if value is None:
        return b"NIL"
    data = _str_to_bytes(value) if isinstance(value, str) else value
    return imap_string(data)


#: Octets a quoted string cannot carry (8-bit, CR, LF): such a string is sent as a literal.
_NOT_QUOTABLE = re.compile(rb"[\x7f-\xff\r\n]")


def imap_string(data: bytes) -> bytes:
    data = data.replace(b"\x00", b"")
    escapes = data.count(b'"') + data.count(b"\\")
    if escapes > 8 or _NOT_QUOTABLE.search(data):
        return b"{%d}\r\n%s" % (len(data), data)
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _upper(value: str) -> bytes:
    return imap_string(_str_to_bytes(value.upper()))


def _param_list(params: Iterable[tuple[str, str]]) -> bytes:
    """body-fld-param: ("NAME" "value" …) or NIL. Non-ASCII values are given as RFC 2047 encoded-words."""
    items = []
    for name, value in params:
        if not value.isascii():
            value = "=?utf-8?b?" + base64.b64encode(value.encode("utf-8", "replace")).decode("ascii") + "?="
        items.append(_upper(name) + b" " + imap_string(value.encode("ascii")))
    return b"(" + b" ".join(items) + b")" if items else b"NIL"


def _disposition(header: _Header) -> bytes:
    value = header.get("content-disposition")
    if not value:
        return b"NIL"
    first, params = _parse_params("content-disposition", value)
    if not first:
        return b"NIL"
    return b"(" + _upper(first) + b" " + _param_list(params) + b")"


def _language(header: _Header) -> bytes:
    value = header.get("content-language")
    if not value:
        return b"NIL"
    tags = [tag.strip() for tag in re.sub(r"\([^)]*\)", "", value).split(",") if tag.strip()]
    if not tags:
        return b"NIL"
    if len(tags) == 1:
        return nstring(tags[0])
    return b"(" + b" ".join(nstring(tag) for tag in tags) + b")"


def _lines(raw: bytes, start: int, end: int) -> int:
    count = raw.count(b"\n", start, end)
    if end > start and raw[end - 1] != 0x0A:
        count += 1
    return count


def _body(raw: bytes, entity: _Entity, extensible: bool) -> bytes:
    """BODYSTRUCTURE (``extensible``) or BODY of one entity (RFC 9051 §7.5.2 and the body grammar of §9)."""
    header = entity.header
    if entity.is_multipart:
        out = b"(" + b"".join(_body(raw, child, extensible) for child in entity.children)
        out += b" " + _upper(entity.media.subtype)
        if extensible:
            out += b" " + _param_list(entity.media.params) + b" " + _disposition(header)
            out += b" " + _language(header) + b" " + nstring(header.get("content-location"))
        return out + b")"
    fields = [
        _upper(entity.media.maintype),
        _upper(entity.media.subtype),
        _param_list(entity.media.params),
        nstring(header.get("content-id")),
        nstring(header.get("content-description")),
        _upper(entity.encoding),
        b"%d" % (entity.end - entity.body_start),
    ]
    if entity.message is not None:
        fields.append(_envelope(entity.message.header))
        fields.append(_body(raw, entity.message, extensible))
        fields.append(b"%d" % _lines(raw, entity.body_start, entity.end))
    elif entity.media.maintype == "text":
        fields.append(b"%d" % _lines(raw, entity.body_start, entity.end))
    if extensible:
        fields.append(nstring(header.get("content-md5")))
        fields.append(_disposition(header))
        fields.append(_language(header))
        fields.append(nstring(header.get("content-location")))
    return b"(" + b" ".join(fields) + b")"


# Addresses and ENVELOPE ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Address:
    """One entry of an address list in ENVELOPE form: a mailbox, a group start (``host`` None, ``mailbox`` the
    group name) or a group end (everything None), RFC 9051 §7.5.2."""

    name: str | None
    route: str | None
    mailbox: str | None
    host: str | None


_TOKEN = re.compile(
    r'\s+|"(?:\\.|[^"\\])*"?|\((?:\\.|[^()\\])*\)?|\[(?:\\.|[^\]\\])*\]?|[<>@,;:.]|[^\s"()<>@,;:.\[\]]+'
)


def parse_addresses(value: str) -> list[Address]:
    """A lenient RFC 5322 §3.4 address-list parser keeping raw display names (encoded-words stay encoded).

    Handles quoted strings, comments (dropped), angle addresses with obsolete routes, groups, and the common
    garbage (missing ``@``, unbalanced quotes or brackets).
    """
    result: list[Address] = []
    words: list[tuple[str, bool]] = []  # (text, was quoted)
    in_group = False
    index = 0
    items = [t for t in _TOKEN.findall(value) if t and not t.isspace() and not t.startswith("(")]

    def flush() -> None:
        if not words:
            return
        text = "".join(word for word, _ in words)
        if "@" in text:
            local, _, host = text.rpartition("@")
            result.append(Address(None, None, local, host))
        else:
            result.append(Address(None, None, text, ""))
        words.clear()

    while index < len(items):
        item = items[index]
        index += 1
        if item == "<":
            name = _phrase(words)
            words.clear()
            inner: list[str] = []
            while index < len(items) and items[index] != ">":
                inner.append(items[index])
                index += 1
            index += 1
            route = None
            if ":" in inner:
                colon = inner.index(":")
                route = "".join(inner[:colon]) or None
                inner = inner[colon + 1:]
            spec = "".join(_unquote(t) if t.startswith('"') else t for t in inner)
            local, at, host = spec.rpartition("@")
            if not at:
                local, host = spec, ""
            result.append(Address(name, route, local, host))
        elif item == ":" and not in_group:
            result.append(Address(None, None, _phrase(words) or "", None))
            words.clear()
            in_group = True
        elif item == ";" and in_group:
            flush()
            result.append(Address(None, None, None, None))
            in_group = False
        elif item == ",":
            flush()
        else:
            words.append((_unquote(item) if item.startswith('"') else item, item.startswith('"')))
    flush()
    if in_group:
        result.append(Address(None, None, None, None))
    return result


def _phrase(words: list[tuple[str, bool]]) -> str | None:
    text = ""
    for word, quoted in words:
        if word == "." and not quoted:
            text += "."
        elif text and not text.endswith("."):
            text += " " + word
        else:
            text += word
    return text or None


def _address_list(addresses: list[Address]) -> bytes:
    if not addresses:
        return b"NIL"
    out = []
    for address in addresses:
        mailbox, host = address.mailbox, address.host
        if host is not None:  # a mailbox, not a group marker
            mailbox = mailbox or "MISSING_MAILBOX"
            host = host or "MISSING_DOMAIN"
        out.append(b"(" + b" ".join((nstring(address.name), nstring(address.route), nstring(mailbox),
                                     nstring(host))) + b")")
    return b"(" + b"".join(out) + b")"


def _addresses_of(header: _Header, name: str) -> list[Address]:
    value = header.get(name)
    return parse_addresses(value) if value else []


def _envelope(header: _Header) -> bytes:
    """ENVELOPE (RFC 9051 §7.5.2): date subject from sender reply-to to cc bcc in-reply-to message-id."""
    sender_from = _addresses_of(header, "from")
    sender = _addresses_of(header, "sender") or sender_from
    reply_to = _addresses_of(header, "reply-to") or sender_from
    parts = [
        nstring(header.get("date")),
        nstring(header.get("subject")),
        _address_list(sender_from),
        _address_list(sender),
        _address_list(reply_to),
        _address_list(_addresses_of(header, "to")),
        _address_list(_addresses_of(header, "cc")),
        _address_list(_addresses_of(header, "bcc")),
        nstring(header.get("in-reply-to")),
        nstring(header.get("message-id")),
    ]
    return b"(" + b" ".join(parts) + b")"


# Sections ------------------------------------------------------------------------------------------------------


def _location(section: str, entity: _Entity) -> PartLocation:
    charset = entity.media.param("charset") if entity.media.maintype == "text" else None
    return PartLocation(
        section=section,
        header_start=entity.start,
        header_end=entity.body_start,
        body_end=entity.end,
        content_type=entity.media.value,
        transfer_encoding=entity.encoding,
        charset=charset.lower() if charset else None,
        is_message=entity.message is not None,
        message_body_start=entity.message.body_start if entity.message is not None else None,
    )


def _number_message(message: _Entity, prefix: str, out: list[PartLocation]) -> None:
    """Number the body of a message (RFC 9051 §6.4.5): a multipart's parts are 1, 2…; a single part is 1."""
    if message.is_multipart:
        for number, child in enumerate(message.children, 1):
            _number_part(child, f"{prefix}{number}", out)
    else:
        _number_part(message, f"{prefix}1", out)


def _number_part(entity: _Entity, section: str, out: list[PartLocation]) -> None:
    out.append(_location(section, entity))
    if entity.is_multipart:
        for number, child in enumerate(entity.children, 1):
            _number_part(child, f"{section}.{number}", out)
    elif entity.message is not None:
        _number_message(entity.message, section + ".", out)


# Text for SEARCH and the webmail -------------------------------------------------------------------------------


def _transfer_decode(data: bytes, encoding: str) -> bytes:
    """Undo a content-transfer-encoding (RFC 2045 §6.7, §6.8); garbage decodes to what can be recovered."""
    if encoding == "base64":
        cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        if len(cleaned) % 4 == 1:  # a stray character: no octet can be recovered from it
            cleaned = cleaned[:-1]
        cleaned += b"=" * (-len(cleaned) % 4)
        try:
            return binascii.a2b_base64(cleaned)
        except (binascii.Error, ValueError):
            return b""
    if encoding == "quoted-printable":
        return quopri.decodestring(data)
    return data


def _html_text(text: str) -> str:
    text = _HTML_DROP.sub(" ", text)
    text = _HTML_TAG.sub(" ", text)
    return re.sub(r"[ \t\r\n]+", " ", html.unescape(text))


def _disposition_type(entity: _Entity) -> tuple[str, list[tuple[str, str]]]:
    value = entity.header.get("content-disposition")
    return _parse_params("content-disposition", value) if value else ("", [])


def _is_attachment(entity: _Entity) -> bool:
    if entity.media.value in _SIGNATURE_TYPES or entity.is_multipart:
        return False
    disposition, params = _disposition_type(entity)
    if disposition == "attachment":
        return True
    if entity.message is not None:
        return True
    named = any(name == "filename" for name, _ in params) or entity.media.param("name") is not None
    return named and entity.media.value not in ("text/plain", "text/html")


class _TextCollector:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.chunks: list[str] = []
        self.size = 0
        self.attachments = False

    def add(self, text: str) -> None:
        if self.size >= MAX_SEARCH_TEXT:
            return
        text = text[: MAX_SEARCH_TEXT - self.size]
        self.chunks.append(text)
        self.size += len(text) + 1

    def walk(self, entity: _Entity, top: bool) -> None:
        if not top and _is_attachment(entity):
            self.attachments = True
        if entity.is_multipart:
            for child in entity.children:
                self.walk(child, False)
        elif entity.message is not None:
            for name, value in entity.message.header.fields:
                if name in ("from", "to", "cc", "subject", "date"):
                    self.add(f"{name}: {decode_words(value)}")
            self.walk(entity.message, True)
        elif entity.media.maintype == "text" and self.size < MAX_SEARCH_TEXT:
            data = _transfer_decode(self.raw[entity.body_start: entity.end], entity.encoding)
            text = _decode_text(data[: MAX_SEARCH_TEXT * 4], entity.media.param("charset"))
            text = text.replace("\r\n", "\n")
            self.add(_html_text(text) if entity.media.subtype == "html" else text)


def _sent_date(header: _Header) -> tuple[datetime | None, date | None]:
    value = header.get("date")
    if not value:
        return None, None
    try:
        parsed = email.utils.parsedate_to_datetime(_undo_surrogates(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None, None
    day = parsed.date()
    if parsed.tzinfo is None:  # "-0000": UTC, origin's zone unknown (RFC 5322 §3.3)
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC), day
    except (OverflowError, ValueError):
        return None, day


def _first_mailbox(header: _Header) -> tuple[str, str]:
    for address in _addresses_of(header, "from"):
        if address.host is not None:
            name = decode_words(address.name or "")
            mailbox = address.mailbox or ""
            addr = f"{mailbox}@{address.host}" if address.host else mailbox
            return name, _undo_surrogates(addr)
    return "", ""


# Entry point ---------------------------------------------------------------------------------------------------


def _storable(text: str) -> str:
    """Text every backend's text columns accept: no NUL (PostgreSQL refuses it), no lone surrogates."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def analyse(raw: bytes) -> Analysis:
    """Analyse a message once at delivery; never raises (malformed MIME degrades to text/plain)."""
    try:
        return _analyse(raw, degrade=False)
    except Exception:  # a parser bug must not refuse mail: store it as one text/plain part
        return _analyse(raw, degrade=True)


def _analyse(raw: bytes, *, degrade: bool) -> Analysis:
    budget = _Budget()
    if degrade:
        body_start, header = _split_header(raw, 0, len(raw))
        plain = _MediaType("text", "plain", [("charset", "US-ASCII")])
        root = _Entity(0, body_start, len(raw), header, plain, "7bit")
    else:
        root = _parse_entity(raw, 0, len(raw), 0, "text/plain", budget)
    header = root.header
    parts = [PartLocation("", 0, root.body_start, len(raw), root.media.value, root.encoding,
                          None, False, None)]
    _number_message(root, "", parts)
    collector = _TextCollector(raw)
    collector.walk(root, True)
    sent_date, sent_day = _sent_date(header)
    from_name, from_address = _first_mailbox(header)
    search_fields = [
        (_storable(name[:200]), _storable(decode_words(value)[:MAX_SEARCH_VALUE].casefold()))
        for name, value in header.fields[:MAX_SEARCH_FIELDS]
    ]
    message_id = header.get("message-id")
    return Analysis(
        envelope=_envelope(header),
        bodystructure=_body(raw, root, True),
        body=_body(raw, root, False),
        parts=parts,
        subject=_storable(decode_words(header.get("subject") or "")[:1000]),
        from_name=_storable(from_name[:500]),
        from_address=_storable(from_address[:500]),
        sent_date=sent_date,
        sent_day=sent_day,
        message_id=_storable(_undo_surrogates(message_id)[:1000]) if message_id else None,
        has_attachments=collector.attachments,
        header_fields=search_fields,
        body_text=_storable("\n".join(collector.chunks).casefold()),
        degraded=degrade,
    )
