"""Raw-bytes MIME helpers for S/MIME: canonical form, header fields, multipart splitting.

Signatures cover exact bytes, so this module never round-trips through the ``email`` package: it slices the
message as received. Implemented:

- RFC 5322 §2.1–2.2: header block / body split at the first empty line, field unfolding (§2.2.3).
- RFC 2045 §5.1 ``Content-Type`` parsing with comments and quoted strings, RFC 2231 §3–4 parameter continuations
  and charset/language-tagged values; a missing or unparseable type defaults to ``text/plain`` (RFC 2045 §5.2).
- RFC 2046 §5.1.1 multipart body splitting (delimiters after CRLF or bare LF, transport padding, close delimiter)
  and RFC 1847 §2.1 / RFC 8551 §3.5.3 ``multipart/signed`` with exactly two parts.
- RFC 8551 §3.1.1–3.1.3 canonicalisation before signing: CRLF line endings everywhere, and every 8bit/binary leaf
  re-encoded to a 7-bit transfer encoding (quoted-printable for ``text/*``, base64 otherwise), recursing into
  multiparts and ``message/rfc822``. An existing ``multipart/signed`` is never touched (its bytes are signed).

Not implemented: header re-encoding (8-bit header fields, RFC 6532, are left as they are; a ``message/rfc822``
part whose own header is 8-bit cannot be made 7-bit and raises :class:`MimeError`), ``message/partial``.
"""

from __future__ import annotations

import base64
import quopri
import re
import urllib.parse

#: RFC 2046 §5.1.1 gives 70 characters; real agents exceed it a little, so allow some slack.
MAX_BOUNDARY_LENGTH = 200
#: MIME nesting depth accepted when canonicalising (sanity limit, not a standard value).
MAX_DEPTH = 32
#: RFC 5322 §2.1.1 line length limit (without CRLF).
MAX_LINE = 998

_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_TSPECIALS = '()<>@,;:\\"/[]?='


class MimeError(ValueError):
    """The bytes are not the MIME structure they claim to be (the message says where)."""


def to_crlf(data: bytes) -> bytes:
    """RFC 5322 §2.1 / RFC 8551 §3.1.1 canonical line endings: bare LF and bare CR become CRLF."""
    if b"\r" not in data:
        return data.replace(b"\n", b"\r\n")
    crlf = data.count(b"\r\n")
    if crlf == data.count(b"\n") == data.count(b"\r"):
        return data  # already canonical: the common case, three C-speed counts instead of three copies
    if b"\n" not in data:
        return data.replace(b"\r", b"\r\n")
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def split_header_body(message: bytes) -> tuple[bytes, bytes]:
    """RFC 5322 §2.1: split at the first empty line; the header block keeps its line endings, the body is the rest.

    Bare-LF input is accepted. Without an empty line the whole input is the header block and the body is empty.
    """
    if message.startswith(b"\r\n"):
        return b"", message[2:]
    if message.startswith(b"\n"):
        return b"", message[1:]
    lf_lf = message.find(b"\n\n")
    lf_crlf = message.find(b"\n\r\n")
    if lf_lf < 0 and lf_crlf < 0:
        return message, b""
    if lf_crlf < 0 or 0 <= lf_lf < lf_crlf:
        return message[: lf_lf + 1], message[lf_lf + 2 :]
    return message[: lf_crlf + 1], message[lf_crlf + 3 :]


def raw_fields(header_block: bytes) -> list[tuple[str, bytes]]:
    """RFC 5322 §2.2: ``(lower-cased name, raw field bytes with folds and line endings)``, in order.

    Raises :class:`MimeError` for a line that is neither a field nor a continuation.
    """
    fields: list[tuple[str, bytes]] = []
    for line in header_block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise MimeError("header block starts with a continuation line")
            name, raw = fields[-1]
            fields[-1] = (name, raw + line)
            continue
        colon = line.find(b":")
        name = line[:colon].rstrip(b" \t") if colon > 0 else b""
        if not name or not _FIELD_NAME.fullmatch(name):
            raise MimeError(f"malformed header line {line[:60]!r}")
        fields.append((name.decode("ascii").lower(), line))
    return fields


def field_value(raw_field: bytes) -> bytes:
    """The unfolded value of one raw field (RFC 5322 §2.2.3), leading and trailing white space removed."""
    value = raw_field[raw_field.index(b":") + 1 :]
    return value.replace(b"\r\n", b"").replace(b"\n", b"").replace(b"\r", b"").strip(b" \t")


