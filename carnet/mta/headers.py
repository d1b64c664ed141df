"""Header fields carnet reads, adds and removes, on raw bytes (RFC 5322 §2.2, §3.6).

The MTA never re-serialises a message through a MIME library: a signed message must stay byte for byte what was
signed, so header fields are edited as raw lines at the top of the message, where S/MIME does not cover them
(RFC 8551 §3.1: only the inner entity is signed).

Fields carnet owns:

- ``Carnet-Signature`` — the gateway's verification result, added to every message delivered to a local mailbox,
  removed from every incoming message (a forged copy would otherwise mislead the reader)::

      Carnet-Signature: valid; signer="Dr Anne Martin" rpps=10001234567; chain=ok; revocation=good

  Grammar: ``status *( ";" SP item )`` where the status is a :class:`carnet.pki.smime.Status` value and the items
  are ``signer="<common name>"`` followed by the national identifier as ``rpps=``, ``adeli=``, ``finess=`` or
  ``siret=`` (IGC-Santé prefix 8/0/1/3), ``address=``, ``chain=`` (``ok`` or the failure), ``revocation=``
  (good, revoked, unknown, not_checked), ``encrypted=`` (the content-encryption algorithm), ``detail="…"``.
  Non-ASCII text is written in RFC 2231 form (``signer*=utf-8''L%C3%A9a``).
- ``X-MSS-NIL`` — see :data:`MSS_NIL`; set on every message carnet emits, replacing any the client wrote.
- ``X-MSS-MES: FIN`` — read only: the author closes the exchange (a patient may not answer it).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Final
from urllib.parse import quote

SIGNATURE_FIELD: Final = "Carnet-Signature"
MSS_NIL_FIELD: Final = "X-MSS-NIL"
MSS_MES_FIELD: Final = "X-MSS-MES"
#: ``X-MSS-NIL`` ("niveau" of the message in the MSSanté space). carnet only ever emits messages that are signed by
#: a certificate of its PKI bound to a directory mailbox and that travel over mutually authenticated TLS inside
#: the trust space, so it states the highest level, ``3``: sender identified by the operator's directory and
#: certificate (``2`` would be an identified mailbox without a signature, ``1`` an authenticated session only,
#: ``0`` nothing). Incoming values are kept (they are the emitting operator's claim); carnet's own replace any
#: a client wrote on submission.
MSS_NIL: Final = "3"

_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
#: A msg-id (RFC 5322 §3.6.4), leniently: angle brackets around printable ASCII without blanks or brackets.
MSG_ID: Final = re.compile(r"<[!-;=?-~]+>")


class HeaderError(ValueError):
    """The header block cannot be parsed (no field name, a line without a colon, …)."""


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """(header block including its final CRLF, body) — the body starts after the first empty line."""
    if raw.startswith(b"\r\n"):
        return b"", raw[2:]
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw if raw.endswith(b"\r\n") or not raw else raw + b"\r\n", b""
    return raw[: end + 2], raw[end + 4 :]


def fields(header: bytes) -> list[tuple[str, bytes]]:
    """Raw header fields: (lower-case name, the whole field with folding and its CRLF)."""
    out: list[tuple[str, bytes]] = []
    for line in header.split(b"\r\n")[:-1] if header.endswith(b"\r\n") else header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            name, value = out[-1]
            out[-1] = (name, value + line + b"\r\n")
            continue
        match = _FIELD_NAME.match(line)
        if match is None:
            raise HeaderError(f"not a header field: {line[:60]!r}")
        out.append((match.group(1).decode("ascii").lower(), line + b"\r\n"))
    return out


def field_value(raw_field: bytes) -> str:
    """The unfolded value of one raw field (text after the colon, surrounding blanks removed), decoded leniently."""
    value = raw_field.split(b":", 1)[1]
    return re.sub(rb"\r\n(?=[ \t])", b"", value).strip().decode("utf-8", "replace")


def get_all(header: bytes, name: str) -> list[str]:
    name = name.lower()
    return [field_value(raw) for field_name, raw in fields(header) if field_name == name]


def get(header: bytes, name: str) -> str | None:
    values = get_all(header, name)
    return values[0] if values else None


def index(header: bytes) -> dict[str, list[bytes]]:
    """The raw fields of a header block by lower-case name, in order: one parse for several lookups."""
    out: dict[str, list[bytes]] = {}
    for name, raw in fields(header):
        out.setdefault(name, []).append(raw)
    return out


def first(indexed: dict[str, list[bytes]], name: str) -> str | None:
    """:func:`get` on an :func:`index`."""
    raws = indexed.get(name.lower())
    return field_value(raws[0]) if raws else None


def remove(raw: bytes, names: Iterable[str]) -> bytes:
    """The message without the top-level header fields named ``names`` (case-insensitive); body untouched."""
    wanted = {n.lower() for n in names}
    header, body = split_message(raw)
    parsed = fields(header)
    if not any(name in wanted for name, _ in parsed):
        return raw
    kept = b"".join(field for name, field in parsed if name not in wanted)
    return kept + b"\r\n" + body


def prepend(raw: bytes, new_fields: Iterable[tuple[str, str]]) -> bytes:
    """Add fields at the top of the header (where trace and gateway fields go, RFC 5321 §4.4)."""
    block = b"".join(fold(name, value) for name, value in new_fields)
    return block + raw


def fold(name: str, value: str) -> bytes:
    """``Name: value`` folded at spaces to stay under 78 characters where possible (RFC 5322 §2.2.3)."""
    line = f"{name}: "
    out: list[str] = []
    for word in value.split(" "):
        if len(line) + len(word) > 76 and line.strip() and not line.endswith(": "):
            out.append(line.rstrip(" "))
            line = " "
        line += word + " "
    out.append(line.rstrip(" "))
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


def new_message_id(domain: str) -> str:
    return f"<{datetime.now(UTC):%Y%m%d%H%M%S}.{secrets.token_hex(10)}@{domain}>"


def date_now() -> str:
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text_param(name: str, text: str) -> str:
    text = " ".join(text.split())
    if text.isascii():
        return f"{name}={_quoted(text)}"
    return f"{name}*=utf-8''{quote(text, safe='')}"


_NATIONAL_ID_KINDS: Final = {"8": "rpps", "0": "adeli", "1": "finess", "3": "siret"}


def national_id_item(national_id: str) -> str:
    """``rpps=10001234567`` from an IGC-Santé national identifier ``810001234567`` (prefix 8 RPPS, 0 ADELI, 1 FINESS,
    3 SIRET); anything else as ``id=``."""
    kind = _NATIONAL_ID_KINDS.get(national_id[:1])
    if kind and national_id[1:].isdigit():
        return f"{kind}={national_id[1:]}"
    return f"id={_quoted(national_id)}" if national_id else ""


def signature_value(result: dict[str, object]) -> str:
    """Render a stored verification result (:meth:`carnet.pki.smime.SmimeResult.to_dict` shape) as the value of
    ``Carnet-Signature`` (grammar in the module docstring)."""
    items = [str(result.get("status", "malformed"))]
    signer = result.get("signer")
    if isinstance(signer, dict):
        who = [_text_param("signer", str(signer.get("common_name") or signer.get("subject") or ""))]
        national = national_id_item(str(signer.get("national_id") or ""))
        if national:
            who.append(national)
        emails = signer.get("emails") or []
        if isinstance(emails, list) and emails:
            who.append(f"address={emails[0]}")
        items.append(" ".join(who))
        if signer.get("chain_status"):
            chain = str(signer["chain_status"])
            items.append(f"chain={chain}" if chain == "ok" else _text_param("chain", chain[:200]))
        if signer.get("revocation"):
            items.append(f"revocation={signer['revocation']}")
    if result.get("encrypted"):
        items.append(f"encrypted={result.get('encryption_algorithm') or 'yes'}")
    detail = str(result.get("detail") or "")
    if detail and result.get("status") != "valid":
        items.append(_text_param("detail", detail[:300]))
    return "; ".join(items)
