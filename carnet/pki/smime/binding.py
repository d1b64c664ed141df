"""Signer ↔ sender binding: the From address must be one the signer's certificate vouches for.

Implements RFC 8550 §3 ("receiving agents MUST check that the address in the From or Sender header field of
a mail message matches an Internet mail address in the signer's certificate") with carnet's stricter reading,
because the health-messaging trust model makes the From address the identity shown to the reader:

- exactly one ``From`` field (RFC 5322 §3.6) holding exactly one mailbox (RFC 5322 §3.4): no address lists,
  no group syntax, no route, no domain literal, nothing after the address;
- the display name must not be able to pass for another address: no ``@``, ``<`` or ``>`` in it once
  RFC 2047 encoded-words are decoded (also inside quoted strings, which many clients decode), no ``@`` in
  comments, no control or bidirectional-override characters;
- the address matches an rfc822Name of the certificate's subjectAltName, case-insensitively (RFC 5280
  §4.2.1.6); the subject ``emailAddress`` attribute is used only when the certificate has no rfc822Name.

``Sender`` is not consulted: a message whose From holds one mailbox needs none (RFC 5322 §3.6.2). Not
implemented: IDNA U-label/A-label equivalence of domains (compared as written, lower-cased).
"""

from __future__ import annotations

import base64
import binascii
import functools
import quopri
import re
import unicodedata

from cryptography import x509
from cryptography.x509.oid import NameOID

from .canon import MimeError, header_fields


class BindingError(Exception):
    """The message's From cannot be bound to a signer; the message says exactly why."""


#: A single mailbox never needs more (RFC 5321 §4.5.3.1.3 paths are ≤ 256 octets, plus a display name).
MAX_FROM_LENGTH = 2048
_SPECIALS = '()<>[]:;@\\,."'
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def sender_address(header_block: bytes) -> str:
    """The lower-cased addr-spec of the single mailbox in the single From field (RFC 5322 §3.4, §3.6.2).

    Raises :class:`BindingError` for a missing or repeated From, several mailboxes, group syntax, any parse
    error, or a display name or comment that could be mistaken for another address.
    """
    try:
        fields = header_fields(header_block)
    except MimeError as exc:
        raise BindingError(f"header block does not parse: {exc}") from None
    return sender_address_of(fields)


def sender_address_of(fields: list[tuple[str, bytes]]) -> str:
    """:func:`sender_address` on already parsed :func:`.canon.header_fields`."""
    values = [value for name, value in fields if name == "from"]
    if not values:
        raise BindingError("no From header field")
    if len(values) > 1:
        raise BindingError(f"{len(values)} From header fields (RFC 5322 §3.6 allows exactly one)")
    if len(values[0]) > MAX_FROM_LENGTH:
        raise BindingError(f"From header field longer than {MAX_FROM_LENGTH} octets")
    try:
        text = values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BindingError("From header field is not valid UTF-8") from None
    return parse_mailbox(text)


@functools.lru_cache(maxsize=4096)
def parse_mailbox(text: str) -> str:
    """RFC 5322 §3.4 ``mailbox`` (name-addr or addr-spec) → lower-cased addr-spec; see :func:`sender_address`.

    Pure, so memoised: a gateway sees the same senders over and over (refusals are not cached).
    """
    tokens = _strip(_tokenize(text))
    specials = [value for kind, value in tokens if kind == "special"]
    if not tokens:
        raise BindingError("From header field is empty")
    if "," in specials:
        raise BindingError("From holds more than one address")
    if ":" in specials or ";" in specials:
        raise BindingError("From uses group (or route) syntax")
    if "[" in specials or "]" in specials:
        raise BindingError("domain literals are not accepted in From")
    if "<" not in specials:
        if ">" in specials:
            raise BindingError("unbalanced '>' in From")
        return _addr_spec(tokens)
    if specials.count("<") != 1 or specials.count(">") != 1:
        raise BindingError("From must hold exactly one <address>")
    open_at = tokens.index(("special", "<"))
    close_at = tokens.index(("special", ">"))
    if close_at < open_at:
        raise BindingError("unbalanced '>' in From")
    if close_at != len(tokens) - 1:
        raise BindingError("unexpected text after the <address> in From")
    _check_display_name(tokens[:open_at])
    return _addr_spec(_strip(tokens[open_at + 1 : close_at]))


def _tokenize(text: str) -> list[tuple[str, str]]:
    """Lexemes of RFC 5322 §3.2: ``atom``, ``qs`` (unquoted content), ``special``, ``ws`` (collapsed FWS).

    Comments (CFWS) are checked by :func:`_comment` and dropped.
    """
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char in " \t\r\n":
            if not tokens or tokens[-1][0] != "ws":
                tokens.append(("ws", " "))
            pos += 1
        elif char == "(":
            pos = _comment(text, pos)
        elif char == '"':
            value, pos = _quoted_string(text, pos)
            tokens.append(("qs", value))
        elif char in _SPECIALS:
            tokens.append(("special", char))
            pos += 1
        else:
            start = pos
            while pos < len(text) and text[pos] not in _SPECIALS and text[pos] not in " \t\r\n":
                if ord(text[pos]) < 0x20 or text[pos] == "\x7f":
                    raise BindingError("control character in From")
                pos += 1
            tokens.append(("atom", text[start:pos]))
    return tokens


