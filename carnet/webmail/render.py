"""Turn the octets of a stored message into what the webmail shows: headers, a safe body, parts to download.

Parsing uses the stdlib :mod:`email` package (``policy=email.policy.default``); nothing here raises on malformed
input (garbage, missing headers, bad base64, unknown charsets or transfer encodings, truncated multiparts): what
cannot be understood is left out, and a message the parser gives up on (e.g. thousands of nested multiparts) is
shown with its header fields only.

Structure (RFC 2045, RFC 2046):

- parts are numbered as IMAP sections (RFC 9051 §6.4.5): the parts of a multipart are 1…n, nested multiparts add
  a level (``2.1``), the body of a non-multipart message is ``1``, and the parts of a message/rfc822 part at ``3``
  are ``3.1``… (its whole body is ``3.1`` when it is not a multipart);
- at most :data:`MAX_DEPTH` levels of nesting and :data:`MAX_PARTS` parts are considered, the rest is ignored;
- a ``multipart/signed`` (RFC 8551 §3.5.3, RFC 1847 §2.1) is transparent: its first part is the content, the
  signature (``application/pkcs7-signature``) is never listed;
- an opaque signed message (``application/pkcs7-mime; smime-type=signed-data``, RFC 8551 §3.5.2, or a ``.p7m``)
  is unwrapped: the CMS SignedData (RFC 5652 §5) is read with asn1crypto and its encapsulated MIME entity is shown
  *as if it were the body of the message*: its sections are numbered as if that entity were the message (so a
  signed ``multipart/mixed`` has parts ``1``, ``2``…, not ``1.1``, ``1.2``…), by :func:`part_content`,
  :func:`embedded_raw` and :func:`inline_images` as well. The header fields shown are the outer ones. A CMS
  structure that cannot be read leaves the ``.p7m`` as an attachment (section ``1``) and the message with no body.

Body choice: in a ``multipart/alternative`` the last ``text/html`` alternative is displayed (RFC 2046 §5.1.4) and the
first ``text/plain`` one gives :attr:`RenderedMessage.text`; a ``multipart/related`` (RFC 2387) shows its root (the
``start`` parameter or the first part); in ``multipart/mixed`` (and any other multipart: report, digest…) the first
part that is not an attachment and holds a body is used. Every other leaf is downloadable
(:attr:`RenderedMessage.attachments`), encapsulated messages excepted (:attr:`RenderedMessage.messages`).

The HTML body is sanitised by :func:`carnet.webmail.sanitize.sanitize_html`, with ``cid:`` images (RFC 2392)
replaced by ``data:`` URIs; the plain text is escaped, linkified and wrapped in ``<div class="plain-text">`` so that
the ``white-space: pre-wrap`` rule of :func:`body_document` applies (the only markup besides the links).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import email
import email.header
import email.message
import email.policy
import email.utils
import html
import quopri
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesParser

from asn1crypto import cms

from carnet.webmail.sanitize import sanitize_html

__all__ = [
    "MAX_DEPTH",
    "MAX_PARTS",
    "PLAIN_TEXT_CLASS",
    "PartInfo",
    "RenderedMessage",
    "body_document",
    "embedded_raw",
    "inline_images",
    "part_content",
    "render_message",
    "text_to_html",
]

#: Levels of nesting (multiparts and encapsulated messages) that are descended into.
MAX_DEPTH = 20
#: Parts of one message (containers and leaves) that are considered.
MAX_PARTS = 500
#: Class of the element that wraps :attr:`RenderedMessage.text_html` (``white-space: pre-wrap``).
PLAIN_TEXT_CLASS = "plain-text"

_POLICY = email.policy.default
# Serialises parsed entities as they came (no refolding of header fields), with CRLF line ends (RFC 5322 §2.1).
_RAW_POLICY = email.policy.default.clone(refold_source="none", linesep="\r\n")

_SIGNATURE_TYPES = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})
_PKCS7_MIME = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_INLINE_IMAGE_TYPES = {
    "image/png": "image/png",
    "image/jpeg": "image/jpeg",
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/gif": "image/gif",
    "image/webp": "image/webp",
}
_MAX_OPAQUE_LAYERS = 3

# C0/C1 controls and the bidirectional embedding/override/isolate controls (which can disguise a name or a file
# extension, "Unicode Security Considerations", UTR #36 §2.3); tab and line breaks become spaces first.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"[ \t\r\n]+")
_SURROGATES = re.compile("[\ud800-\udfff]")
_SECTION = re.compile(r"[1-9][0-9]{0,5}(?:\.[1-9][0-9]{0,5}){0,40}")
_LANG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8}){0,7}")
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]{1,40})""", re.IGNORECASE)
# URLs made into links in plain text: http(s) and mailto (RFC 3986 §2 characters, RFC 6068).
_LINK = re.compile(
    r"""(?<![A-Za-z0-9+.\-])(?:https?://|mailto:)[^\s<>"'`\x00-\x1f\x7f\u00a0\u2000-\u200b\u3000]+""", re.IGNORECASE
)
_LINK_TRAILING = ".,;:!?'\"*»”’"
_LINK_PAIRS = {")": "(", "]": "[", "}": "{", ">": "<"}
_TEXT_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f]")

