"""The signer's key material, with the CMS pieces that never change precomputed.

A :class:`SignerCredential` is built once per sender (the gateway keeps them) and reused for every message, so
everything derivable from the certificate is computed in ``__post_init__``: the DER of the
``CertificateSet`` (RFC 5652 §10.2.3) carrying the signer's certificate and chain, its ``SignerIdentifier``
as ``IssuerAndSerialNumber`` (RFC 5652 §5.3, §10.2.4) and its key family. Signing then only hashes, signs and
concatenates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


@dataclass(frozen=True)
class SignerCredential:
    """A private key, its S/MIME certificate and the intermediates to send (never the root)."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    #: ``rsa`` or ``ec``.
    key_family: Literal["rsa", "ec"] = field(init=False, repr=False, compare=False)
    #: DER of the leaf certificate.
    certificate_der: bytes = field(init=False, repr=False, compare=False)
    #: Contents (without tag and length) of ``certificates [0] IMPLICIT CertificateSet``: leaf then chain.
    certificate_set_contents: bytes = field(init=False, repr=False, compare=False)
    #: DER of ``SignerIdentifier`` = ``IssuerAndSerialNumber`` (RFC 5652 §5.3, version 1 SignerInfo).
    sid_der: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise TypeError("S/MIME signing needs an RSA or EC private key")
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        encoding = serialization.Encoding.DER
        if self.key.public_key().public_bytes(encoding, public) != self.certificate.public_key().public_bytes(
            encoding, public
        ):
            raise ValueError("the private key does not belong to the certificate")
        if not isinstance(self.chain, tuple):
            object.__setattr__(self, "chain", tuple(self.chain))
        leaf_der = self.certificate.public_bytes(encoding)
        chain_der = [cert.public_bytes(encoding) for cert in self.chain]
        issuer_and_serial = cms.IssuerAndSerialNumber(
            {
                "issuer": asn1_x509.Name.load(self.certificate.issuer.public_bytes()),
                "serial_number": self.certificate.serial_number,
            }
        )
        object.__setattr__(self, "key_family", "rsa" if isinstance(self.key, rsa.RSAPrivateKey) else "ec")
        object.__setattr__(self, "certificate_der", leaf_der)
        # SET OF: DER orders the elements by their encodings (X.690 §11.6).
        object.__setattr__(self, "certificate_set_contents", b"".join(sorted({leaf_der, *chain_der})))
        object.__setattr__(self, "sid_der", issuer_and_serial.dump())