def _strip(tokens: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop leading and trailing white space tokens."""
    start, end = 0, len(tokens)
    while start < end and tokens[start][0] == "ws":
        start += 1
    while end > start and tokens[end - 1][0] == "ws":
        end -= 1
    return tokens[start:end]


def _comment(text: str, pos: int) -> int:
    """Skip a (nested) RFC 5322 §3.2.2 comment starting at ``pos``; refuse one that shows an address."""
    depth = 0
    start = pos
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            pos += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                _check_visible(_decode_words(text[start + 1 : pos]), "comment")
                return pos + 1
        pos += 1
    raise BindingError("unterminated comment in From")


def _quoted_string(text: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            out.append(text[pos + 1])
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    raise BindingError("unterminated quoted string in From")


def _check_display_name(tokens: list[tuple[str, str]]) -> None:
    """RFC 5322 §3.2.5 phrase (with obs-phrase dots); decoded text must not look like an address.

    The text is rebuilt as written (dots glued to their neighbours) so that a lenient decoder's view of an
    encoded-word containing specials, e.g. ``=?utf-8?q?alice=40carnet.test?=``, is what gets checked.
    """
    words: list[str] = []
    for kind, value in tokens:
        if kind in ("atom", "qs", "ws") or (kind == "special" and value == "."):
            words.append(value)
        else:
            raise BindingError(f"unexpected {value!r} in the display name of From")
    _check_visible(_decode_words("".join(words)), "display name")


def _check_visible(text: str, where: str) -> None:
    for char in text:
        if char in "@<>":
            raise BindingError(f"{where} of From contains {char!r} (could pass for another address)")
        if char in _BIDI or unicodedata.category(char) == "Cc":
            raise BindingError(f"{where} of From contains a control or bidirectional character")


def _decode_words(text: str) -> str:
    """Decode RFC 2047 encoded-words wherever they appear (lenient on purpose: we look for disguise)."""

    def decode(match: re.Match[str]) -> str:
        charset, encoding, payload = match.groups()
        raw = payload.encode("ascii", "replace")
        try:
            if encoding in "bB":
                data = base64.b64decode(raw + b"=" * (-len(raw) % 4))
            else:
                data = quopri.decodestring(raw.replace(b"_", b" "), header=True)
            return data.decode(charset.split("*")[0], "replace")
        except (binascii.Error, LookupError, ValueError):
            return "@"  # undecodable encoded-word: treat as suspicious

    return _ENCODED_WORD.sub(decode, text)


def _addr_spec(tokens: list[tuple[str, str]]) -> str:
    """RFC 5322 §3.4.1 addr-spec: dot-atom or quoted-string local part, ``@``, dot-atom domain."""
    if any(kind == "ws" for kind, _ in tokens):
        raise BindingError("white space inside the address in From")
    try:
        at = tokens.index(("special", "@"))
    except ValueError:
        raise BindingError("From address has no '@'") from None
    local_tokens, domain_tokens = tokens[:at], tokens[at + 1 :]
    if len(local_tokens) == 1 and local_tokens[0][0] == "qs":
        local = local_tokens[0][1]
        if not local or any(ord(c) < 0x20 for c in local):
            raise BindingError("invalid quoted local part in From")
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        local = _dot_atom(local_tokens, "local part")
    domain = _dot_atom(domain_tokens, "domain")
    if _ENCODED_WORD.search(local) or _ENCODED_WORD.search(domain):
        raise BindingError("encoded-word inside the address in From")
    return f"{local}@{domain}".lower()


def _dot_atom(tokens: list[tuple[str, str]], what: str) -> str:
    """RFC 5322 §3.2.3 dot-atom-text: atoms separated by single dots."""
    if not tokens or len(tokens) % 2 == 0:
        raise BindingError(f"invalid {what} in From address")
    for index, (kind, value) in enumerate(tokens):
        expected = "atom" if index % 2 == 0 else "special"
        if kind != expected or (expected == "special" and value != "."):
            raise BindingError(f"invalid {what} in From address")
    return "".join(value for _, value in tokens)


def certificate_addresses(certificate: x509.Certificate) -> tuple[str, ...]:
    """Lower-cased rfc822Name SANs, or the subject emailAddress values when there is none (RFC 8550 §3)."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails = [e.lower() for e in san.get_values_for_type(x509.RFC822Name)]
    except x509.ExtensionNotFound:
        emails = []
    if emails:
        return tuple(emails)
    return tuple(str(attr.value).lower() for attr in certificate.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS))


def binds(certificate: x509.Certificate, address: str) -> bool:
    """True when ``address`` equals (case-insensitively) an address of ``certificate`` (RFC 8550 §3)."""
    return address.lower() in certificate_addresses(certificate)