# Charset names seen in mail that Python does not know, or knows under a narrower name (WHATWG Encoding §4.2).
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "iso-8859-8-i": "iso-8859-8",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-sjis": "shift_jis",
    "windows-874": "cp874",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
}


@dataclass(frozen=True, slots=True)
class PartInfo:
    """A part the reader can download or open (a leaf of the MIME tree, RFC 2045 §2.6)."""

    section: str
    """The IMAP section number (RFC 9051 §6.4.5): ``"1"``, ``"2.1"``…"""
    content_type: str
    """Lower-case media type (RFC 2045 §5.1), e.g. ``"application/pdf"``."""
    filename: str
    """Decoded file name (RFC 2231, RFC 2047; RFC 2183 §2.3), without directories or controls; ``""`` if none."""
    size: int
    """Decoded octets (RFC 2045 §6)."""
    content_id: str | None
    """The Content-ID (RFC 2045 §7) without the angle brackets."""
    disposition: str
    """``"attachment"``, ``"inline"`` (RFC 2183 §2) or ``""`` when the part says nothing."""


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """Everything the message page shows (see the module documentation)."""

    subject: str
    from_display: str
    from_address: str
    reply_to: str
    to: list[str]
    cc: list[str]
    date: datetime | None
    message_id: str
    references: str
    html: str | None
    text: str | None
    text_html: str | None
    attachments: list[PartInfo]
    messages: list[PartInfo]
    remote_blocked: int
    read_receipt_to: str
    closes_thread: bool
    auto_submitted: bool
    is_report: bool


# Parsing ---------------------------------------------------------------------------------------------------------


def _parse(raw: bytes) -> Message | None:
    """The parsed message (RFC 5322, RFC 2045), or ``None`` when the parser gives up (it recurses per level)."""
    try:
        return email.message_from_bytes(raw, policy=_POLICY)
    except Exception:  # RecursionError on absurd nesting, or a parser bug on garbage
        return None


def _parse_header_only(raw: bytes) -> Message:
    try:
        return BytesParser(policy=_POLICY).parsebytes(raw, headersonly=True)
    except Exception:
        return email.message.EmailMessage(policy=_POLICY)


def _fix_surrogates(value: str) -> str:
    """Raw 8-bit octets come out of the parser as surrogate escapes: read them as UTF-8 (RFC 6532 §3.2)."""
    if not _SURROGATES.search(value):
        return value
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return _SURROGATES.sub("\ufffd", value)


def _clean_display(value: str) -> str:
    """A header string fit for display: surrogates decoded, controls removed, folding white space collapsed."""
    value = _SPACES.sub(" ", _fix_surrogates(value))
    return _CONTROLS.sub("", value).strip()


