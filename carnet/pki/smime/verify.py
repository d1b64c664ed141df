"""S/MIME signature verification: CMS SignedData (RFC 5652 §5) inside RFC 8551 §3.5 messages.

Implemented:

- ``multipart/signed`` (RFC 1847 §2.1, RFC 8551 §3.5.3) split on the raw bytes, with ``protocol``
  ``application/pkcs7-signature`` or ``application/x-pkcs7-signature``; ``micalg`` is informative only: any
  spelling (``sha-256``, ``sha256``, ``SHA-256``) or none is accepted, a mismatch with the signer's digest
  becomes a warning. Opaque ``application/pkcs7-mime; smime-type=signed-data`` (RFC 8551 §3.5.2), also with
  ``x-pkcs7-mime`` and the ``application/octet-stream`` + ``.p7m`` spelling of RFC 8551 §3.2.1.
- The message is brought to canonical CRLF form first (RFC 8551 §3.1.1), so a message saved with bare LF
  still verifies. Content signed in a non-canonical form (e.g. ``openssl cms -binary`` over bare LF) does not.
- Every ``SignerInfo`` (RFC 5652 §5.3) is checked: signer found by ``IssuerAndSerialNumber`` or
  ``SubjectKeyIdentifier`` among the certificates of the message; digest SHA-256/384/512; signature
  RSASSA-PKCS1-v1_5 (``rsaEncryption`` or ``sha*WithRSAEncryption``), RSASSA-PSS with its parameters
  (RFC 4056 §2–3) or ECDSA (``ecdsa-with-SHA*``, or ``id-ecPublicKey`` as some agents write); with signed
  attributes, the signature over their DER ``SET OF`` (RFC 5652 §5.4), then exactly one content-type equal to
  ``eContentType`` and one message-digest equal to the content's digest (RFC 5652 §11.1–11.2); without
  signed attributes, the signature over the content (only for id-data, RFC 5652 §5.3).
- Chain validation by :class:`.validation.ChainValidator`, and the signer ↔ From binding of RFC 8550 §3 by
  :mod:`.binding`. The validation time is ``at`` (default: now); the signer-asserted signing-time is reported,
  never trusted.

Status of one signer, first failing check wins: unparseable or unsupported → ``MALFORMED``; signature value →
``BAD_SIGNATURE``; content-type or message-digest attribute differs → ``TAMPERED``; chain → ``UNTRUSTED``,
``EXPIRED``, ``NOT_YET_VALID``, ``REVOKED``, ``WRONG_USAGE``; otherwise valid, and ``FROM_MISMATCH`` when it does
not bind to From. The message is ``VALID`` when one valid signer binds; ``FROM_MISMATCH`` when valid signers
exist but none binds; otherwise the most serious signer status (revoked, tampered, bad signature, wrong usage,
expired, not yet valid, untrusted, malformed). Nothing raises out of :func:`verify_message`.

Performance: the SignedData structure is read with asn1crypto, but the signed attributes, which are DER by
definition, are walked with a small definite-length reader, algorithm identifiers are memoised by their DER,
and certificates come from the validator's parse cache; a warm verification is a few hundred microseconds.

Not implemented: counter-signatures and timestamps (unsigned attributes are ignored), ``SignedData`` with
attribute certificates, CRLs carried in the message (revocation comes from the local store only), signed
receipts (RFC 2634), triple wrapping (see ``open.py``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime

from asn1crypto import algos, cms, core
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .asn1util import (
    HASH_OF_SIGNATURE_ALGORITHM,
    HASHES,
    ID_EC_PUBLIC_KEY,
    der_elements,
    der_length,
    normalise_micalg,
    read_tlv,
)
from .binding import BindingError, sender_address_of
from .canon import (
    content_type_of,
    decode_transfer_encoding,
    header_fields,
    split_entity,
    split_header_body,
    split_multipart_signed,
    to_crlf,
)
from .result import SignerInfo, SmimeResult, Status
from .validation import CertificateInfo, ChainValidator

_ID_DATA = "1.2.840.113549.1.7.1"
_SIGNATURE_TYPES = {"application/pkcs7-signature", "application/x-pkcs7-signature"}
_MIME_TYPES = {"application/pkcs7-mime", "application/x-pkcs7-mime"}
#: Most to least serious, to pick the message status when no signer is valid.
_SEVERITY = (
    Status.REVOKED,
    Status.TAMPERED,
    Status.BAD_SIGNATURE,
    Status.WRONG_USAGE,
    Status.EXPIRED,
    Status.NOT_YET_VALID,
    Status.UNTRUSTED,
    Status.MALFORMED,
)


@dataclass(frozen=True, slots=True)
class VerifyLimits:
    """Resource limits; input beyond them is ``MALFORMED`` without further parsing."""

    max_message_size: int = 50 * 1024 * 1024
    max_signers: int = 16
    max_certificates: int = 32
    max_header_size: int = 256 * 1024
    max_header_fields: int = 1000


DEFAULT_LIMITS = VerifyLimits()


class MalformedError(ValueError):
    """The CMS or MIME structure cannot be used; becomes :attr:`Status.MALFORMED`."""


class _SignerFailure(Exception):
    """One signer failed a check (internal control flow)."""

    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(slots=True)
class _SignedData:
    """The parts of a parsed SignedData the per-signer checks need."""

    econtent_type: str
    econtent_type_der: bytes  # contents octets of the eContentType OID
    content: bytes
    certificates: list[CertificateInfo]
    signer_infos: list[cms.SignerInfo]
    certificate_errors: list[str] = field(default_factory=list)
    digests: dict[str, bytes] = field(default_factory=dict)

    def digest(self, name: str) -> bytes:
        if name not in self.digests:
            self.digests[name] = hashlib.new(name, self.content).digest()
        return self.digests[name]


def _parse_signed_data(
    der: bytes, content: bytes | None, validator: ChainValidator, limits: VerifyLimits
) -> _SignedData:
    """RFC 5652 §3 ContentInfo → §5.1 SignedData, with limits; raises :class:`MalformedError`."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        kind = info["content_type"].native
        if kind != "signed_data":
            raise MalformedError(f"CMS content type is {kind}, not signed-data")
        signed_data = info["content"]
        encap = signed_data["encap_content_info"]
        econtent_type = encap["content_type"].dotted
        econtent_type_der = encap["content_type"].contents
        econtent = encap["content"]
        econtent_bytes = None if isinstance(econtent, core.Void) else bytes(econtent)
        choices = _certificate_encodings(signed_data["certificates"])
        signer_infos = list(signed_data["signer_infos"])
    except MalformedError:
        raise
    except Exception as exc:
        raise MalformedError(f"CMS does not parse: {exc}") from None
    if len(choices) > limits.max_certificates:
        raise MalformedError(f"{len(choices)} certificates in SignedData (limit {limits.max_certificates})")
    if len(signer_infos) > limits.max_signers:
        raise MalformedError(f"{len(signer_infos)} SignerInfos (limit {limits.max_signers})")
    if econtent_bytes is not None and content is not None:
        raise MalformedError("SignedData encapsulates content but detached content was given too")
    if econtent_bytes is None and content is None:
        raise MalformedError("detached SignedData and no content to verify")
    certificates, errors = _certificates(choices, validator)
    signed = econtent_bytes if econtent_bytes is not None else content
    assert signed is not None
    return _SignedData(econtent_type, econtent_type_der, signed, certificates, signer_infos, errors)


