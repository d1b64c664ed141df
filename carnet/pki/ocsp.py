"""OCSP responder for carnet's authorities (RFC 6960).

Each CA answers for the certificates it issued — the issuing CAs for end entities, the root for the issuing CAs —
and signs its responses with its own key, the case RFC 6960 §4.2.2.2 lists first ("the CA who issued the
certificate in question"); the CA certificate is included in ``certs`` (§4.2.1) so that clients need only the root.

- Request (§4.1): the CertID's issuerNameHash / issuerKeyHash (SHA-1 or the SHA-2 family) select the CA;
  ``unauthorized`` (§2.3) when none of ours matches. An unparsable request is ``malformedRequest``, as is a nonce
  longer than 32 octets (RFC 8954 §2.1). A request naming several certificates is answered ``malformedRequest``
  too: every client we know asks for one at a time.
- Response (§4.2.1): BasicOCSPResponse, responderID byKey, producedAt now, one SingleResponse with certStatus
  ``good``, ``revoked`` (revocationTime and, unless unspecified, revocationReason as on the CRL) or ``unknown`` (a
  serial this CA never issued, §2.2), thisUpdate now, nextUpdate now + ``settings.pki.revocation_validity_hours``
  — the CRL's interval — and the request's nonce echoed (§4.4.1). Signature: SHA-256.
- A database failure is ``tryLater``, anything unexpected ``internalError`` (§2.3), never a traceback.

Transport (GET and POST, Appendix A) is :mod:`carnet.pki.http`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from sqlalchemy.exc import SQLAlchemyError

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.pki import authority
from carnet.pki.profiles import AUTHORITY_NAMES, InvalidRequest, Issuer

log = logging.getLogger(__name__)

#: Larger than any single-certificate request, even signed with a certificate chain (RFC 6960 §4.1.1).
MAX_REQUEST_BYTES: Final = 16 * 1024
#: RFC 8954 §2.1: nonces of 1 to 32 octets.
MAX_NONCE_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class OcspAnswer:
    """A DER OCSPResponse and what it says, for logs and HTTP caching."""

    der: bytes
    response_status: str  # "successful", "malformedRequest", "unauthorized", "tryLater", "internalError"
    cert_status: str | None = None  # "good", "revoked", "unknown" when successful
    next_update: datetime | None = None


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> OcspAnswer:
    der = ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)
    return OcspAnswer(der, _STATUS_NAMES[status])


_STATUS_NAMES: Final = {
    ocsp.OCSPResponseStatus.SUCCESSFUL: "successful",
    ocsp.OCSPResponseStatus.MALFORMED_REQUEST: "malformedRequest",
    ocsp.OCSPResponseStatus.INTERNAL_ERROR: "internalError",
    ocsp.OCSPResponseStatus.TRY_LATER: "tryLater",
    ocsp.OCSPResponseStatus.SIG_REQUIRED: "sigRequired",
    ocsp.OCSPResponseStatus.UNAUTHORIZED: "unauthorized",
}


def issuer_key_hash(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    """Hash of the BIT STRING value of the CA's subjectPublicKey (RFC 6960 §4.1.1, issuerKeyHash)."""
    public_key = certificate.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        key_bits = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        key_bits = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    else:
        raise UnsupportedAlgorithm(f"CA key of type {type(public_key).__name__}")
    return _digest(algorithm, key_bits)