def _raw_header(msg: Message, name: str) -> str | None:
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words in a raw field value; the value itself when that fails."""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:
        return value


def _header(msg: Message, name: str) -> str | None:
    """The decoded value (RFC 2047 §6) of the first ``name`` field, ``None`` when absent."""
    try:
        value = msg.get(name)
    except Exception:  # the structured-header parser can trip on garbage; fall back to the raw value
        raw = _raw_header(msg, name)
        return None if raw is None else _clean_display(_decode_words(raw))
    return None if value is None else _clean_display(str(value))


def _mailboxes(msg: Message, name: str) -> list[tuple[str, str]]:
    """(display name, addr-spec) of each mailbox of an address field (RFC 5322 §3.4); a group without members
    gives its name and an empty addr-spec."""
    result: list[tuple[str, str]] = []
    try:
        value = msg.get(name)
        if value is None:
            return []
        for group in value.groups:
            if group.display_name is not None and not group.addresses:
                result.append((_clean_display(group.display_name), ""))
            for address in group.addresses:
                result.append((_clean_display(address.display_name or ""), _clean_display(address.addr_spec or "")))
    except Exception:
        raw = _raw_header(msg, name)
        if raw is None:
            return []
        pairs = email.utils.getaddresses([_decode_words(raw)])
        result = [(_clean_display(display), _clean_display(spec)) for display, spec in pairs if display or spec]
    return [(display, spec) for display, spec in result if display or spec]


def _display(display: str, spec: str) -> str:
    if display and spec:
        return f"{display} <{spec}>"
    return display or spec


def _first_address(msg: Message, name: str) -> str:
    return next((spec for _, spec in _mailboxes(msg, name) if spec), "")


def _date(msg: Message) -> datetime | None:
    """The origination date (RFC 5322 §3.6.1), always aware (``-0000``, unknown zone, is read as UTC)."""
    moment: datetime | None = None
    try:
        value = msg.get("Date")
        moment = getattr(value, "datetime", None) if value is not None else None
    except Exception:
        raw = _raw_header(msg, "Date")
        try:
            moment = email.utils.parsedate_to_datetime(raw) if raw else None
        except Exception:
            moment = None
    if not isinstance(moment, datetime):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# Parts ------------------------------------------------------------------------------------------------------------


def _payload(part: Message) -> object:
    try:
        return part.get_payload()
    except Exception:
        return None


def _is_multipart(part: Message) -> bool:
    """A multipart with parts; one without boundary (RFC 2046 §5.1.1) is read as a text leaf."""
    try:
        return part.get_content_maintype() == "multipart" and isinstance(_payload(part), list)
    except Exception:
        return False


def _is_encapsulated(part: Message) -> bool:
    """A message/rfc822 or message/global part (RFC 2046 §5.2.1, RFC 6532 §3.7) holding a parsed message."""
    try:
        payload = _payload(part)
        return (
            part.get_content_type() in _MESSAGE_TYPES
            and isinstance(payload, list)
            and len(payload) == 1
            and isinstance(payload[0], Message)
        )
    except Exception:
        return False


def _ctype(part: Message) -> str:
    """The effective media type (RFC 2045 §5.2 defaults; a multipart without parts counts as text/plain)."""
    try:
        value = part.get_content_type().lower()
    except Exception:
        return "text/plain"
    if value.startswith("multipart/") and not _is_multipart(part):
        return "text/plain"
    if value.startswith("message/") and not isinstance(_payload(part), list):
        return "application/octet-stream"
    return value


def _param(part: Message, name: str, header: str = "content-type") -> str:
    try:
        value = part.get_param(name, header=header)
    except Exception:
        return ""
    if value is None:
        return ""
    if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
        value = email.utils.collapse_rfc2231_value(value)
    return str(value)


def _disposition(part: Message) -> str:
    """The disposition type (RFC 2183 §2); an unknown one is treated as attachment (§2.8)."""
    try:
        value = part.get_content_disposition()
    except Exception:
        value = None
    if not value:
        return ""
    value = value.strip().lower()
    return value if value in ("inline", "attachment") else "attachment"


def _clean_filename(name: str) -> str:
    """A file name safe to offer (RFC 2183 §2.3): last path component, no controls, no leading/trailing dots."""
    name = _clean_display(_decode_words(_fix_surrogates(name)) if "=?" in name else name)
    name = re.split(r"[/\\]", name)[-1].strip().strip(".").strip()
    if len(name) > 200:
        stem, dot, extension = name.rpartition(".")
        name = f"{stem[: 190 - len(extension)]}.{extension}" if dot and len(extension) <= 10 else name[:200]
    return name


def _filename(part: Message) -> str:
    """The file name (RFC 2183 §2.3 ``filename``, else the Content-Type ``name``), RFC 2231 and RFC 2047 decoded."""
    try:
        name = part.get_filename() or ""
    except Exception:
        name = _param(part, "filename", "content-disposition") or _param(part, "name")
    return _clean_filename(name) if name else ""


def _content_id(part: Message) -> str | None:
    """The Content-ID (RFC 2045 §7) without its angle brackets."""
    value = _header(part, "Content-ID")
    if not value:
        return None
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value or None


def _transfer_decode(data: bytes, encoding: str) -> bytes:
    """Undo a Content-Transfer-Encoding (RFC 2045 §6); bad base64 gives what can be recovered."""
    if encoding == "base64":
        cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        if len(cleaned) % 4 == 1:  # a stray character that cannot make an octet
            cleaned = cleaned[:-1]
        try:
            return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))
        except (binascii.Error, ValueError):
            return b""
    if encoding == "quoted-printable":
        try:
            return quopri.decodestring(data)
        except (binascii.Error, ValueError):
            return data
    return data


def _encoding(part: Message) -> str:
    value = _header(part, "Content-Transfer-Encoding")
    return value.strip().lower() if value else "7bit"


def _serialised(part: Message) -> bytes:
    """An entity as octets (header and body), as it was parsed."""
    data = part.as_bytes(policy=_RAW_POLICY)
    return re.sub(rb"\r?\n", b"\r\n", data)


def _inner_bytes(part: Message) -> bytes:
    """The octets of the message encapsulated in a message/rfc822 part (RFC 2046 §5.2.1)."""
    payload = _payload(part)
    if not isinstance(payload, list) or not payload:
        raise KeyError("not an encapsulated message")
    data = _serialised(payload[0])
    encoding = _encoding(part)
    if encoding in ("base64", "quoted-printable"):  # not allowed by RFC 2046 §5.2.1, but seen
        body = data[2:] if data.startswith(b"\r\n") else data
        data = re.sub(rb"\r?\n", b"\r\n", _transfer_decode(body, encoding))
    return data


def _str_bytes(payload: str) -> bytes:
    """The octets behind a parsed payload (the parser keeps 8-bit octets as surrogate escapes)."""
    try:
        return payload.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return payload.encode("utf-8", "replace")


def _leaf_bytes(part: Message) -> bytes:
    """The decoded octets of a leaf (RFC 2045 §6); never raises."""
    try:
        if _is_encapsulated(part):
            return _inner_bytes(part)
        payload = _payload(part)
        if isinstance(payload, list):  # message/delivery-status and the like: the body as it was
            data = _serialised(part)
            if data.startswith(b"\r\n"):
                return data[2:]
            end = data.find(b"\r\n\r\n")
            return data[end + 4 :] if end >= 0 else b""
        if not isinstance(payload, str):
            return b""
        encoding = _encoding(part)
        if encoding in ("base64", "quoted-printable"):
            return _transfer_decode(_str_bytes(payload), encoding)
        # 7bit, 8bit, binary, uuencode, unknown encodings: the stdlib gives the octets back as they came (its
        # undecoded get_payload() would already have applied the charset).
        decoded = part.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else _str_bytes(payload)
    except Exception:
        return b""


def _codec(charset: str | None) -> str | None:
    """The Python codec of a MIME charset name (RFC 2046 §4.1.2), ``None`` if unknown or not a text encoding."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def _decode(data: bytes, charset: str | None) -> str:
    """Octets to text: the declared charset, else UTF-8, else the declared charset with replacements, else UTF-8
    with replacements, latin-1 as the last resort; never raises."""
    codec = _codec(charset)
    try:
        if codec:
            try:
                return data.decode(codec)
            except Exception:  # noqa: S110 - fall through to the next candidate
                pass
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        if codec:
            try:
                return data.decode(codec, "replace")
            except Exception:  # noqa: S110
                pass
        return data.decode("utf-8", "replace")
    except Exception:
        return data.decode("latin-1")