def header_fields(header_block: bytes) -> list[tuple[str, bytes]]:
    """RFC 5322 §2.2: ``(lower-cased name, unfolded value)`` for every field, order and duplicates kept."""
    return [(name, field_value(raw)) for name, raw in raw_fields(header_block)]


def content_type(header_block: bytes) -> tuple[str, dict[str, str]]:
    """RFC 2045 §5.1: ``(type/subtype lower-cased, parameters)``; parameter names lower-cased, values as sent.

    Defaults to ``text/plain; charset=us-ascii`` when absent or unparseable (RFC 2045 §5.2). More than one
    ``Content-Type`` field is a :class:`MimeError` (RFC 2045 §3 allows one).
    """
    return content_type_of(header_fields(header_block))


def content_type_of(fields: list[tuple[str, bytes]]) -> tuple[str, dict[str, str]]:
    """:func:`content_type` on already parsed :func:`header_fields`."""
    values = [value for name, value in fields if name == "content-type"]
    if len(values) > 1:
        raise MimeError("more than one Content-Type header field")
    if not values:
        return "text/plain", {"charset": "us-ascii"}
    return parse_content_type(values[0])


def parse_content_type(value: bytes) -> tuple[str, dict[str, str]]:
    """Parse one ``Content-Type`` value (RFC 2045 §5.1, RFC 2231 §3–4); see :func:`content_type`."""
    tokens = _Tokens(value.decode("utf-8", "replace"))
    mime_type = tokens.token()
    if not mime_type or not tokens.take("/"):
        return "text/plain", {"charset": "us-ascii"}
    subtype = tokens.token()
    if not subtype:
        return "text/plain", {"charset": "us-ascii"}
    return f"{mime_type}/{subtype}".lower(), _rfc2231(_parameters(tokens))


def _parameters(tokens: _Tokens) -> list[tuple[str, str]]:
    """``*(";" attribute "=" value)``, skipping garbage up to the next ``;`` (agents are sloppy)."""
    rest = tokens.text[tokens.pos :]
    if "(" not in rest and _SIMPLE_PARAMETERS.fullmatch(rest):
        # Fast path for the usual comment-free, well-formed list (one regex instead of a token walk).
        return [
            (name.lower(), _QUOTED_PAIR.sub(r"\1", value[1:-1]) if value.startswith('"') else value)
            for name, value in _PARAMETER.findall(rest)
        ]
    raw_params: list[tuple[str, str]] = []
    while tokens.take(";"):
        name = tokens.token()
        if name and tokens.take("="):
            raw_params.append((name.lower(), tokens.value()))
        tokens.skip_to(";")
    return raw_params


_NAME_PATTERN = r'[^\s()<>@,;:\\"/\[\]?=]+'  # RFC 2045 §5.1 token (non-ASCII tolerated)
_VALUE_PATTERN = r'"(?:[^"\\]|\\.)*"|[^;()\s"]+'  # quoted-string, or leniently any run (``----=_Part`` boundaries)
_TOKEN = re.compile(_NAME_PATTERN)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"?', re.DOTALL)
_LENIENT_VALUE = re.compile(r"[^;()\s]+")
_SPACE = re.compile(r"\s*")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_PARAMETER = re.compile(rf";\s*({_NAME_PATTERN})\s*=\s*({_VALUE_PATTERN})")
_SIMPLE_PARAMETERS = re.compile(rf"(?:\s*;\s*{_NAME_PATTERN}\s*=\s*(?:{_VALUE_PATTERN}))*\s*;?\s*")