def _certificate_encodings(field: cms.CertificateSet | core.Void) -> list[bytes]:
    """DER of each X.509 ``Certificate`` choice of ``certificates`` (RFC 5652 §10.2.2); other choices skipped.

    The usual DER set is sliced directly; a BER (indefinite-length) set goes through asn1crypto.
    """
    if isinstance(field, core.Void):
        return []
    contents = field.contents
    encodings: list[bytes] = []
    pos = 0
    try:
        while pos < len(contents):
            tag, _start, end = read_tlv(contents, pos)
            if tag == 0x30:
                encodings.append(contents[pos:end])
            pos = end
    except ValueError:
        return [choice.chosen.dump() for choice in field if choice.name == "certificate"]
    return encodings


def _certificates(encodings: list[bytes], validator: ChainValidator) -> tuple[list[CertificateInfo], list[str]]:
    """Parse (through the validator's cache) the certificates of the message."""
    parsed: list[CertificateInfo] = []
    errors: list[str] = []
    for encoding in encodings:
        try:
            parsed.append(validator.certificates.get(encoding))
        except Exception as exc:
            errors.append(f"unparseable certificate: {exc}")
    return parsed, errors


def _find_signer(sid: cms.SignerIdentifier, certificates: list[CertificateInfo]) -> CertificateInfo | None:
    """RFC 5652 §5.3 ``sid``: IssuerAndSerialNumber (exact DER, then normalised name match) or SubjectKeyIdentifier."""
    if sid.name == "subject_key_identifier":
        ski = sid.chosen.native
        return next((c for c in certificates if c.subject_key_identifier == ski), None)
    encoded = sid.chosen.dump()
    for cert in certificates:
        if cert.issuer_and_serial == encoded:
            return cert
    issuer = sid.chosen["issuer"]
    serial = sid.chosen["serial_number"].native
    for cert in certificates:
        if cert.serial == serial and cert.asn1.issuer == issuer:
            return cert
    return None