def _charset(part: Message, data: bytes, ctype: str) -> str | None:
    charset = _param(part, "charset") or None
    if charset is None and ctype == "text/html":  # HTML §4.2.5.4: <meta charset> in the first octets
        match = _META_CHARSET.search(data[:2048])
        if match:
            charset = match.group(1).decode("ascii")
    return charset


def _unflow(text: str, delsp: bool) -> str:
    """Undo format=flowed (RFC 3676 §4.1-4.2): join soft line breaks of the same quote depth, unstuff spaces."""
    out: list[str] = []
    paragraph: str | None = None
    paragraph_depth = 0
    for line in text.split("\n"):
        stripped = line.lstrip(">")
        depth = len(line) - len(stripped)
        if stripped.startswith(" "):  # space-stuffing (§4.4)
            stripped = stripped[1:]
        flowed = stripped.endswith(" ") and stripped != "-- "  # §4.3: the signature separator is fixed
        if flowed and delsp:
            stripped = stripped[:-1]
        if paragraph is not None and depth != paragraph_depth:  # §4.5: a depth change ends the paragraph
            out.append(_quoted(paragraph, paragraph_depth))
            paragraph = None
        paragraph = stripped if paragraph is None else paragraph + stripped
        paragraph_depth = depth
        if not flowed:
            out.append(_quoted(paragraph, depth))
            paragraph = None
    if paragraph is not None:
        out.append(_quoted(paragraph, paragraph_depth))
    return "\n".join(out)