def issuer_name_hash(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    """Hash of the DER of the CA's subject name (RFC 6960 §4.1.1, issuerNameHash)."""
    return _digest(algorithm, certificate.subject.public_bytes())


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    digest = hashes.Hash(type(algorithm)())
    digest.update(data)
    return digest.finalize()


@dataclass(frozen=True, slots=True)
class _Query:
    """The parts of an OCSPRequest (RFC 6960 §4.1.1) the responder uses."""

    name_hash: bytes
    key_hash: bytes
    algorithm: hashes.HashAlgorithm
    serial: int
    nonce: bytes | None


def parse_request(der: bytes) -> _Query:
    """Parse an OCSPRequest; ``ValueError`` when it is malformed, unsupported, or its nonce is too long."""
    if len(der) > MAX_REQUEST_BYTES:
        raise ValueError("OCSP request too large")
    try:
        request = ocsp.load_der_ocsp_request(der)
        query = _Query(
            request.issuer_name_hash,
            request.issuer_key_hash,
            request.hash_algorithm,
            request.serial_number,
            _nonce(request),
        )
    except (ValueError, TypeError, NotImplementedError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"malformed or unsupported OCSP request: {exc}") from None
    if query.nonce is not None and not 1 <= len(query.nonce) <= MAX_NONCE_BYTES:
        raise ValueError("OCSP nonce must be 1 to 32 octets (RFC 8954 §2.1)")
    return query


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


class OcspResponder:
    """Answers OCSP requests for the authorities of one database; CA keys are opened once and kept."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._issuers: dict[str, Issuer] = {}

    def __repr__(self) -> str:
        return f"<OcspResponder {self._settings.domain}>"

    async def respond(self, request_der: bytes, *, now: datetime | None = None) -> OcspAnswer:
        """The DER OCSPResponse to ``request_der`` — always a response, never an exception."""
        try:
            query = parse_request(request_der)
        except ValueError as exc:
            log.info("OCSP: %s", exc)
            return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        try:
            return await self._answer(query, now or utcnow())
        except authority.NotInitialised:
            return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("OCSP: database unavailable (%s)", type(exc).__name__)
            return _unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
        except Exception:
            log.exception("OCSP: internal error")
            return _unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR)

    async def _issuer_for(self, query: _Query) -> Issuer | None:
        certificates = await authority.authority_certificates(self._db)
        for name in AUTHORITY_NAMES:
            certificate = certificates.get(name)
            if (
                certificate is not None
                and issuer_key_hash(certificate, query.algorithm) == query.key_hash
                and issuer_name_hash(certificate, query.algorithm) == query.name_hash
            ):
                if name not in self._issuers:
                    self._issuers[name] = await authority.load_issuer(self._db, self._settings, name)
                return self._issuers[name]
        return None

    async def _answer(self, query: _Query, now: datetime) -> OcspAnswer:
        issuer = await self._issuer_for(query)
        if issuer is None:
            return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        this_update = now.replace(microsecond=0)
        next_update = this_update + timedelta(hours=self._settings.pki.revocation_validity_hours)
        record = await _issued_by(self._db, issuer.name, query.serial)
        status, revoked_at, reason = _status_of(record, this_update)
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=query.name_hash,
                issuer_key_hash=query.key_hash,
                serial_number=query.serial,
                algorithm=query.algorithm,
                cert_status=status,
                this_update=this_update,
                next_update=next_update,
                revocation_time=revoked_at,
                revocation_reason=reason,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.certificate)
            .certificates([issuer.certificate])
        )
        if query.nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(query.nonce), critical=False)
        response = builder.sign(issuer.key, hashes.SHA256())
        cert_status = status.name.lower()
        log.info("OCSP: CA %s serial %x: %s", issuer.name, query.serial, cert_status)
        return OcspAnswer(response.public_bytes(serialization.Encoding.DER), "successful", cert_status, next_update)


async def _issued_by(db: Database, ca_name: str, serial: int) -> authority.CertificateRecord | None:
    try:
        record = await authority.get_certificate(db, authority.serial_hex(serial))
    except (authority.UnknownCertificate, InvalidRequest):  # a serial we could never have issued
        return None
    return record if record.authority == ca_name else None


def _status_of(
    record: authority.CertificateRecord | None, now: datetime
) -> tuple[ocsp.OCSPCertStatus, datetime | None, x509.ReasonFlags | None]:
    """certStatus of RFC 6960 §2.2: unknown when not ours, revoked with time and reason, else good."""
    if record is None:
        return ocsp.OCSPCertStatus.UNKNOWN, None, None
    if record.revoked_at is not None and record.revoked_at <= now:
        reason = x509.ReasonFlags(record.revocation_reason or "unspecified")
        return (
            ocsp.OCSPCertStatus.REVOKED,
            record.revoked_at,
            None if reason is x509.ReasonFlags.unspecified else reason,
        )
    return ocsp.OCSPCertStatus.GOOD, None, None