class _Tokens:
    """Tokenizer for RFC 2045 §5.1 structured values: tokens, quoted strings, comments as CFWS."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _cfws(self) -> None:
        text = self.text
        self.pos = _SPACE.match(text, self.pos).end()  # type: ignore[union-attr]
        while text.startswith("(", self.pos):
            depth = 0
            while self.pos < len(text):
                char = text[self.pos]
                if char == "\\":
                    self.pos += 1
                elif char == "(":
                    depth += 1
                elif char == ")":
                    depth -= 1
                    if depth == 0:
                        self.pos += 1
                        break
                self.pos += 1
            self.pos = _SPACE.match(text, self.pos).end()  # type: ignore[union-attr]

    def take(self, char: str) -> bool:
        self._cfws()
        if self.text.startswith(char, self.pos):
            self.pos += 1
            return True
        return False

    def token(self) -> str:
        self._cfws()
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            return ""
        self.pos = match.end()
        return match.group()

    def value(self) -> str:
        """A quoted string (unescaped) or, leniently, any run up to ``;``/white space (``----=_Part`` boundaries)."""
        self._cfws()
        quoted = _QUOTED.match(self.text, self.pos)
        if quoted is not None:
            self.pos = quoted.end()
            return _QUOTED_PAIR.sub(r"\1", quoted.group(1))
        match = _LENIENT_VALUE.match(self.text, self.pos)
        if match is None:
            return ""
        self.pos = match.end()
        return match.group()

    def skip_to(self, char: str) -> None:
        """Skip garbage after a parameter up to the next ``char``."""
        self._cfws()
        found = self.text.find(char, self.pos)
        self.pos = len(self.text) if found < 0 else found


def _rfc2231(raw_params: list[tuple[str, str]]) -> dict[str, str]:
    """RFC 2231 §3 continuations (``name*0``, ``name*1*``) and §4 ``charset'lang'%XX`` values; first wins."""
    params: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    for name, value in raw_params:
        extended = name.endswith("*")
        base = name[:-1] if extended else name
        head, star, index = base.partition("*")
        if star and index.isdigit():
            sections.setdefault(head, {}).setdefault(int(index), (value, extended))
        elif extended:
            params.setdefault(base, _decode_2231(value, first=True))
        else:
            params.setdefault(name, value)
    for name, parts in sections.items():
        pieces = [_decode_2231(parts[i][0], first=i == 0) if parts[i][1] else parts[i][0] for i in sorted(parts)]
        params.setdefault(name, "".join(pieces))
    return params


def _decode_2231(value: str, *, first: bool) -> str:
    charset = "utf-8"
    if first and value.count("'") >= 2:
        charset, _lang, value = value.split("'", 2)
    try:
        return urllib.parse.unquote(value, encoding=charset or "utf-8", errors="replace")
    except LookupError:
        return urllib.parse.unquote(value, errors="replace")


def split_entity(message: bytes, *, raw_body: bool = False) -> tuple[bytes, bytes]:
    """Split an RFC 5322 message into its outer header fields and its MIME entity (RFC 8551 §3.1).

    Returns ``(outer, entity)``: ``outer`` holds every header field except ``Content-*`` and ``MIME-Version``;
    ``entity`` is the ``Content-*`` fields, an empty line and the body. Both use CRLF line endings;
    ``MIME-Version`` is dropped (the caller writes one on the outside). With ``raw_body`` the body is left
    as is, for :func:`canonicalize_entity` to fix line endings part by part (binary parts must keep theirs).
    """
    header_block, body = split_header_body(message)
    outer: list[bytes] = []
    content: list[bytes] = []
    for name, raw in raw_fields(to_crlf(header_block)):
        if name.startswith("content-"):
            content.append(raw)
        elif name != "mime-version":
            outer.append(raw)
    return b"".join(outer), b"".join(content) + b"\r\n" + (body if raw_body else to_crlf(body))


def _delimiter_end(body: bytes, pos: int, delimiter_length: int) -> tuple[int, bool] | None:
    """If a boundary delimiter line starts at ``pos``: (index after its line ending, is-close). RFC 2046 §5.1.1."""
    end = pos + delimiter_length
    close = body.startswith(b"--", end)
    if close:
        end += 2
    while end < len(body) and body[end] in b" \t":
        end += 1
    if end == len(body):
        return end, close
    if body.startswith(b"\r\n", end):
        return end + 2, close
    if body[end] == 0x0A:
        return end + 1, close
    return None


def _line_break_before(body: bytes, pos: int) -> int:
    """Start of the line ending that precedes ``pos`` (it belongs to the delimiter, RFC 2046 §5.1.1)."""
    return pos - 2 if body[pos - 2 : pos] == b"\r\n" else pos - 1


def split_multipart(body: bytes, boundary: str) -> tuple[bytes, list[bytes], bytes]:
    """RFC 2046 §5.1.1: ``(preamble, body parts, epilogue)``; each part's exact bytes, delimiter CRLFs excluded."""
    if not boundary or len(boundary) > MAX_BOUNDARY_LENGTH or "\r" in boundary or "\n" in boundary:
        raise MimeError(f"invalid multipart boundary {boundary[:80]!r}")
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    marks: list[tuple[int, int, bool]] = []  # (line start, index after line, close)
    pos = body.find(delimiter)
    while pos >= 0:
        if pos == 0 or body[pos - 1] == 0x0A:
            found = _delimiter_end(body, pos, len(delimiter))
            if found is not None:
                marks.append((pos, found[0], found[1]))
                if found[1]:
                    break
        pos = body.find(delimiter, pos + 1)
    if not marks or not marks[-1][2]:
        raise MimeError("multipart body has no close delimiter")
    if len(marks) < 2:
        raise MimeError("multipart body has no body part")
    if any(close for _, _, close in marks[:-1]):
        raise MimeError("close delimiter before the last part")
    preamble = body[: _line_break_before(body, marks[0][0])] if marks[0][0] else b""
    parts = [
        body[marks[i][1] : _line_break_before(body, marks[i + 1][0])] if marks[i + 1][0] > marks[i][1] else b""
        for i in range(len(marks) - 1)
    ]
    return preamble, parts, body[marks[-1][1] :]