def _quoted(line: str, depth: int) -> str:
    return (">" * depth + " " + line) if depth else line


def _text_of(part: Message, ctype: str) -> str:
    """A text part as a string, line breaks normalised to ``\\n``."""
    data = _leaf_bytes(part)
    text = _decode(data, _charset(part, data, ctype))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if ctype == "text/plain" and _param(part, "format").lower() == "flowed":
        text = _unflow(text, _param(part, "delsp").lower() == "yes")
    return text


# The tree ----------------------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Node:
    section: str
    part: Message
    ctype: str
    depth: int
    parent_type: str = ""
    children: list[_Node] = field(default_factory=list)

    @property
    def container(self) -> bool:
        return self.ctype.startswith("multipart/")


def _signed_content(der: bytes) -> bytes | None:
    """The encapsulated content of a CMS SignedData (RFC 5652 §5.1-5.2), ``None`` if it is anything else."""
    candidates = [der]
    if der[:3] == b"MII" or re.fullmatch(rb"[A-Za-z0-9+/=\s]+", der[:200] or b"-"):
        candidates.append(_transfer_decode(der, "base64"))  # a .p7m sent without Content-Transfer-Encoding
    for candidate in candidates:
        try:
            info = cms.ContentInfo.load(candidate)
            if info["content_type"].native != "signed_data":
                return None
            content = info["content"]["encap_content_info"]["content"].native
        except Exception:  # noqa: S112 - not DER, try the next reading
            continue
        return content if isinstance(content, bytes) and content else None
    return None


def _is_opaque_signed(part: Message) -> bool:
    """application/pkcs7-mime with smime-type signed-data (RFC 8551 §3.2.2) or a .p7m (§3.2.1)."""
    ctype = _ctype(part)
    if ctype in _PKCS7_MIME:
        return _param(part, "smime-type").lower() in ("signed-data", "")
    return ctype == "application/octet-stream" and _filename(part).lower().endswith(".p7m")


def _content_root(msg: Message) -> Message:
    """The entity shown as the message: ``msg``, or the MIME entity inside its opaque signature(s)."""
    current = msg
    for _ in range(_MAX_OPAQUE_LAYERS):
        if _is_multipart(current) or not _is_opaque_signed(current):
            break
        content = _signed_content(_leaf_bytes(current))
        inner = _parse(content) if content is not None else None
        if inner is None:
            break
        current = inner
    return current


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_PARTS


def _build_tree(msg: Message, depth: int = 0) -> _Node:
    """The MIME tree of a message, numbered as IMAP sections (RFC 9051 §6.4.5), within the limits."""
    budget = _Budget()
    budget.left -= 1
    if _is_multipart(msg):
        root = _Node("", msg, _ctype(msg), depth)
        _add_children(root, depth + 1, budget)
    else:
        root = _Node("1", msg, _ctype(msg), depth)
    return root


def _add_children(node: _Node, depth: int, budget: _Budget) -> None:
    if depth > MAX_DEPTH:
        return
    payload = _payload(node.part)
    if not isinstance(payload, list):
        return
    for number, child in enumerate(payload, 1):
        if budget.left <= 0:
            return
        if not isinstance(child, Message):
            continue
        budget.left -= 1
        section = f"{node.section}.{number}" if node.section else str(number)
        kid = _Node(section, child, _ctype(child), depth, node.ctype)
        node.children.append(kid)
        if kid.container:
            _add_children(kid, depth + 1, budget)


def _walk(node: _Node) -> list[_Node]:
    out = [node]
    for child in node.children:
        out.extend(_walk(child))
    return out


