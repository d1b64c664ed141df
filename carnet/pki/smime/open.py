"""Opening an inbound S/MIME message: decrypt what is enveloped, verify what is signed, layer by layer.

This is what the gateway calls for every received message. RFC 8551 §3.7 lets signing and encryption nest in any
order; :func:`open_message` peels the layers from the outside in — ``multipart/signed`` or
``application/pkcs7-mime`` signed-data (RFC 8551 §3.5), ``application/pkcs7-mime`` enveloped-data or
authEnveloped-data (RFC 8551 §3.3) — until it reaches a plain MIME entity, at most :data:`MAX_LAYERS` deep. So a
triple-wrapped message (sign → encrypt → sign, RFC 2634 §1.1) is fully opened.

The message's outer header fields (From, To, Subject, …) are never inside the layers: every layer is verified as
the outer header block followed by that layer's entity, so the signer ↔ From binding (RFC 8550 §3) is always
checked against the **outer** From.

No input raises out of :func:`open_message`; whatever goes wrong becomes a :class:`~.result.SmimeResult` (a
failure nobody foresaw is ``MALFORMED`` with the exception in ``detail``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from asn1crypto import cms

from carnet.pki.smime import canon
from carnet.pki.smime.binding import sender_address
from carnet.pki.smime.envelope import (
    MAX_ENVELOPE_BYTES,
    Decrypted,
    DecryptError,
    DecryptionKey,
    MalformedEnvelopeError,
    decrypt_message,
    is_pkcs7_mime,
    pkcs7_mime_body,
)
from carnet.pki.smime.result import SmimeResult, Status
from carnet.pki.smime.verify import verify_message

if TYPE_CHECKING:
    from carnet.pki.smime.validation import ChainValidator

__all__ = ["MAX_LAYERS", "MAX_MESSAGE_BYTES", "open_message"]

#: Most S/MIME layers (signatures + envelopes) opened in one message; triple wrapping needs 3.
MAX_LAYERS = 4
#: Largest message accepted (larger ones are MALFORMED without being parsed).
MAX_MESSAGE_BYTES = MAX_ENVELOPE_BYTES

_CBC_WARNING = (
    "no integrity protection: the message was encrypted with {algorithm} (EnvelopedData); the ciphertext could have "
    "been altered without detection (RFC 8551 §2.7 recommends AuthEnvelopedData with AES-GCM)"
)

Kind = Literal["signed", "enveloped", "plain"]


class _UnsupportedLayer(Exception):
    """An application/pkcs7-mime layer we do not open (compressed-data, certs-only, unknown CMS type)."""


@dataclass
class _Opening:
    """What has been learnt so far, outermost layer first."""

    outer: bytes
    entity: bytes
    from_address: str = ""
    #: True once a layer was opened: ``entity`` is then inner content, not the envelope or signature itself.
    opened: bool = False
    signatures: list[SmimeResult] = field(default_factory=list)
    decryptions: list[Decrypted] = field(default_factory=list)


async def open_message(
    message: bytes,
    *,
    keys: Sequence[DecryptionKey] = (),
    validator: ChainValidator,
    at: datetime | None = None,
    check_from: bool = True,
) -> SmimeResult:
    """Decrypt and verify ``message`` (RFC 5322 bytes) and report one :class:`SmimeResult`; never raises.

    - ``keys``: the recipient's decryption keys (enveloped layers without a matching key are ``DECRYPT_FAILED``);
    - ``validator``: chain validation for every signer (trust anchors, revocation);
    - ``at``: validation time (default now); ``check_from``: require every signer to bind to the outer From.

    The status is ``VALID`` only when every signature layer is valid. Otherwise it is the innermost signature's
    status when that one fails (it signs the content), else the first failing outer layer's; ``UNSIGNED`` when
    no layer is signed. ``encrypted``/``encryption_algorithm``/``integrity_protected`` describe the envelopes
    (CBC adds a warning), and ``content`` is the innermost MIME entity reached.
    """
    try:
        return await _open(message, keys, validator, at, check_from)
    except Exception as exc:  # the gateway boundary: nothing may escape
        return SmimeResult(Status.MALFORMED, detail=f"cannot open the message: {type(exc).__name__}: {exc}"[:500])


async def _open(
    message: bytes,
    keys: Sequence[DecryptionKey],
    validator: ChainValidator,
    at: datetime | None,
    check_from: bool,
) -> SmimeResult:
    if not isinstance(message, bytes | bytearray | memoryview):
        return SmimeResult(Status.MALFORMED, detail=f"expected the message as bytes, got {type(message).__name__}")
    if len(message) > MAX_MESSAGE_BYTES:
        return SmimeResult(
            Status.MALFORMED, detail=f"message of {len(message)} bytes exceeds the limit of {MAX_MESSAGE_BYTES}"
        )
    # The first layer is handed on as received: a binary (RFC 3030) body must not go through CRLF conversion.
    raw = bytes(message)
    try:
        outer, entity = canon.split_entity(raw)
    except ValueError as exc:
        return SmimeResult(Status.MALFORMED, detail=f"cannot parse the message header: {exc}")
    state = _Opening(outer=_header_block(outer), entity=entity, from_address=_sender(outer))
    current = raw
    for depth in range(MAX_LAYERS + 1):  # ``depth`` layers opened so far
        try:
            kind = _classify(current)
        except _UnsupportedLayer as exc:
            return _report(state, Status.MALFORMED, str(exc))
        except ValueError as exc:
            return _report(state, Status.MALFORMED, f"cannot parse layer {depth + 1}: {exc}")
        if kind == "plain":
            break
        if depth == MAX_LAYERS:
            return _report(state, Status.MALFORMED, f"S/MIME layers nested deeper than {MAX_LAYERS}")
        if kind == "enveloped":
            try:
                _, decrypted = decrypt_message(current, keys)
            except MalformedEnvelopeError as exc:
                return _report(state, Status.MALFORMED, f"enveloped layer {depth + 1}: {exc}")
            except DecryptError as exc:
                return _report(state, Status.DECRYPT_FAILED, str(exc))
            state.decryptions.append(decrypted)
            state.entity, state.opened = canon.to_crlf(decrypted.content), True
            current = _message(state.outer, state.entity)
            continue
        verified = await verify_message(current, validator, at=at, check_from=check_from)
        state.signatures.append(verified)
        if not verified.content:
            if not state.opened:
                state.entity = b""  # nothing was reached: do not pass the signed envelope off as content
            break  # the signed content could not be reached (malformed layer): nothing further to open
        state.entity, state.opened = verified.content, True
        current = _message(state.outer, verified.content)
    return _report(state)


def _header_block(outer: bytes) -> bytes:
    return b"".join(line + b"\r\n" for line in outer.split(b"\r\n") if line)


def _message(outer: bytes, entity: bytes) -> bytes:
    """The outer header fields around an inner entity: what each layer is verified as (From stays outer).

    Only ``Content-*`` fields of the entity are kept (RFC 8551 §3.1: the inner entity is a MIME body part);
    anything else an agent put there (OpenSSL signs ``MIME-Version`` along) cannot override the outer header.
    """
    _, inner = canon.split_entity(canon.to_crlf(entity))
    return outer + b"MIME-Version: 1.0\r\n" + inner


def _sender(outer: bytes) -> str:
    try:
        return sender_address(outer)
    except Exception:  # missing, several or unparseable From: verify reports it when it matters
        return ""


def _classify(message: bytes) -> Kind:
    """RFC 8551 §3.2.2 / §3.5: which S/MIME layer the top-level entity of ``message`` is."""
    header, _ = canon.split_header_body(message)
    mime_type, params = canon.content_type(header)
    if mime_type == "multipart/signed":
        return "signed"
    if not is_pkcs7_mime(mime_type, params):
        return "plain"
    smime_type = params.get("smime-type", "").lower()
    if smime_type == "signed-data":
        return "signed"
    if smime_type in ("enveloped-data", "authenveloped-data"):
        return "enveloped"
    if smime_type in ("compressed-data", "certs-only"):
        raise _UnsupportedLayer(f"application/pkcs7-mime; smime-type={smime_type} is not supported")
    # No (or an unknown) smime-type: the CMS content type decides, as RFC 8551 §3.2.2 notes agents must cope.
    try:
        content_type = cms.ContentInfo.load(pkcs7_mime_body(message))["content_type"].native
    except Exception as exc:
        raise _UnsupportedLayer(f"application/pkcs7-mime body is not a CMS ContentInfo ({exc})") from exc
    if content_type == "signed_data":
        return "signed"
    if content_type in ("enveloped_data", "authenticated_enveloped_data"):
        return "enveloped"
    raise _UnsupportedLayer(f"application/pkcs7-mime with CMS content type {content_type!r} is not supported")


def _report(state: _Opening, failure: Status | None = None, detail: str = "") -> SmimeResult:
    """Fold the layers into one result (see :func:`open_message` for the precedence)."""
    result = SmimeResult(Status.UNSIGNED, from_address=state.from_address, content=state.entity)
    if state.decryptions:
        result.encrypted = True
        result.encryption_algorithm = state.decryptions[-1].algorithm
        result.integrity_protected = all(d.integrity_protected for d in state.decryptions)
        for decrypted in state.decryptions:
            if not decrypted.integrity_protected:
                result.warnings.append(_CBC_WARNING.format(algorithm=decrypted.algorithm))
    layers = state.signatures
    for layer in layers:
        result.signers.extend(layer.signers)
        result.warnings.extend(w for w in layer.warnings if w not in result.warnings)
        if layer.from_address and not result.from_address:
            result.from_address = layer.from_address
    if failure is not None:
        result.status, result.detail = failure, detail
        result.signer = next((layer.signer for layer in reversed(layers) if layer.signer), None)
        result.content = state.entity if state.opened else b""
        return result
    if not layers:
        result.detail = "the message is not signed"
        if result.encrypted:
            result.detail += f" (decrypted, {result.encryption_algorithm})"
        return result
    innermost = layers[-1]
    failing = [layer for layer in layers if layer.status is not Status.VALID]
    primary = innermost if innermost.status is not Status.VALID else (failing[0] if failing else innermost)
    result.status = primary.status
    result.signer = primary.signer
    result.detail = primary.detail
    if len(layers) > 1 and primary.status is not Status.VALID:
        number = next(index for index, layer in enumerate(layers, 1) if layer is primary)
        position = "innermost" if primary is innermost else f"layer {number} of {len(layers)}"
        result.detail = f"{position} signature: {primary.detail}" if primary.detail else f"{position} signature"
    return result