def split_multipart_signed(body: bytes, boundary: str) -> tuple[bytes, bytes]:
    """RFC 1847 §2.1 / RFC 8551 §3.5.3: ``(signed first part's exact bytes, signature part entity)``.

    The first part is returned byte for byte (it is what was signed); the second is the raw entity (its own
    header fields, an empty line, the still transfer-encoded signature). Exactly two parts are required.
    """
    _preamble, parts, _epilogue = split_multipart(body, boundary)
    if len(parts) != 2:
        raise MimeError(f"multipart/signed must have exactly 2 body parts, found {len(parts)}")
    return parts[0], parts[1]


def decode_transfer_encoding(body: bytes, encoding: str) -> bytes:
    """Undo RFC 2045 §6 Content-Transfer-Encoding (base64, quoted-printable, identity ones)."""
    encoding = encoding.strip().lower() or "7bit"
    if encoding == "base64":
        try:
            # RFC 2045 §6.8: characters outside the alphabet are ignored, which is what validate=False does
            return base64.b64decode(body)
        except ValueError as exc:
            raise MimeError(f"invalid base64 body: {exc}") from None
    if encoding == "quoted-printable":
        return quopri.decodestring(body)
    if encoding in ("7bit", "8bit", "binary"):
        return body
    raise MimeError(f"unknown Content-Transfer-Encoding {encoding!r}")


def base64_body(data: bytes) -> bytes:
    """RFC 2045 §6.8 base64 with 76-character CRLF-terminated lines."""
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


def quoted_printable(text: bytes) -> bytes:
    """RFC 2045 §6.7 quoted-printable of CRLF text, soft breaks keep lines within 76 columns.

    Besides the mandatory rules, a leading ``From `` and a lone ``.`` are escaped (RFC 8551 §3.1.3 notes that
    mbox and SMTP transports alter such lines).
    """
    out: list[bytes] = []
    for line in text.split(b"\r\n"):
        encoded = _qp_line(line)
        while len(encoded) > 76:
            cut = 75
            while encoded[cut - 1 : cut] == b"=" or encoded[cut - 2 : cut - 1] == b"=":
                cut -= 1
            out.append(encoded[:cut] + b"=")
            encoded = encoded[cut:]
        out.append(encoded)
    return b"\r\n".join(out)


_QP_UNSAFE = re.compile(rb"[^\x21-\x3c\x3e-\x7e \t]")


def _qp_escape(match: re.Match[bytes]) -> bytes:
    return b"=%02X" % match[0][0]


def _qp_line(line: bytes) -> bytes:
    """One line, RFC 2045 §6.7 rules (1)–(3): escape unsafe octets, trailing white space, ``From ``, ``.``."""
    encoded = _QP_UNSAFE.sub(_qp_escape, line)
    if encoded[-1:] in (b" ", b"\t"):
        encoded = encoded[:-1] + b"=%02X" % encoded[-1]
    if encoded.startswith(b"From ") or encoded == b".":
        encoded = b"=%02X" % encoded[0] + encoded[1:]
    return encoded