def _describe(result: SignerInfo, cert: CertificateInfo) -> None:
    """Copy the signer certificate's identity into ``result``."""
    result.subject = cert.subject
    result.common_name = cert.common_name
    result.emails = list(cert.binding_emails)
    result.national_id = cert.national_id
    result.serial = format(cert.serial, "x")
    result.issuer = cert.issuer
    result.fingerprint_sha256 = cert.fingerprint


@dataclass(frozen=True, slots=True)
class _Scheme:
    """How to check one signature value."""

    family: str  # "rsassa_pkcs1v15", "rsassa_pss", "ecdsa"
    hash_name: str
    pss_salt: int = 0
    mgf_hash: str = ""


@functools.lru_cache(maxsize=64)
def _digest_name(algorithm_der: bytes) -> str:
    """Name of a DigestAlgorithmIdentifier (memoised by its DER: senders use a handful of encodings)."""
    return str(algos.DigestAlgorithm.load(algorithm_der)["algorithm"].native)


@functools.lru_cache(maxsize=64)
def _scheme(algorithm_der: bytes, digest_name: str) -> _Scheme:
    """RFC 3370 §3.2, RFC 4056 §2–3, RFC 5754 §3, RFC 5753 §7.1.3: the signature algorithm and its hash.

    Memoised by the DER of the AlgorithmIdentifier; failures raise and are not cached.
    """
    algorithm = algos.SignedDigestAlgorithm.load(algorithm_der)
    name = algorithm["algorithm"].native
    if name == "rsassa_pkcs1v15":
        return _Scheme("rsassa_pkcs1v15", digest_name)
    if name in ("ecdsa", ID_EC_PUBLIC_KEY):
        return _Scheme("ecdsa", digest_name)
    if name in HASH_OF_SIGNATURE_ALGORITHM:
        implied = HASH_OF_SIGNATURE_ALGORITHM[name]
        if implied != digest_name:
            raise _SignerFailure(Status.MALFORMED, f"signature algorithm {name} does not match digest {digest_name}")
        return _Scheme("ecdsa" if name.endswith("ecdsa") else "rsassa_pkcs1v15", implied)
    if name == "rsassa_pss":
        return _pss_scheme(algorithm["parameters"])
    raise _SignerFailure(Status.MALFORMED, f"unsupported signature algorithm {name}")


