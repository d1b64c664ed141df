"""S/MIME signing: CMS SignedData (RFC 5652 §5) and the RFC 8551 §3.5 message formats.

Implemented:

- ``SignedData`` version 1 with one ``SignerInfo`` identified by ``IssuerAndSerialNumber`` (RFC 5652 §5.1, §5.3),
  the signer's certificate and intermediates in ``certificates`` (RFC 8551 §2.4.2), detached (no ``eContent``)
  or encapsulated.
- Signed attributes (RFC 5652 §5.3, §11): content-type, message-digest, signing-time, and SMIMECapabilities
  (RFC 8551 §2.5.2: AES-256-GCM, AES-128-GCM, AES-256-CBC, AES-128-CBC). The signature covers the DER of the
  ``SET OF`` attributes (RFC 5652 §5.4); without signed attributes it covers the content itself.
- Digests SHA-256/384/512 (RFC 5754 §2); RSASSA-PKCS1-v1_5 with ``rsaEncryption`` and NULL parameters
  (RFC 3370 §3.2), RSASSA-PSS with explicit parameters — hash, MGF1 with the same hash, salt length = hash
  length, trailer 1 (RFC 4056 §2–3) — and ECDSA with ``ecdsa-with-SHA*`` (RFC 5753 §7.1.3, RFC 5758 §3.2).
- :func:`sign_message`: the outer RFC 5322 header fields stay outside, the MIME entity is canonicalised
  (RFC 8551 §3.1.1–3.1.3, see :mod:`.canon`) and signed, as ``multipart/signed`` (RFC 8551 §3.5.3, RFC 1847)
  or as ``application/pkcs7-mime; smime-type=signed-data`` (RFC 8551 §3.5.2).

The DER is assembled from fragments: every constant part (algorithm identifiers, the capability list, the
signer's certificates and identifier, see :class:`.credentials.SignerCredential`) is encoded once with
``asn1crypto``; per message only the attributes, the signature and the enclosing lengths are written. Not
implemented: several signers in one call, unsigned attributes (counter-signatures, timestamps), receipts
(RFC 2634).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import UTC, datetime
from typing import Literal

from asn1crypto import algos, cms, core
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from .asn1util import HASHES, MICALG, cms_time_der, der_tlv, hash_algorithm
from .canon import base64_body, canonicalize_entity, split_entity
from .credentials import SignerCredential

RsaPadding = Literal["pkcs1v15", "pss"]

#: RFC 8551 §2.5.2 preference order for what we can decrypt (AuthEnvelopedData first).
_CAPABILITIES = ("aes256_gcm", "aes128_gcm", "aes256_cbc", "aes128_cbc")
_PREAMBLE = b"This is a cryptographically signed message in MIME format.\r\n"


@functools.cache
def _digest_algorithm_der(digest: str) -> bytes:
    """RFC 5754 §2: ``AlgorithmIdentifier`` of a SHA-2 digest, parameters absent."""
    return algos.DigestAlgorithm({"algorithm": digest}).dump()


@functools.cache
def _signature_algorithm_der(family: str, digest: str, rsa_padding: str) -> bytes:
    """``SignatureAlgorithmIdentifier`` (RFC 3370 §3.2, RFC 4056 §2, RFC 5758 §3.2)."""
    if family == "ec":
        return algos.SignedDigestAlgorithm({"algorithm": f"{digest}_ecdsa"}).dump()
    if rsa_padding == "pkcs1v15":
        return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15", "parameters": core.Null()}).dump()
    params = algos.RSASSAPSSParams(
        {
            "hash_algorithm": {"algorithm": digest},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": digest}},
            "salt_length": HASHES[digest].digest_size,
        }
    )
    return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": params}).dump()


@functools.cache
def _constant_attributes() -> tuple[bytes, bytes]:
    """DER of the content-type (id-data) and SMIMECapabilities attributes (RFC 5652 §11.1, RFC 8551 §2.5.2)."""
    content_type = cms.CMSAttribute({"type": "content_type", "values": ["data"]}).dump()
    capabilities = cms.CMSAttribute(
        {
            "type": "smime_capabilities",
            "values": [[{"capability_id": name} for name in _CAPABILITIES]],
        }
    ).dump()
    return content_type, capabilities


@functools.cache
def _attribute_prefixes() -> tuple[bytes, bytes]:
    """DER ``OBJECT IDENTIFIER`` of message-digest and signing-time (RFC 5652 §11.2, §11.3)."""
    return (
        cms.CMSAttributeType("message_digest").dump(),
        cms.CMSAttributeType("signing_time").dump(),
    )


def _signed_attributes(content_digest: bytes, signing_time: datetime) -> bytes:
    """Contents of the ``SET OF Attribute`` (RFC 5652 §5.3), DER-sorted (X.690 §11.6)."""
    content_type, capabilities = _constant_attributes()
    digest_oid, time_oid = _attribute_prefixes()
    message_digest = der_tlv(0x30, digest_oid + der_tlv(0x31, der_tlv(0x04, content_digest)))
    time = der_tlv(0x30, time_oid + der_tlv(0x31, cms_time_der(signing_time)))
    return b"".join(sorted((content_type, message_digest, time, capabilities)))


def _sign_bytes(signer: SignerCredential, data: bytes, digest: str, rsa_padding: RsaPadding) -> bytes:
    """The signature value over ``data`` (RFC 5652 §5.5): PKCS#1 v1.5, PSS (salt = hash length) or ECDSA."""
    algorithm = hash_algorithm(digest)
    key = signer.key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(algorithm))
    assert isinstance(key, rsa.RSAPrivateKey)
    if rsa_padding == "pss":
        pss = padding.PSS(mgf=padding.MGF1(hash_algorithm(digest)), salt_length=algorithm.digest_size)
        return key.sign(data, pss, algorithm)
    return key.sign(data, padding.PKCS1v15(), algorithm)