def _leaves(root: _Node) -> list[_Node]:
    return [node for node in _walk(root) if not node.container]


def _is_attachment(node: _Node) -> bool:
    """An attachment by its disposition (RFC 2183 §2.2) or because it is named."""
    return _disposition(node.part) == "attachment" or bool(_filename(node.part))


@dataclass(slots=True)
class _Body:
    html: _Node | None = None
    text: _Node | None = None
    consumed: set[int] = field(default_factory=set)


def _related_root(node: _Node) -> _Node | None:
    """The root of a multipart/related: the ``start`` part (RFC 2387 §3.2) or the first one."""
    start = _param(node.part, "start").strip().strip("<>")
    if start:
        for child in node.children:
            if _content_id(child.part) == start:
                return child
    return node.children[0] if node.children else None


def _choose(node: _Node, in_alternative: bool = False) -> _Body | None:
    """The body to display under ``node`` (see the module documentation)."""
    if node.container:
        subtype = node.ctype.partition("/")[2]
        if subtype == "alternative":  # RFC 2046 §5.1.4: the last alternative is the richest
            body = _Body()
            for child in node.children:
                if not child.container and _is_attachment(child):
                    continue
                found = _choose(child, in_alternative=True)
                if found is None:
                    continue
                body.consumed |= found.consumed
                if found.html is not None:
                    body.html = found.html
                if found.text is not None and body.text is None:
                    body.text = found.text
            return body if body.html is not None or body.text is not None else None
        if subtype == "related":
            root = _related_root(node)
            return _choose(root, in_alternative) if root is not None else None
        if subtype == "signed":  # RFC 8551 §3.5.3: the first part is the content
            return _choose(node.children[0], in_alternative) if node.children else None
        for child in node.children:
            if child.ctype in _MESSAGE_TYPES or child.ctype in _SIGNATURE_TYPES:
                continue
            if not child.container and _is_attachment(child):
                continue
            found = _choose(child)
            if found is not None:
                return found
        return None
    if _is_attachment(node) or node.ctype in _SIGNATURE_TYPES:
        return None
    if node.ctype == "text/html":
        return _Body(html=node, consumed={id(node)})
    if node.ctype == "text/plain" or (node.ctype.startswith("text/") and not in_alternative):
        return _Body(text=node, consumed={id(node)})
    return None


def _part_info(node: _Node) -> PartInfo:
    disposition = _disposition(node.part)
    content_id = _content_id(node.part)
    if not disposition and node.parent_type == "multipart/related" and content_id:
        disposition = "inline"  # a resource of the related root (RFC 2387 §3.3)
    return PartInfo(
        section=node.section,
        content_type=node.ctype,
        filename="" if node.ctype in _MESSAGE_TYPES else _filename(node.part),
        size=len(_leaf_bytes(node.part)),
        content_id=content_id,
        disposition=disposition,
    )