def _pss_scheme(params: algos.RSASSAPSSParams | core.Void) -> _Scheme:
    """RFC 4056 §2: explicit RSASSA-PSS-params; SHA-1 defaults (absent parameters) are refused."""
    if isinstance(params, core.Void) or params.native is None:
        raise _SignerFailure(Status.MALFORMED, "RSASSA-PSS without parameters (SHA-1 defaults refused)")
    hash_name = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise _SignerFailure(Status.MALFORMED, f"unsupported PSS mask generation {mgf['algorithm'].native}")
    mgf_hash = mgf["parameters"]["algorithm"].native
    if hash_name not in HASHES or mgf_hash not in HASHES:
        raise _SignerFailure(Status.MALFORMED, f"unsupported PSS hash {hash_name}/{mgf_hash}")
    if params["trailer_field"].native != "trailer_field_bc":
        raise _SignerFailure(Status.MALFORMED, "unsupported PSS trailer field")
    return _Scheme("rsassa_pss", hash_name, int(params["salt_length"].native), mgf_hash)


def _verify_signature(cert: CertificateInfo, scheme: _Scheme, signature: bytes, data: bytes, prehashed: bool) -> None:
    """Check ``signature`` over ``data`` (or over the digest ``data`` when ``prehashed``) with the signer's key."""
    algorithm = HASHES[scheme.hash_name]()
    chosen = utils.Prehashed(algorithm) if prehashed else algorithm
    key = cert.public_key
    try:
        if scheme.family == "ecdsa":
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise _SignerFailure(Status.MALFORMED, "ECDSA signature but the certificate key is not EC")
            key.verify(signature, data, ec.ECDSA(chosen))
            return
        if not isinstance(key, rsa.RSAPublicKey):
            raise _SignerFailure(Status.MALFORMED, "RSA signature but the certificate key is not RSA")
        if scheme.family == "rsassa_pss":
            pss = padding.PSS(mgf=padding.MGF1(HASHES[scheme.mgf_hash]()), salt_length=scheme.pss_salt)
            key.verify(signature, data, pss, chosen)
        else:
            key.verify(signature, data, padding.PKCS1v15(), chosen)
    except InvalidSignature:
        raise _SignerFailure(Status.BAD_SIGNATURE, "signature value does not verify with the signer's key") from None
    except (ValueError, TypeError) as exc:
        raise _SignerFailure(Status.BAD_SIGNATURE, f"the signature value cannot be checked: {exc}") from None


#: DER contents of the attribute type OIDs checked (RFC 5652 §11.1–11.3).
_CONTENT_TYPE_OID = bytes.fromhex("2a864886f70d010903")
_MESSAGE_DIGEST_OID = bytes.fromhex("2a864886f70d010904")
_SIGNING_TIME_OID = bytes.fromhex("2a864886f70d010905")
_CHECKED_ATTRIBUTES = {
    _CONTENT_TYPE_OID: "content-type",
    _MESSAGE_DIGEST_OID: "message-digest",
    _SIGNING_TIME_OID: "signing-time",
}


def _attribute_values(attributes: bytes) -> dict[bytes, tuple[int, bytes, bytes]]:
    """Walk the DER ``SET OF Attribute`` contents: OID → (tag, contents, encoding) of its single value.

    Signed attributes are DER by definition (RFC 5652 §5.3), so a small definite-length walker suffices and
    spares a full asn1crypto parse of every attribute (SMIMECapabilities included) on the hot path.
    """
    values: dict[bytes, tuple[int, bytes, bytes]] = {}
    for tag, start, end in der_elements(attributes):
        if tag != 0x30:
            raise _SignerFailure(Status.MALFORMED, "signed attribute is not a SEQUENCE")
        parts = der_elements(attributes, start, end)
        if len(parts) != 2 or parts[0][0] != 0x06 or parts[1][0] != 0x31:
            raise _SignerFailure(Status.MALFORMED, "signed attribute is not (type, SET OF value)")
        oid = attributes[parts[0][1] : parts[0][2]]
        if oid not in _CHECKED_ATTRIBUTES:
            continue
        items = der_elements(attributes, parts[1][1], parts[1][2])
        if oid in values or len(items) != 1:
            raise _SignerFailure(
                Status.MALFORMED, f"{_CHECKED_ATTRIBUTES[oid]} attribute must occur once with one value"
            )
        value_tag, value_start, value_end = items[0]
        header_start = parts[1][1]
        values[oid] = (value_tag, attributes[value_start:value_end], attributes[header_start:value_end])
    return values


