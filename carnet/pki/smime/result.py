"""The one result type of every S/MIME check (verify, decrypt, open).

No input raises out of the S/MIME API: every outcome, from a valid signature to random bytes, is a
:class:`SmimeResult` with one :class:`Status`. The gateway stores it with the message and renders it as the
``Carnet-Signature`` header; the CLI prints :meth:`SmimeResult.to_dict` as JSON.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


class Status(enum.StrEnum):
    """Outcome of opening or verifying a message (most to least favourable is not implied)."""

    VALID = "valid"  # at least one signer's signature verifies, its chain is trusted, it binds to From
    UNSIGNED = "unsigned"  # no signature at all (possibly decrypted fine)
    BAD_SIGNATURE = "bad_signature"  # the signature value does not verify with the signer's key
    TAMPERED = "tampered"  # signature fine but the content digest differs: content changed after signing
    #: No path to a configured trust anchor (unknown CA, self-signed, …), or, under hard-fail, no fresh
    #: revocation information for a certificate of the path (``revocation="unknown"``).
    UNTRUSTED = "untrusted"
    EXPIRED = "expired"  # a certificate of the chain had expired at validation time
    NOT_YET_VALID = "not_yet_valid"  # a certificate of the chain was not yet valid at validation time
    REVOKED = "revoked"  # a certificate of the chain has a revocation entry (CRL or OCSP)
    WRONG_USAGE = "wrong_usage"  # key usage / EKU emailProtection missing
    FROM_MISMATCH = "from_mismatch"  # signature valid, but From is missing, ambiguous or not the signer's
    MALFORMED = "malformed"  # not parseable as MIME/CMS, limits exceeded, unsupported structure
    DECRYPT_FAILED = "decrypt_failed"  # enveloped, but no usable key or the ciphertext/tag is wrong


@dataclass(slots=True)
class SignerInfo:
    """What we learnt about one SignerInfo of a SignedData (RFC 5652 §5.3)."""

    status: Status
    detail: str = ""
    subject: str = ""  # RFC 4514 string of the signer certificate's subject
    common_name: str = ""
    emails: list[str] = field(default_factory=list)  # rfc822Name SANs, else the subject emailAddress
    #: National health identifier carried by the certificate (IGC-Santé: "8" + RPPS, "0" + ADELI, …).
    national_id: str = ""
    serial: str = ""  # hex
    issuer: str = ""
    fingerprint_sha256: str = ""
    digest_algorithm: str = ""  # e.g. "sha256"
    signature_algorithm: str = ""  # e.g. "rsassa_pkcs1v15", "rsassa_pss", "ecdsa"
    signing_time: datetime | None = None
    chain: list[str] = field(default_factory=list)  # subjects, leaf first, trust anchor last
    chain_status: str = ""  # "ok" or the reason the path failed
    revocation: str = ""  # "good", "revoked", "unknown", "not_checked"


@dataclass(slots=True)
class SmimeResult:
    """Outcome of :func:`carnet.pki.smime.verify_message` / ``decrypt_message`` / ``open_message``."""

    status: Status
    detail: str = ""
    signers: list[SignerInfo] = field(default_factory=list)
    #: The signer that made the message valid (binds to From), or the most relevant failing one.
    signer: SignerInfo | None = None
    from_address: str = ""
    #: True when the message was enveloped (EnvelopedData or AuthEnvelopedData) and we decrypted it.
    encrypted: bool = False
    #: Content-encryption algorithm, e.g. "aes256_gcm", "aes256_cbc".
    encryption_algorithm: str = ""
    #: False for CBC EnvelopedData: decrypted, but nothing proves the ciphertext was not altered.
    integrity_protected: bool = True
    #: Signed (or decrypted) inner MIME entity, CRLF line endings; empty when not reached.
    content: bytes = b""
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.status is Status.VALID

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("content")
        data["content_length"] = len(self.content)
        return _jsonable(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value
