"""S/MIME encryption and decryption: CMS AuthEnvelopedData and EnvelopedData.

What is produced (RFC 8551 §2.7, §3.3):

- by default an ``AuthEnvelopedData`` (RFC 5083) whose content is encrypted with AES-256-GCM (RFC 5084 §3.2:
  12-byte nonce, 16-byte ICV carried in ``mac``), ``smime-type=authEnveloped-data``;
- with ``legacy=True`` an ``EnvelopedData`` (RFC 5652 §6) encrypted with AES-256-CBC (RFC 3565), for peers that do
  not read AuthEnvelopedData, ``smime-type=enveloped-data``.

The content-encryption key is given to each recipient, identified by ``IssuerAndSerialNumber`` (RFC 5652 §6.2.1):

- RSA certificate: ``KeyTransRecipientInfo`` with RSAES-OAEP, SHA-256 and MGF1-SHA-256 (RFC 8017 §7.1, parameters
  per RFC 4055 §4.1) — or RSAES-PKCS1-v1_5 (RFC 8017 §7.2) in legacy mode, for peers that lack OAEP;
- EC certificate (P-256, P-384, P-521): ``KeyAgreeRecipientInfo`` with ephemeral-static ECDH (RFC 5753 §3.1),
  ``dhSinglePass-stdDH-sha256kdf-scheme`` (sha384/sha512 for the larger curves), the ANSI X9.63 KDF over
  ``ECC-CMS-SharedInfo`` (RFC 5753 §7.2) and AES-256 key wrap (RFC 3394).

Decryption reads both kinds, any of AES-128/192/256 in GCM or CBC mode, key transport with OAEP (any SHA-1/SHA-2
hash, with a label) or PKCS#1 v1.5, and key agreement with the std/cofactor DH single-pass schemes (SHA-1/SHA-2 KDF,
AES key wrap). Key transport never acts as a padding oracle: whatever goes wrong while recovering the
content-encryption key, decryption continues with a random key of the right length (RFC 3218 §2.3.2) and every
failure past that point is the same ``DecryptError``. AES-CBC content is reported ``integrity_protected=False``.

Not implemented: KEKRecipientInfo, PasswordRecipientInfo, OtherRecipientInfo (they are skipped), recipient
identification by subject key identifier on encryption (it is understood on decryption), detached encrypted
content, and legacy content ciphers (3DES, RC2).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from asn1crypto import algos, cms, core, keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

from carnet.pki.smime import canon

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "MAX_KEY_ATTEMPTS",
    "MAX_RECIPIENTS",
    "DecryptError",
    "Decrypted",
    "DecryptionKey",
    "EncryptError",
    "MalformedEnvelopeError",
    "PrivateKey",
    "decrypt_data",
    "decrypt_message",
    "encrypt_data",
    "encrypt_message",
    "is_enveloped",
    "is_pkcs7_mime",
    "pkcs7_mime_body",
]

#: Largest CMS structure we encrypt or decrypt (the gateway's message size limit is smaller).
MAX_ENVELOPE_BYTES = 64 * 1024 * 1024
#: Most RecipientInfos we produce or examine in one message.
MAX_RECIPIENTS = 500
#: Most private-key operations one decryption may cost: RecipientInfos naming our certificate beyond this many
#: (a legitimate message has one per recipient) are ignored, so a crafted message cannot make us loop over RSA.
MAX_KEY_ATTEMPTS = 8

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# RFC 5753 §7.1.4 (stdDH) and §7.1.5 (cofactorDH); SEC 1 / X9.63 arcs for the SHA-1 variants.
_ECDH_KDF_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "1.3.133.16.840.63.0.2": hashes.SHA1,  # dhSinglePass-stdDH-sha1kdf-scheme
    "1.3.132.1.11.0": hashes.SHA224,  # dhSinglePass-stdDH-sha224kdf-scheme
    "1.3.132.1.11.1": hashes.SHA256,  # dhSinglePass-stdDH-sha256kdf-scheme
    "1.3.132.1.11.2": hashes.SHA384,  # dhSinglePass-stdDH-sha384kdf-scheme
    "1.3.132.1.11.3": hashes.SHA512,  # dhSinglePass-stdDH-sha512kdf-scheme
    # With the NIST prime curves the cofactor is 1: cofactor DH computes the same shared secret.
    "1.3.133.16.840.63.0.3": hashes.SHA1,  # dhSinglePass-cofactorDH-sha1kdf-scheme
    "1.3.132.1.14.0": hashes.SHA224,
    "1.3.132.1.14.1": hashes.SHA256,
    "1.3.132.1.14.2": hashes.SHA384,
    "1.3.132.1.14.3": hashes.SHA512,
}
# What we send for each curve (RFC 5753 §8.1 / RFC 8551 §2.7.1.2 pair the KDF hash with the curve size).
_ECDH_SCHEME_FOR_CURVE: dict[str, str] = {
    "secp256r1": "1.3.132.1.11.1",
    "secp384r1": "1.3.132.1.11.2",
    "secp521r1": "1.3.132.1.11.3",
}
_KEY_WRAP_SIZES = {"aes128_wrap": 16, "aes192_wrap": 24, "aes256_wrap": 32}
_CONTENT_KEY_SIZES = {
    "aes128_cbc": 16,
    "aes192_cbc": 24,
    "aes256_cbc": 32,
    "aes128_gcm": 16,
    "aes192_gcm": 24,
    "aes256_gcm": 32,
}
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_SMIME_CONTENT_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")


class EncryptError(ValueError):
    """A recipient certificate cannot be encrypted to (key type, key usage, too many recipients, …)."""


class DecryptError(Exception):
    """The message could not be decrypted with the keys given: no RecipientInfo for them, or a wrong key/tag.

    ``open_message`` turns it into :attr:`~carnet.pki.smime.result.Status.DECRYPT_FAILED`.
    """


class MalformedEnvelopeError(DecryptError):
    """The input is not a well-formed, supported EnvelopedData/AuthEnvelopedData (→ ``Status.MALFORMED``)."""


@dataclass(frozen=True)
class DecryptionKey:
    """A recipient's private key and the certificate the senders encrypted to."""

    key: PrivateKey
    certificate: x509.Certificate

    def __post_init__(self) -> None:
        if not isinstance(self.key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise TypeError(f"unsupported private key type {type(self.key).__name__}: need RSA or EC")
        if self.key.public_key() != self.certificate.public_key():
            raise ValueError(
                f"the private key does not match the certificate {self.certificate.subject.rfc4514_string()}"
            )


@dataclass(frozen=True)
class Decrypted:
    """The result of :func:`decrypt_data`."""

    content: bytes
    #: Content-encryption algorithm, e.g. ``"aes256_gcm"`` or ``"aes256_cbc"``.
    algorithm: str
    #: False for CBC: nothing proves the ciphertext was not altered (RFC 8551 §2.7 "authenticated encryption").
    integrity_protected: bool


# --------------------------------------------------------------------------------------------------------------------
# ASN.1 types asn1crypto does not define


class _GcmParameters(core.Sequence):
    """RFC 5084 §3.2: ``SEQUENCE { aes-nonce OCTET STRING, aes-ICVlen AES-GCM-ICVlen DEFAULT 12 }``."""

    _fields = [  # noqa: RUF012 - asn1crypto's declarative schema
        ("aes_nonce", core.OctetString),
        ("aes_icv_len", core.Integer, {"default": 12}),
    ]


class _EccCmsSharedInfo(core.Sequence):
    """RFC 5753 §7.2: the ``SharedInfo`` input of the X9.63 KDF."""

    _fields = [  # noqa: RUF012 - asn1crypto's declarative schema
        ("key_info", cms.KeyEncryptionAlgorithm),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


# --------------------------------------------------------------------------------------------------------------------
# Encryption


def encrypt_data(data: bytes, recipients: Sequence[x509.Certificate], *, legacy: bool = False) -> bytes:
    """Encrypt ``data`` for every certificate of ``recipients``; return a DER ``ContentInfo``.

    AuthEnvelopedData with AES-256-GCM (RFC 5083 §2.1, RFC 5084 §3.2) by default; EnvelopedData with AES-256-CBC
    (RFC 5652 §6.1, RFC 3565 §4.1) and RSA PKCS#1 v1.5 key transport when ``legacy`` is true.
    Raises :class:`EncryptError` for no recipient, too many, or a certificate that cannot be encrypted to.
    """
    unique = _unique_recipients(recipients)
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EncryptError(f"content of {len(data)} bytes exceeds the limit of {MAX_ENVELOPE_BYTES}")
    cek = os.urandom(32)
    recipient_infos = [_recipient_info(cert, cek, legacy=legacy) for cert in unique]
    if legacy:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        all_v0 = all(ri.name == "ktri" for ri in recipient_infos)
        enveloped = cms.EnvelopedData(
            {
                # RFC 5652 §6.1: 0 when only v0 KeyTransRecipientInfos and no originatorInfo/unprotectedAttrs.
                "version": "v0" if all_v0 else "v2",
                "recipient_infos": recipient_infos,
                "encrypted_content_info": {
                    "content_type": "data",
                    "content_encryption_algorithm": {"algorithm": "aes256_cbc", "parameters": iv},
                    "encrypted_content": ciphertext,
                },
            }
        )
        return cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump()
    nonce = os.urandom(12)
    sealed = AESGCM(cek).encrypt(nonce, data, None)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    gcm_parameters = _GcmParameters({"aes_nonce": nonce, "aes_icv_len": 16})
    auth_enveloped = cms.AuthEnvelopedData(
        {
            "version": "v0",  # RFC 5083 §2.1: always 0
            "recipient_infos": recipient_infos,
            "auth_encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {"algorithm": "aes256_gcm", "parameters": gcm_parameters},
                "encrypted_content": ciphertext,
            },
            "mac": tag,
        }
    )
    return cms.ContentInfo({"content_type": "authenticated_enveloped_data", "content": auth_enveloped}).dump()


def _unique_recipients(recipients: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    unique: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for cert in recipients:
        if not isinstance(cert, x509.Certificate):
            raise EncryptError(f"a recipient must be an x509.Certificate, not {type(cert).__name__}")
        fingerprint = cert.fingerprint(hashes.SHA256())
        if fingerprint not in seen:
            seen.add(fingerprint)
            unique.append(cert)
    if not unique:
        raise EncryptError("no recipient certificate given")
    if len(unique) > MAX_RECIPIENTS:
        raise EncryptError(f"{len(unique)} recipients exceed the limit of {MAX_RECIPIENTS}")
    return unique


def _check_key_usage(cert: x509.Certificate, *, key_agreement: bool) -> None:
    """RFC 8550 §4.4.2: a certificate used for key management must allow it when keyUsage is present."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if key_agreement and not usage.key_agreement:
        raise EncryptError(f"{_describe(cert)}: keyUsage lacks keyAgreement, cannot encrypt to this EC key")
    if not key_agreement and not usage.key_encipherment:
        raise EncryptError(f"{_describe(cert)}: keyUsage lacks keyEncipherment, cannot encrypt to this RSA key")


def _describe(cert: x509.Certificate) -> str:
    return f"certificate {cert.subject.rfc4514_string()} (serial {cert.serial_number:x})"


def _issuer_and_serial(cert: x509.Certificate) -> cms.IssuerAndSerialNumber:
    parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    return cms.IssuerAndSerialNumber(
        {"issuer": parsed["tbs_certificate"]["issuer"], "serial_number": parsed["tbs_certificate"]["serial_number"]}
    )


def _recipient_info(cert: x509.Certificate, cek: bytes, *, legacy: bool) -> cms.RecipientInfo:
    public_key = cert.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        _check_key_usage(cert, key_agreement=False)
        if legacy:
            encrypted_key = public_key.encrypt(cek, asym_padding.PKCS1v15())
            algorithm = cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()})
        else:
            # RFC 8551 §2.7.1.1 / RFC 4055 §4.1: RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label.
            encrypted_key = public_key.encrypt(
                cek,
                asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
            )
            algorithm = cms.KeyEncryptionAlgorithm(
                {
                    "algorithm": "rsaes_oaep",
                    "parameters": algos.RSAESOAEPParams(
                        {
                            "hash_algorithm": {"algorithm": "sha256"},
                            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
                        }
                    ),
                }
            )
        return cms.RecipientInfo(
            name="ktri",
            value=cms.KeyTransRecipientInfo(
                {
                    "version": "v0",  # RFC 5652 §6.2.1: v0 with issuerAndSerialNumber
                    "rid": cms.RecipientIdentifier(name="issuer_and_serial_number", value=_issuer_and_serial(cert)),
                    "key_encryption_algorithm": algorithm,
                    "encrypted_key": encrypted_key,
                }
            ),
        )
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        _check_key_usage(cert, key_agreement=True)
        scheme = _ECDH_SCHEME_FOR_CURVE.get(public_key.curve.name)
        if scheme is None:
            raise EncryptError(f"{_describe(cert)}: EC curve {public_key.curve.name} is not supported")
        return _key_agree_recipient_info(cert, public_key, scheme, cek)
    raise EncryptError(f"{_describe(cert)}: {type(public_key).__name__} keys cannot be encrypted to (RSA or EC only)")


def _shared_info(wrap_algorithm: cms.KeyEncryptionAlgorithm, ukm: bytes | None, kek_size: int) -> bytes:
    """RFC 5753 §7.2: DER of ECC-CMS-SharedInfo; ``suppPubInfo`` is the KEK length in bits, 32-bit big-endian."""
    info = {"key_info": wrap_algorithm, "supp_pub_info": (kek_size * 8).to_bytes(4, "big")}
    if ukm is not None:
        info["entity_u_info"] = ukm
    return _EccCmsSharedInfo(info).dump()


def _ecdh_kek(
    private_key: ec.EllipticCurvePrivateKey,
    peer: ec.EllipticCurvePublicKey,
    kdf_hash: type[hashes.HashAlgorithm],
    wrap_algorithm: cms.KeyEncryptionAlgorithm,
    ukm: bytes | None,
) -> bytes:
    """RFC 5753 §3.1.1 step 1-2: ECDH shared secret Z, then the X9.63 KDF (SEC 1 §3.6.1) over the SharedInfo."""
    kek_size = _KEY_WRAP_SIZES[wrap_algorithm["algorithm"].native]
    shared_secret = private_key.exchange(ec.ECDH(), peer)
    kdf = X963KDF(algorithm=kdf_hash(), length=kek_size, sharedinfo=_shared_info(wrap_algorithm, ukm, kek_size))
    return kdf.derive(shared_secret)


def _key_agree_recipient_info(
    cert: x509.Certificate, public_key: ec.EllipticCurvePublicKey, scheme: str, cek: bytes
) -> cms.RecipientInfo:
    """RFC 5753 §3.1.1: one KeyAgreeRecipientInfo with a fresh ephemeral key per recipient."""
    ephemeral = ec.generate_private_key(public_key.curve)
    wrap_algorithm = cms.KeyEncryptionAlgorithm({"algorithm": "aes256_wrap"})
    kek = _ecdh_kek(ephemeral, public_key, _ECDH_KDF_HASHES[scheme], wrap_algorithm, None)
    point = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    originator_key = keys.PublicKeyInfo(
        # RFC 5753 §3.1.1: id-ecPublicKey, parameters absent (the recipient's curve), the point as ECPoint.
        {"algorithm": {"algorithm": "ec"}, "public_key": point}
    )
    return cms.RecipientInfo(
        name="kari",
        value=cms.KeyAgreeRecipientInfo(
            {
                "version": "v3",  # RFC 5652 §6.2.2: always 3
                "originator": cms.OriginatorIdentifierOrKey(name="originator_key", value=originator_key),
                "key_encryption_algorithm": {"algorithm": scheme, "parameters": wrap_algorithm},
                "recipient_encrypted_keys": [
                    {
                        "rid": cms.KeyAgreementRecipientIdentifier(
                            name="issuer_and_serial_number", value=_issuer_and_serial(cert)
                        ),
                        "encrypted_key": aes_key_wrap(kek, cek),
                    }
                ],
            }
        ),
    )


# --------------------------------------------------------------------------------------------------------------------
# Parsing: everything asn1crypto may choke on happens here, before any cryptography


@dataclass(frozen=True)
class _RecipientId:
    """RFC 5652 §6.2.1 RecipientIdentifier: issuer + serial, or a subject key identifier."""

    issuer: asn1_x509.Name | None = None
    serial: int | None = None
    ski: bytes | None = None

    def matches(self, cert: x509.Certificate) -> bool:
        if self.ski is not None:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                return False
            return ski == self.ski
        if self.serial != cert.serial_number or self.issuer is None:
            return False
        issuer = asn1_x509.Name.load(cert.issuer.public_bytes())
        return bool(issuer == self.issuer)

    def describe(self) -> str:
        if self.ski is not None:
            return f"subject key identifier {self.ski.hex()}"
        issuer = self.issuer.human_friendly if self.issuer is not None else "?"
        return f"issuer {issuer!r}, serial {self.serial:x}"


@dataclass(frozen=True)
class _KeyTransport:
    """A KeyTransRecipientInfo (RFC 5652 §6.2.1) reduced to what decryption needs."""

    rid: _RecipientId
    padding: asym_padding.AsymmetricPadding
    encrypted_key: bytes


@dataclass(frozen=True)
class _KeyAgreement:
    """One RecipientEncryptedKey of a KeyAgreeRecipientInfo (RFC 5652 §6.2.2, RFC 5753 §3.1.2)."""

    rid: _RecipientId
    originator_point: bytes
    ukm: bytes | None
    kdf_hash: type[hashes.HashAlgorithm]
    wrap_algorithm: cms.KeyEncryptionAlgorithm
    encrypted_key: bytes


_Recipient = _KeyTransport | _KeyAgreement


@dataclass(frozen=True)
class _Envelope:
    recipients: list[_Recipient]
    skipped: int  # RecipientInfos of kinds we do not handle
    algorithm: str
    mode: Literal["cbc", "gcm"]
    iv: bytes
    ciphertext: bytes
    mac: bytes = b""
    aad: bytes | None = None


def _parse_envelope(data: bytes) -> _Envelope:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedEnvelopeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_ENVELOPE_BYTES:
        raise MalformedEnvelopeError(f"CMS structure of {len(data)} bytes exceeds the limit of {MAX_ENVELOPE_BYTES}")
    try:
        info = cms.ContentInfo.load(data, strict=True)
        content_type = info["content_type"].native
    except Exception as exc:
        raise MalformedEnvelopeError(f"not a DER CMS ContentInfo ({_short(exc)})") from exc
    if content_type not in ("enveloped_data", "authenticated_enveloped_data"):
        raise MalformedEnvelopeError(f"CMS content type is {content_type!r}, not enveloped or authEnveloped data")
    try:
        return _parse_enveloped_content(info["content"], auth=content_type == "authenticated_enveloped_data")
    except MalformedEnvelopeError:
        raise
    except Exception as exc:
        raise MalformedEnvelopeError(f"malformed {content_type} ({_short(exc)})") from exc


def _parse_enveloped_content(content: cms.EnvelopedData | cms.AuthEnvelopedData, *, auth: bool) -> _Envelope:
    infos = content["recipient_infos"]
    if len(infos) > MAX_RECIPIENTS:
        raise MalformedEnvelopeError(f"{len(infos)} RecipientInfos exceed the limit of {MAX_RECIPIENTS}")
    recipients: list[_Recipient] = []
    skipped = 0
    for info in infos:
        if info.name == "ktri":
            recipients.append(_parse_ktri(info.chosen))
        elif info.name == "kari":
            recipients.extend(_parse_kari(info.chosen))
        else:
            skipped += 1
    if len(recipients) > MAX_RECIPIENTS:
        raise MalformedEnvelopeError(f"{len(recipients)} recipient keys exceed the limit of {MAX_RECIPIENTS}")
    encrypted_info = content["auth_encrypted_content_info" if auth else "encrypted_content_info"]
    algorithm = encrypted_info["content_encryption_algorithm"]
    name = algorithm["algorithm"].native
    if name not in _CONTENT_KEY_SIZES:
        raise MalformedEnvelopeError(f"unsupported content-encryption algorithm {name!r}")
    mode: Literal["cbc", "gcm"] = "gcm" if name.endswith("_gcm") else "cbc"
    if auth != (mode == "gcm"):
        kind = "AuthEnvelopedData" if auth else "EnvelopedData"
        raise MalformedEnvelopeError(f"{kind} with {name} is not allowed (RFC 5083 §2.1 / RFC 5084)")
    ciphertext = encrypted_info["encrypted_content"].native
    if ciphertext is None:
        raise MalformedEnvelopeError("the encrypted content is absent (detached), which is not supported")
    if mode == "cbc":
        iv = algorithm["parameters"].native
        if not isinstance(iv, bytes) or len(iv) != 16:
            raise MalformedEnvelopeError(f"{name}: the IV must be a 16-byte OCTET STRING")
        if not ciphertext or len(ciphertext) % 16:
            raise MalformedEnvelopeError(f"{name}: ciphertext length {len(ciphertext)} is not a multiple of 16")
        return _Envelope(recipients, skipped, name, mode, iv, ciphertext)
    raw_parameters = algorithm["parameters"]
    if isinstance(raw_parameters, core.Void):
        raise MalformedEnvelopeError(f"{name}: GCMParameters are missing")
    parameters = _GcmParameters.load(raw_parameters.dump(), strict=True)
    nonce = parameters["aes_nonce"].native
    icv_len = parameters["aes_icv_len"].native
    mac = content["mac"].native
    if not 8 <= len(nonce) <= 64:  # RFC 5084 §3.2 recommends 12 bytes
        raise MalformedEnvelopeError(f"{name}: nonce of {len(nonce)} bytes")
    if icv_len not in (12, 13, 14, 15, 16) or len(mac) != icv_len:  # RFC 5084 §3.2
        raise MalformedEnvelopeError(f"{name}: ICV length {icv_len} and mac of {len(mac)} bytes are not valid")
    aad = None
    if content["auth_attrs"].native is not None:
        # RFC 5083 §2.1: the authenticated attributes enter GCM as additional data, DER with the SET OF tag.
        aad = content["auth_attrs"].untag().dump()
    return _Envelope(recipients, skipped, name, mode, nonce, ciphertext, mac, aad)


def _parse_rid(rid: cms.RecipientIdentifier | cms.KeyAgreementRecipientIdentifier) -> _RecipientId:
    if rid.name == "issuer_and_serial_number":
        issuer = rid.chosen["issuer"]
        issuer.native  # noqa: B018 - force asn1crypto's lazy parsing here, not later during matching
        return _RecipientId(issuer=issuer, serial=rid.chosen["serial_number"].native)
    if rid.name == "subject_key_identifier":
        return _RecipientId(ski=rid.chosen.native)
    return _RecipientId(ski=rid.chosen["subject_key_identifier"].native)  # r_key_id


def _parse_ktri(ktri: cms.KeyTransRecipientInfo) -> _KeyTransport:
    algorithm = ktri["key_encryption_algorithm"]
    name = algorithm["algorithm"].native
    key_padding: asym_padding.AsymmetricPadding
    if name == "rsaes_pkcs1v15":
        key_padding = asym_padding.PKCS1v15()
    elif name == "rsaes_oaep":
        parameters = algorithm["parameters"]
        hash_name = parameters["hash_algorithm"]["algorithm"].native
        mgf = parameters["mask_gen_algorithm"]
        if mgf["algorithm"].native != "mgf1":
            raise MalformedEnvelopeError(f"RSAES-OAEP mask generation {mgf['algorithm'].native!r} is not supported")
        mgf_hash_name = mgf["parameters"]["algorithm"].native
        p_source = parameters["p_source_algorithm"]
        label = p_source["parameters"].native or None
        if hash_name not in _DIGESTS or mgf_hash_name not in _DIGESTS:
            raise MalformedEnvelopeError(f"RSAES-OAEP with {hash_name}/{mgf_hash_name} is not supported")
        key_padding = asym_padding.OAEP(
            mgf=asym_padding.MGF1(_DIGESTS[mgf_hash_name]()), algorithm=_DIGESTS[hash_name](), label=label
        )
    else:
        raise MalformedEnvelopeError(f"unsupported key transport algorithm {name!r}")
    return _KeyTransport(_parse_rid(ktri["rid"]), key_padding, ktri["encrypted_key"].native)


def _parse_kari(kari: cms.KeyAgreeRecipientInfo) -> list[_KeyAgreement]:
    originator = kari["originator"]
    if originator.name != "originator_key":
        raise MalformedEnvelopeError("KeyAgreeRecipientInfo: the originator must be an ephemeral key (RFC 5753 §3.1)")
    key_info = originator.chosen
    if key_info["algorithm"]["algorithm"].native != "ec":
        raise MalformedEnvelopeError("KeyAgreeRecipientInfo: the originator key is not an EC key")
    point = bytes(key_info["public_key"].contents[1:])  # BIT STRING contents: unused-bits byte, then the ECPoint
    scheme = kari["key_encryption_algorithm"]["algorithm"].dotted
    kdf_hash = _ECDH_KDF_HASHES.get(scheme)
    if kdf_hash is None:
        raise MalformedEnvelopeError(f"unsupported key agreement algorithm {scheme}")
    wrap_algorithm = cms.KeyEncryptionAlgorithm.load(kari["key_encryption_algorithm"]["parameters"].dump(), strict=True)
    if wrap_algorithm["algorithm"].native not in _KEY_WRAP_SIZES:
        raise MalformedEnvelopeError(f"unsupported key wrap algorithm {wrap_algorithm['algorithm'].dotted}")
    ukm = kari["ukm"].native
    return [
        _KeyAgreement(_parse_rid(rek["rid"]), point, ukm, kdf_hash, wrap_algorithm, rek["encrypted_key"].native)
        for rek in kari["recipient_encrypted_keys"]
    ]


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


# --------------------------------------------------------------------------------------------------------------------
# Decryption


def decrypt_data(cms_bytes: bytes, keys: Sequence[DecryptionKey]) -> Decrypted:
    """Decrypt a DER EnvelopedData (RFC 5652 §6) or AuthEnvelopedData (RFC 5083) ``ContentInfo``.

    The RecipientInfo for one of ``keys`` is found by its RecipientIdentifier (RFC 5652 §6.2). Raises
    :class:`MalformedEnvelopeError` for input that is not a supported enveloped structure and
    :class:`DecryptError` when it is not addressed to any of ``keys`` or does not decrypt (wrong key, altered
    ciphertext, GCM tag mismatch) — the latter with one uniform message (RFC 3218 §2.3.2).
    """
    envelope = _parse_envelope(cms_bytes)
    candidates = [(recipient, key) for recipient in envelope.recipients for key in keys if _usable(recipient, key)]
    if not candidates:
        raise DecryptError(_not_for_us(envelope, keys))
    key_size = _CONTENT_KEY_SIZES[envelope.algorithm]
    for recipient, key in candidates[:MAX_KEY_ATTEMPTS]:
        cek = _recover_cek(recipient, key, key_size)
        content = _decrypt_content(envelope, cek)
        if content is not None:
            return Decrypted(content, envelope.algorithm, integrity_protected=envelope.mode == "gcm")
    raise DecryptError(
        "decryption failed: the content-encryption key or the ciphertext is wrong "
        f"({envelope.algorithm}{', authentication tag mismatch' if envelope.mode == 'gcm' else ''})"
    )


def _usable(recipient: _Recipient, key: DecryptionKey) -> bool:
    try:
        if not recipient.rid.matches(key.certificate):
            return False
    except Exception:  # an odd issuer encoding is a non-match, not a crash
        return False
    if isinstance(recipient, _KeyTransport):
        return isinstance(key.key, rsa.RSAPrivateKey)
    return isinstance(key.key, ec.EllipticCurvePrivateKey)


def _not_for_us(envelope: _Envelope, keys: Sequence[DecryptionKey]) -> str:
    if not keys:
        return "the message is encrypted and no decryption key was given"
    ours = "; ".join(_describe(key.certificate) for key in keys[:3])
    theirs = "; ".join(recipient.rid.describe() for recipient in envelope.recipients[:5])
    more = f" and {len(envelope.recipients) - 5} more" if len(envelope.recipients) > 5 else ""
    if not envelope.recipients:
        theirs = f"no key transport or key agreement recipient ({envelope.skipped} of other kinds)"
    return f"not encrypted for our key(s) ({ours}); the message is for: {theirs}{more}"


def _recover_cek(recipient: _Recipient, key: DecryptionKey, key_size: int) -> bytes:
    """Recover the content-encryption key, or a random one: failures must be indistinguishable (RFC 3218 §2.3.2)."""
    fallback = os.urandom(key_size)
    try:
        if isinstance(recipient, _KeyTransport):
            assert isinstance(key.key, rsa.RSAPrivateKey)
            cek = key.key.decrypt(recipient.encrypted_key, recipient.padding)
        else:
            assert isinstance(key.key, ec.EllipticCurvePrivateKey)
            peer = ec.EllipticCurvePublicKey.from_encoded_point(key.key.curve, recipient.originator_point)
            kek = _ecdh_kek(key.key, peer, recipient.kdf_hash, recipient.wrap_algorithm, recipient.ukm)
            cek = aes_key_unwrap(kek, recipient.encrypted_key)
    except Exception:  # every failure looks the same: no oracle on padding, unwrap or point validity
        return fallback
    # Constant-shape selection: a wrong-length key is replaced, never reported.
    return cek if len(cek) == key_size else fallback


def _decrypt_content(envelope: _Envelope, cek: bytes) -> bytes | None:
    """Decrypt with ``cek``; None when the tag (GCM) or the padding (CBC) is wrong."""
    if envelope.mode == "gcm":
        decryptor = Cipher(
            algorithms.AES(cek), modes.GCM(envelope.iv, envelope.mac, min_tag_length=len(envelope.mac))
        ).decryptor()
        if envelope.aad is not None:
            decryptor.authenticate_additional_data(envelope.aad)
        try:
            return decryptor.update(envelope.ciphertext) + decryptor.finalize()
        except InvalidTag:
            return None
    decryptor = Cipher(algorithms.AES(cek), modes.CBC(envelope.iv)).decryptor()
    padded = decryptor.update(envelope.ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------------------------
# Messages (RFC 8551 §3.3)


def encrypt_message(message: bytes, recipients: Sequence[x509.Certificate], *, legacy: bool = False) -> bytes:
    """Encrypt an RFC 5322 message: its MIME entity is enveloped, its other header fields stay outside.

    RFC 8551 §3.3: the entity (Content-* header fields and body, CRLF) becomes the CMS content; the result is an
    ``application/pkcs7-mime; smime-type=authEnveloped-data`` (``enveloped-data`` when ``legacy``) part named
    ``smime.p7m``, base64 encoded (RFC 8551 §3.1.3).
    """
    outer, entity = canon.split_entity(canon.to_crlf(message))
    der = encrypt_data(entity, recipients, legacy=legacy)
    smime_type = "enveloped-data" if legacy else "authEnveloped-data"
    return _pkcs7_mime_message(outer, der, smime_type)


def _pkcs7_mime_message(outer: bytes, der: bytes, smime_type: str) -> bytes:
    header = _header_block(outer) + b"MIME-Version: 1.0\r\n"
    header += (
        f"Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=smime.p7m\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename=smime.p7m\r\n"
    ).encode("ascii")
    return header + b"\r\n" + canon.base64_body(der)


def is_pkcs7_mime(mime_type: str, params: dict[str, str]) -> bool:
    """``application/(x-)pkcs7-mime``, or ``application/octet-stream`` named ``*.p7m`` (RFC 8551 §3.2.1)."""
    if mime_type in _SMIME_CONTENT_TYPES:
        return True
    return mime_type == "application/octet-stream" and params.get("name", "").lower().endswith(".p7m")


def is_enveloped(message: bytes) -> bool:
    """True when the message's top-level entity is ``application/pkcs7-mime`` holding (auth)enveloped data.

    The ``smime-type`` parameter decides when present (RFC 8551 §3.2.2); without it the CMS content type does.
    """
    try:
        header, _ = canon.split_header_body(canon.to_crlf(message))
        mime_type, params = canon.content_type(header)
    except Exception:
        return False
    if not is_pkcs7_mime(mime_type, params):
        return False
    smime_type = params.get("smime-type", "").lower()
    if smime_type in ("enveloped-data", "authenveloped-data"):
        return True
    if smime_type:
        return False
    try:
        return cms.ContentInfo.load(pkcs7_mime_body(message))["content_type"].native in (
            "enveloped_data",
            "authenticated_enveloped_data",
        )
    except Exception:
        return False


def pkcs7_mime_body(message: bytes) -> bytes:
    """The DER body of an application/pkcs7-mime entity, decoded per its Content-Transfer-Encoding (RFC 2045 §6)."""
    header, body = canon.split_header_body(canon.to_crlf(message))
    encodings = [value for name, value in canon.header_fields(header) if name == "content-transfer-encoding"]
    encoding = encodings[0].decode("ascii", "replace") if encodings else ""
    if encoding.strip().lower() in ("", "7bit", "8bit", "binary"):
        # Binary DER must not go through line-ending conversion: take it from the message as given.
        return canon.split_header_body(message)[1]
    try:
        return canon.decode_transfer_encoding(body, encoding)
    except ValueError as exc:
        raise MalformedEnvelopeError(f"the pkcs7-mime body cannot be decoded ({_short(exc)})") from exc


def _header_block(lines: bytes) -> bytes:
    """Header fields with every one CRLF-terminated (folded continuations kept), no empty line."""
    return b"".join(line + b"\r\n" for line in canon.to_crlf(lines).split(b"\r\n") if line)


def decrypt_message(message: bytes, keys: Sequence[DecryptionKey]) -> tuple[bytes, Decrypted]:
    """Decrypt an ``application/pkcs7-mime`` enveloped message (RFC 8551 §3.3).

    Returns the message with its outer (non-Content-*) header fields followed by the decrypted MIME entity, CRLF
    line endings, and the :class:`Decrypted` details. Raises :class:`MalformedEnvelopeError` when the message is not
    an enveloped S/MIME message and :class:`DecryptError` when it cannot be decrypted.
    """
    if not isinstance(message, bytes | bytearray):
        raise MalformedEnvelopeError(f"expected bytes, got {type(message).__name__}")
    if len(message) > MAX_ENVELOPE_BYTES * 2:
        raise MalformedEnvelopeError(f"message of {len(message)} bytes exceeds the limit")
    raw = bytes(message)
    message = canon.to_crlf(raw)
    try:
        header, _ = canon.split_header_body(message)
        mime_type, params = canon.content_type(header)
        outer, _entity = canon.split_entity(message)
    except Exception as exc:
        raise MalformedEnvelopeError(f"cannot parse the message header ({_short(exc)})") from exc
    if not is_pkcs7_mime(mime_type, params):
        raise MalformedEnvelopeError(f"the message is {mime_type or 'not MIME'}, not application/pkcs7-mime")
    decrypted = decrypt_data(pkcs7_mime_body(raw), keys)
    entity = canon.to_crlf(decrypted.content)
    kept = _header_block(outer)
    try:
        inner_names = {name for name, _ in canon.header_fields(canon.split_header_body(entity)[0])}
    except ValueError:
        inner_names = set()
    if "mime-version" not in inner_names:
        kept += b"MIME-Version: 1.0\r\n"
    return kept + entity, decrypted