def _check_signed_attributes(attributes: bytes, signed: _SignedData, digest_name: str) -> datetime | None:
    """RFC 5652 §5.3, §11.1–11.3: one content-type = eContentType, one message-digest = digest of the content."""
    values = _attribute_values(attributes)
    if _CONTENT_TYPE_OID not in values or _MESSAGE_DIGEST_OID not in values:
        raise _SignerFailure(Status.MALFORMED, "signed attributes lack content-type or message-digest")
    tag, content_type, _ = values[_CONTENT_TYPE_OID]
    if tag != 0x06 or content_type != signed.econtent_type_der:
        raise _SignerFailure(Status.TAMPERED, "content-type attribute differs from the encapsulated content type")
    tag, digest, _ = values[_MESSAGE_DIGEST_OID]
    if tag != 0x04 or not hmac.compare_digest(digest, signed.digest(digest_name)):
        raise _SignerFailure(Status.TAMPERED, "message digest mismatch: the content changed after signing")
    if _SIGNING_TIME_OID not in values:
        return None
    tag, _, encoding = values[_SIGNING_TIME_OID]
    if tag not in (0x17, 0x18):
        raise _SignerFailure(Status.MALFORMED, "signing-time is neither UTCTime nor GeneralizedTime")
    return cms.Time.load(encoding).native


def _check_signer_crypto(signer_info: cms.SignerInfo, signed: _SignedData, result: SignerInfo) -> CertificateInfo:
    """Everything but the chain for one SignerInfo; fills ``result`` and raises :class:`_SignerFailure`."""
    cert = _find_signer(signer_info["sid"], signed.certificates)
    if cert is None:
        detail = "signer certificate not included in the message"
        if signed.certificate_errors:
            raise _SignerFailure(Status.MALFORMED, f"{detail} ({'; '.join(signed.certificate_errors)})")
        raise _SignerFailure(Status.UNTRUSTED, detail)
    _describe(result, cert)
    digest_name = _digest_name(signer_info["digest_algorithm"].dump())
    result.digest_algorithm = digest_name
    if digest_name not in HASHES:
        raise _SignerFailure(Status.MALFORMED, f"unsupported digest algorithm {digest_name}")
    scheme = _scheme(signer_info["signature_algorithm"].dump(), digest_name)
    result.signature_algorithm = scheme.family
    signature = signer_info["signature"].native
    attributes = signer_info["signed_attrs"]
    if isinstance(attributes, core.Void):
        if signed.econtent_type != _ID_DATA:
            raise _SignerFailure(Status.MALFORMED, "signed attributes are required for non-data content")
        prehash = scheme.hash_name == digest_name
        data = signed.digest(digest_name) if prehash else signed.content
        _verify_signature(cert, scheme, signature, data, prehash)
        return cert
    contents = attributes.contents
    _verify_signature(cert, scheme, signature, b"\x31" + der_length(len(contents)) + contents, False)
    result.signing_time = _check_signed_attributes(contents, signed, digest_name)
    return cert


async def _check_signer(
    signer_info: cms.SignerInfo, signed: _SignedData, validator: ChainValidator, at: datetime | None
) -> SignerInfo:
    result = SignerInfo(status=Status.VALID, revocation="not_checked")
    try:
        cert = _check_signer_crypto(signer_info, signed, result)
    except _SignerFailure as failure:
        result.status, result.detail = failure.status, failure.detail
        return result
    except Exception as exc:
        result.status, result.detail = Status.MALFORMED, f"SignerInfo does not parse: {exc}"
        return result
    others = [c for c in signed.certificates if c is not cert]
    chain = await validator.validate_info(cert, others, at=at)
    result.status = chain.status
    result.detail = chain.detail
    result.chain = list(chain.chain)
    result.chain_status = chain.chain_status
    result.revocation = chain.revocation
    return result