def sign_data(
    data: bytes,
    signer: SignerCredential,
    *,
    detached: bool = True,
    digest: str = "sha256",
    rsa_padding: RsaPadding = "pkcs1v15",
    signing_time: datetime | None = None,
    signed_attributes: bool = True,
) -> bytes:
    """DER ``ContentInfo`` holding a ``SignedData`` over ``data`` (RFC 5652 §3, §5).

    ``detached`` omits ``eContent`` (RFC 5652 §5.2); ``signed_attributes=False`` signs the content directly
    (RFC 5652 §5.4), which S/MIME allows but loses signing-time and capabilities.
    """
    if digest not in HASHES:
        raise ValueError(f"unsupported digest {digest!r}: use sha256, sha384 or sha512")
    if rsa_padding not in ("pkcs1v15", "pss"):
        raise ValueError(f"unsupported RSA padding {rsa_padding!r}")
    if rsa_padding == "pss" and signer.key_family != "rsa":
        raise ValueError("RSA-PSS needs an RSA key")
    digest_der = _digest_algorithm_der(digest)
    if signed_attributes:
        moment = (signing_time or datetime.now(UTC)).replace(microsecond=0)
        attributes = _signed_attributes(hashlib.new(digest, data).digest(), moment)
        signature = _sign_bytes(signer, der_tlv(0x31, attributes), digest, rsa_padding)
        attributes_field = der_tlv(0xA0, attributes)
    else:
        signature = _sign_bytes(signer, data, digest, rsa_padding)
        attributes_field = b""
    signer_info = der_tlv(
        0x30,
        b"\x02\x01\x01"
        + signer.sid_der
        + digest_der
        + attributes_field
        + _signature_algorithm_der(signer.key_family, digest, rsa_padding)
        + der_tlv(0x04, signature),
    )
    data_oid = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01"  # id-data, RFC 5652 §4
    econtent = b"" if detached else der_tlv(0xA0, der_tlv(0x04, data))
    signed_data = der_tlv(
        0x30,
        b"\x02\x01\x01"
        + der_tlv(0x31, digest_der)
        + der_tlv(0x30, data_oid + econtent)
        + der_tlv(0xA0, signer.certificate_set_contents)
        + der_tlv(0x31, signer_info),
    )
    signed_data_oid = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02"  # id-signedData, RFC 5652 §5.1
    return der_tlv(0x30, signed_data_oid + der_tlv(0xA0, signed_data))


def _new_boundary(entity: bytes) -> str:
    while True:
        boundary = f"----=_carnet_{secrets.token_hex(12)}"
        if boundary.encode("ascii") not in entity:
            return boundary


def sign_message(
    message: bytes,
    signer: SignerCredential,
    *,
    detached: bool = True,
    digest: str = "sha256",
    rsa_padding: RsaPadding = "pkcs1v15",
    signing_time: datetime | None = None,
) -> bytes:
    """Sign an RFC 5322 message and return the signed message (RFC 8551 §3.5).

    Header fields other than ``Content-*``/``MIME-Version`` stay on the outside, unsigned (RFC 8551 §3.1 leaves
    header protection to ``message/rfc822`` wrapping, which carnet does not do). The entity is made canonical
    (:func:`.canon.canonicalize_entity`) and signed; the result always has CRLF line endings.
    """
    outer, entity = split_entity(message, raw_body=True)
    entity = canonicalize_entity(entity)
    cms_der = sign_data(
        entity, signer, detached=detached, digest=digest, rsa_padding=rsa_padding, signing_time=signing_time
    )
    if not detached:
        return (
            outer
            + b"MIME-Version: 1.0\r\n"
            + b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n"
            + b"Content-Transfer-Encoding: base64\r\n"
            + b"Content-Disposition: attachment; filename=smime.p7m\r\n\r\n"
            + base64_body(cms_der)
        )
    boundary = _new_boundary(entity).encode("ascii")
    return b"".join(
        (
            outer,
            b"MIME-Version: 1.0\r\n",
            b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=',
            MICALG[digest].encode("ascii"),
            b';\r\n boundary="',
            boundary,
            b'"\r\n\r\n',
            _PREAMBLE,
            b"\r\n--",
            boundary,
            b"\r\n",
            entity,
            b"\r\n--",
            boundary,
            b"\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n",
            b"Content-Transfer-Encoding: base64\r\n",
            b"Content-Disposition: attachment; filename=smime.p7s\r\n\r\n",
            base64_body(cms_der),
            b"--",
            boundary,
            b"--\r\n",
        )
    )