def _is_seven_bit(body: bytes) -> bool:
    """RFC 2045 §2.7: no octet above 127, no NUL, lines of at most 998 octets."""
    if not body.isascii() or b"\x00" in body:
        return False
    return all(len(line) <= MAX_LINE for line in body.split(b"\r\n"))


def canonicalize_entity(entity: bytes, *, depth: int = 0) -> bytes:
    """RFC 8551 §3.1.1–3.1.3: the entity with CRLF line endings and only 7-bit transfer encodings.

    Already canonical input comes back byte for byte. ``Content-Transfer-Encoding: binary`` leaves are
    base64-encoded from their raw bytes (their line endings are data, not text).
    """
    if depth > MAX_DEPTH:
        raise MimeError(f"MIME nesting deeper than {MAX_DEPTH}")
    header_block, body = split_header_body(entity)
    header_block = to_crlf(header_block)
    if header_block and not header_block.endswith(b"\r\n"):
        header_block += b"\r\n"
    mime_type, params = content_type(header_block)
    cte = _transfer_encoding(header_block)
    if mime_type == "multipart/signed":
        return header_block + b"\r\n" + (body if cte == "binary" else to_crlf(body))
    if mime_type.startswith("multipart/"):
        return _canonical_multipart(header_block, body, params.get("boundary", ""), cte, depth)
    if mime_type == "message/rfc822":
        inner = canonicalize_entity(to_crlf(body) if cte != "binary" else body, depth=depth + 1)
        if not _is_seven_bit(inner):
            raise MimeError("message/rfc822 part with an 8-bit header cannot be made 7-bit")
        return _with_cte(header_block, cte, "7bit") + b"\r\n" + inner
    return _canonical_leaf(header_block, body, mime_type, cte)


def _transfer_encoding(header_block: bytes) -> str:
    values = [value for name, value in header_fields(header_block) if name == "content-transfer-encoding"]
    return values[0].decode("ascii", "replace").strip().lower() if values else ""


def _with_cte(header_block: bytes, current: str, wanted: str) -> bytes:
    """The header block with ``Content-Transfer-Encoding`` set to ``wanted`` (other fields byte for byte)."""
    if current == wanted or (not current and wanted == "7bit"):
        return header_block
    fields = [raw for name, raw in raw_fields(header_block) if name != "content-transfer-encoding"]
    if wanted != "7bit":
        fields.append(b"Content-Transfer-Encoding: " + wanted.encode("ascii") + b"\r\n")
    return b"".join(fields)


def _canonical_multipart(header_block: bytes, body: bytes, boundary: str, cte: str, depth: int) -> bytes:
    preamble, parts, epilogue = split_multipart(body, boundary)
    delimiter = b"--" + boundary.encode("utf-8")
    out = [to_crlf(preamble) + b"\r\n"] if preamble else []
    for part in parts:
        out.append(delimiter + b"\r\n" + canonicalize_entity(part, depth=depth + 1) + b"\r\n")
    out.append(delimiter + b"--\r\n" + to_crlf(epilogue))
    return _with_cte(header_block, cte, "7bit") + b"\r\n" + b"".join(out)


def _canonical_leaf(header_block: bytes, body: bytes, mime_type: str, cte: str) -> bytes:
    if cte in ("base64", "quoted-printable"):
        return header_block + b"\r\n" + to_crlf(body)
    data = body if cte == "binary" else to_crlf(body)
    seven_bit = cte != "binary" and _is_seven_bit(data)
    if cte not in ("", "7bit", "8bit", "binary"):
        if seven_bit:
            return header_block + b"\r\n" + data
        raise MimeError(f"unknown Content-Transfer-Encoding {cte!r} on 8-bit data")
    if seven_bit:
        return _with_cte(header_block, cte, "7bit") + b"\r\n" + data
    if not any(name == "content-type" for name, _ in raw_fields(header_block)):
        header_block = _default_text_type(data) + header_block
    if mime_type.startswith("text/") and cte != "binary":
        return _with_cte(header_block, cte, "quoted-printable") + b"\r\n" + quoted_printable(data)
    return _with_cte(header_block, cte, "base64") + b"\r\n" + base64_body(data)


def _default_text_type(data: bytes) -> bytes:
    """An explicit type for an 8-bit body that had none: UTF-8 when it decodes, else RFC 1428 ``unknown-8bit``."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return b"Content-Type: text/plain; charset=unknown-8bit\r\n"
    return b"Content-Type: text/plain; charset=utf-8\r\n"