async def verify_signed_data(
    cms_der: bytes,
    content: bytes | None,
    validator: ChainValidator,
    *,
    at: datetime | None = None,
    limits: VerifyLimits = DEFAULT_LIMITS,
) -> tuple[list[SignerInfo], bytes]:
    """Verify a DER (or BER) ``ContentInfo(SignedData)`` (RFC 5652 §5.6): one :class:`SignerInfo` per signer.

    ``content`` is the detached content, or None when it is encapsulated. Returns the signers and the content
    that was verified. Raises :class:`MalformedError` when the structure itself is unusable.
    """
    signed = _parse_signed_data(cms_der, content, validator, limits)
    signers = [await _check_signer(si, signed, validator, at) for si in signed.signer_infos]
    return signers, signed.content


async def verify_message(
    message: bytes,
    validator: ChainValidator,
    *,
    at: datetime | None = None,
    check_from: bool = True,
    limits: VerifyLimits = DEFAULT_LIMITS,
) -> SmimeResult:
    """Verify a signed RFC 5322 message (RFC 8551 §3.5.2–3.5.3); unsigned → ``UNSIGNED``. Never raises."""
    try:
        return await _verify_message(message, validator, at, check_from, limits)
    except ValueError as exc:  # MalformedError, MimeError and parser errors
        return SmimeResult(Status.MALFORMED, detail=str(exc)[:500])
    except Exception as exc:  # the boundary: no input may raise out of verify_message
        return SmimeResult(Status.MALFORMED, detail=f"{type(exc).__name__}: {exc}"[:500])


async def _verify_message(
    message: bytes, validator: ChainValidator, at: datetime | None, check_from: bool, limits: VerifyLimits
) -> SmimeResult:
    if not isinstance(message, bytes | bytearray | memoryview):
        raise MalformedError(f"message must be bytes, not {type(message).__name__}")
    if len(message) > limits.max_message_size:
        raise MalformedError(f"message of {len(message)} bytes exceeds the {limits.max_message_size} byte limit")
    message = to_crlf(bytes(message))
    if message.startswith(b"From "):
        message = message[message.find(b"\n") + 1 :]  # an mbox separator line, not a header field
    header_block, body = split_header_body(message)
    if len(header_block) > limits.max_header_size:
        raise MalformedError(f"header block exceeds {limits.max_header_size} bytes")
    fields = header_fields(header_block)
    if len(fields) > limits.max_header_fields:
        raise MalformedError(f"more than {limits.max_header_fields} header fields")
    mime_type, params = content_type_of(fields)
    warnings: list[str] = []
    if mime_type == "multipart/signed":
        signers, content = await _verify_detached(body, params, validator, at, limits, warnings)
    elif _is_opaque(mime_type, params):
        signers, content = await _verify_opaque(fields, body, params, validator, at, limits)
    else:
        entity = split_entity(message)[1]
        return SmimeResult(Status.UNSIGNED, content=entity, from_address=_best_effort_from(fields))
    return _conclude(signers, content, fields, check_from, warnings)


def _is_opaque(mime_type: str, params: dict[str, str]) -> bool:
    if mime_type in _MIME_TYPES:
        return True
    name = params.get("name", "").lower()
    return mime_type == "application/octet-stream" and name.endswith(".p7m")