def _sniff_image(data: bytes) -> str | None:
    """The raster type of image octets by their signature (WHATWG MIME Sniffing §6.1)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _inline_images(root: _Node, max_total: int) -> dict[str, str]:
    images: dict[str, str] = {}
    total = 0
    for node in _leaves(root):
        if node.ctype not in _INLINE_IMAGE_TYPES:
            continue
        content_id = _content_id(node.part)
        if not content_id or content_id in images:
            continue
        data = _leaf_bytes(node.part)
        kind = _sniff_image(data)
        if kind is None or total + len(data) > max_total:
            continue
        total += len(data)
        images[content_id] = f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"
    return images


def _resolve(msg: Message, section: str, depth: int = 0) -> _Node:
    """The node of ``section`` (RFC 9051 §6.4.5), descending into encapsulated messages; ``KeyError`` if none."""
    if depth > MAX_DEPTH:
        raise KeyError(section)
    root = _build_tree(_content_root(msg), depth)
    index = {node.section: node for node in _walk(root) if node.section}
    if section in index:
        return index[section]
    numbers = section.split(".")
    for length in range(len(numbers) - 1, 0, -1):
        node = index.get(".".join(numbers[:length]))
        if node is not None:
            payload = _payload(node.part)
            if not _is_encapsulated(node.part) or not isinstance(payload, list):
                break
            return _resolve(payload[0], ".".join(numbers[length:]), node.depth + 1)
    raise KeyError(section)


def _checked_section(section: str) -> str:
    if not isinstance(section, str) or not _SECTION.fullmatch(section):
        raise KeyError(section)
    return section


# Plain text to HTML ------------------------------------------------------------------------------------------------


def _trim_link(url: str) -> str:
    """Drop the punctuation that ends a sentence around a URL (and unbalanced closing brackets)."""
    while url:
        last = url[-1]
        if last in _LINK_TRAILING or (last in _LINK_PAIRS and url.count(_LINK_PAIRS[last]) < url.count(last)):
            url = url[:-1]
        else:
            break
    return url


def _link(url: str) -> str:
    escaped = html.escape(url, quote=True)
    return f'<a href="{escaped}" rel="noopener noreferrer" target="_blank">{escaped}</a>'


def text_to_html(text: str) -> str:
    """Plain text as a safe HTML fragment: everything escaped, line breaks kept (shown with ``pre-wrap``), and
    http(s) and mailto URLs (RFC 3986, RFC 6068) made into links that open in a new browsing context."""
    text = _TEXT_CONTROLS.sub("", _fix_surrogates(text).replace("\r\n", "\n").replace("\r", "\n"))
    out: list[str] = []
    position = 0
    for match in _LINK.finditer(text):
        url = _trim_link(match.group(0))
        scheme_end = url.index(":") + 1
        if len(url.rstrip("/")) <= scheme_end or not re.search(r"[A-Za-z0-9]", url[scheme_end:]):
            continue
        out.append(html.escape(text[position : match.start()], quote=True))
        out.append(_link(url))
        position = match.start() + len(url)
    out.append(html.escape(text[position:], quote=True))
    return f'<div class="{PLAIN_TEXT_CLASS}">{"".join(out)}</div>'


# Public API ----------------------------------------------------------------------------------------------------------


def render_message(raw: bytes) -> RenderedMessage:
    """Everything the webmail shows of a message (RFC 5322 header fields, RFC 2045-2046 structure); never raises.

    Header fields come from the outer message, RFC 2047 encoded-words decoded, controls removed. The body and the
    parts are those of the content (see the module documentation for S/MIME, numbering and the body choice).
    """
    msg = _parse(raw)
    parsed = msg is not None
    if msg is None:
        msg = _parse_header_only(raw)

    from_boxes = _mailboxes(msg, "From")
    notification = (_header(msg, "Auto-Submitted") or "").strip()  # RFC 3834 §5: "no" or an automatic keyword
    html_body: str | None = None
    text_body: str | None = None
    text_html: str | None = None
    attachments: list[PartInfo] = []
    messages: list[PartInfo] = []
    remote_blocked = 0
    is_report = False
    try:
        root = _build_tree(_content_root(msg)) if parsed else None
    except Exception:
        root = None
    if root is not None:
        # An unforeseen parser corner case must not take the page down: keep what was obtained.
        with contextlib.suppress(Exception):
            shown = root
            while shown.ctype == "multipart/signed" and shown.children:  # RFC 8551 §3.5.3
                shown = shown.children[0]
            is_report = shown.ctype == "multipart/report"  # RFC 6522 §3
            body = _choose(root) or _Body()
            if body.html is not None:
                sanitized = sanitize_html(
                    _text_of(body.html.part, "text/html"), cid_images=_inline_images(root, 5 * 1024 * 1024)
                )
                html_body, remote_blocked = sanitized.html, sanitized.remote_blocked
            if body.text is not None:
                text_body = _text_of(body.text.part, body.text.ctype)
                text_html = text_to_html(text_body)
            for node in _leaves(root):
                if id(node) in body.consumed or node.ctype in _SIGNATURE_TYPES:
                    continue
                (messages if _is_encapsulated(node.part) else attachments).append(_part_info(node))

    return RenderedMessage(
        subject=_header(msg, "Subject") or "",
        from_display=", ".join(_display(display, spec) for display, spec in from_boxes),
        from_address=next((spec for _, spec in from_boxes if spec), "").lower(),
        reply_to=_first_address(msg, "Reply-To"),
        to=[_display(display, spec) for display, spec in _mailboxes(msg, "To")],
        cc=[_display(display, spec) for display, spec in _mailboxes(msg, "Cc")],
        date=_date(msg),
        message_id=_header(msg, "Message-ID") or "",
        references=_header(msg, "References") or "",
        html=html_body,
        text=text_body,
        text_html=text_html,
        attachments=attachments,
        messages=messages,
        remote_blocked=remote_blocked,
        read_receipt_to=_first_address(msg, "Disposition-Notification-To"),  # RFC 8098 §2.1
        closes_thread=(_header(msg, "X-MSS-MES") or "").strip().upper() == "FIN",
        auto_submitted=bool(notification) and re.split(r"[\s;(]", notification, maxsplit=1)[0].lower() != "no",
        is_report=is_report,
    )


def part_content(raw: bytes, section: str) -> tuple[bytes, str, str]:
    """(decoded octets, media type, file name) of the leaf at ``section`` (RFC 9051 §6.4.5, RFC 2045 §6).

    A message/rfc822 section gives the encapsulated message's octets. ``KeyError`` when there is no such leaf
    (a multipart, or beyond the limits).
    """
    msg = _parse(raw) if _checked_section(section) else None
    if msg is None:
        raise KeyError(section)
    node = _resolve(msg, section)
    if node.container:
        raise KeyError(section)
    try:
        data = _inner_bytes(node.part) if _is_encapsulated(node.part) else _leaf_bytes(node.part)
    except Exception:
        raise KeyError(section) from None
    return data, node.ctype, "" if node.ctype in _MESSAGE_TYPES else _filename(node.part)


def embedded_raw(raw: bytes, section: str) -> bytes:
    """The octets of the message encapsulated in the message/rfc822 part at ``section`` (RFC 2046 §5.2.1), to be
    rendered with :func:`render_message`; ``KeyError`` if that section is not such a part."""
    msg = _parse(raw) if _checked_section(section) else None
    if msg is None:
        raise KeyError(section)
    node = _resolve(msg, section)
    if not _is_encapsulated(node.part):
        raise KeyError(section)
    try:
        return _inner_bytes(node.part)
    except Exception:
        raise KeyError(section) from None


def inline_images(raw: bytes, *, max_total: int = 5 * 1024 * 1024) -> dict[str, str]:
    """Content-ID (without ``<>``) → ``data:`` URI (RFC 2397) of the PNG, JPEG, GIF and WebP parts that have a
    Content-ID (RFC 2045 §7), for ``cid:`` references (RFC 2392); at most ``max_total`` decoded octets in all.

    The octets must carry the signature of one of these formats (the URI says the sniffed type), so nothing else
    is passed off as an image. Parts of encapsulated messages are not included.
    """
    msg = _parse(raw)
    if msg is None:
        return {}
    try:
        return _inline_images(_build_tree(_content_root(msg)), max_total)
    except Exception:
        return {}


_BODY_STYLE = """\
:root{color-scheme:light}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;padding:12px;color:#1b1b1b;background:#fff;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,\
"Helvetica Neue",Arial,sans-serif;overflow-wrap:break-word;word-wrap:break-word}
img{max-width:100%;height:auto}
table{max-width:100%}
pre,code{white-space:pre-wrap}
.plain-text{white-space:pre-wrap}
blockquote{margin:0 0 0 .5em;padding-left:.8em;border-left:3px solid #c8c8c8}
a{color:#0b57d0}"""

# Defence in depth, should the document ever be served without its HTTP policy: no fetch but data: images.
_BODY_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'"


def body_document(fragment: str, *, lang: str) -> str:
    """A complete HTML document (HTML §13.1) around a safe body fragment, for the sandboxed iframe.

    ``fragment`` must already be safe (:attr:`RenderedMessage.html` or :attr:`RenderedMessage.text_html`); ``lang``
    is a BCP 47 tag (RFC 5646), replaced by ``und`` when it is not one. The document sets UTF-8, a mobile viewport,
    ``no-referrer``, a meta Content-Security-Policy that blocks every fetch but ``data:`` images, and readable
    defaults (system font, images and tables no wider than the frame, long words wrapped, ``pre-wrap`` for
    ``.plain-text``). Links carry ``target="_blank"``: the iframe's sandbox needs ``allow-popups``.
    """
    tag = lang.strip() if isinstance(lang, str) and _LANG.fullmatch(lang.strip()) else "und"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{html.escape(tag, quote=True)}"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_BODY_CSP}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>\n{_BODY_STYLE}\n</style></head><body>{fragment}</body></html>"
    )