async def _verify_detached(
    body: bytes,
    params: dict[str, str],
    validator: ChainValidator,
    at: datetime | None,
    limits: VerifyLimits,
    warnings: list[str],
) -> tuple[list[SignerInfo], bytes]:
    """RFC 8551 §3.5.3: the first part is the signed content, the second the signature."""
    protocol = params.get("protocol", "").strip().lower()
    if protocol and protocol not in _SIGNATURE_TYPES:
        raise MalformedError(f"multipart/signed protocol {protocol!r} is not S/MIME")
    boundary = params.get("boundary")
    if not boundary:
        raise MalformedError("multipart/signed without boundary")
    signed_part, signature_part = split_multipart_signed(body, boundary)
    sig_headers, sig_body = split_header_body(signature_part)
    sig_fields = header_fields(sig_headers)
    sig_type, _ = content_type_of(sig_fields)
    if sig_type not in _SIGNATURE_TYPES:
        raise MalformedError(f"second part of multipart/signed is {sig_type}, not application/pkcs7-signature")
    der = decode_transfer_encoding(sig_body, _cte(sig_fields))
    signers, content = await verify_signed_data(der, signed_part, validator, at=at, limits=limits)
    micalg = params.get("micalg")
    if micalg:
        announced = {normalise_micalg(m) for m in micalg.split(",")}
        used = {s.digest_algorithm for s in signers if s.digest_algorithm}
        if used - announced:
            warnings.append(f"micalg {micalg!r} does not announce {', '.join(sorted(used - announced))}")
    return signers, content


async def _verify_opaque(
    fields: list[tuple[str, bytes]],
    body: bytes,
    params: dict[str, str],
    validator: ChainValidator,
    at: datetime | None,
    limits: VerifyLimits,
) -> tuple[list[SignerInfo], bytes]:
    """RFC 8551 §3.5.2: ``application/pkcs7-mime; smime-type=signed-data`` encapsulating the content."""
    smime_type = params.get("smime-type", "").strip().lower()
    if smime_type and smime_type != "signed-data":
        raise MalformedError(f"smime-type {smime_type} is not signed-data (enveloped content: use open_message)")
    der = decode_transfer_encoding(body, _cte(fields))
    return await verify_signed_data(der, None, validator, at=at, limits=limits)


def _cte(fields: list[tuple[str, bytes]]) -> str:
    values = [v for n, v in fields if n == "content-transfer-encoding"]
    return values[0].decode("ascii", "replace") if values else "7bit"


def _best_effort_from(fields: list[tuple[str, bytes]]) -> str:
    try:
        return sender_address_of(fields)
    except BindingError:
        return ""


def _conclude(
    signers: list[SignerInfo], content: bytes, fields: list[tuple[str, bytes]], check_from: bool, warnings: list[str]
) -> SmimeResult:
    """Combine the signers into the message status (see module docstring)."""
    if not signers:
        return SmimeResult(Status.MALFORMED, detail="SignedData has no SignerInfo", content=content)
    from_address, binding_error = "", ""
    try:
        from_address = sender_address_of(fields)
    except BindingError as exc:
        binding_error = str(exc)
    warnings.extend(s.detail for s in signers if s.status is Status.VALID and s.detail)
    valid = [s for s in signers if s.status is Status.VALID]
    if valid and check_from:
        for signer in valid:
            if binding_error or from_address not in signer.emails:
                signer.status = Status.FROM_MISMATCH
                signer.detail = binding_error or (
                    f"From {from_address} is not an address of the signer certificate ({', '.join(signer.emails)})"
                )
        bound = [s for s in valid if s.status is Status.VALID]
        chosen = bound[0] if bound else valid[0]
        status, detail = (Status.VALID, "") if bound else (Status.FROM_MISMATCH, chosen.detail)
        return SmimeResult(status, detail, signers, chosen, from_address, content=content, warnings=warnings)
    if valid:
        return SmimeResult(Status.VALID, "", signers, valid[0], from_address, content=content, warnings=warnings)
    worst = min(signers, key=lambda s: _SEVERITY.index(s.status) if s.status in _SEVERITY else len(_SEVERITY))
    return SmimeResult(worst.status, worst.detail, signers, worst, from_address, content=content, warnings=warnings)
