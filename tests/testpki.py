"""A small, independent test PKI built directly with ``cryptography``.

It is deliberately not carnet's own CA (``carnet.pki.authority``): S/MIME tests must show that carnet verifies
certificates it did not issue. Every helper returns plain ``cryptography`` objects and can write PEM files for
OpenSSL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.now(UTC).replace(microsecond=0)
_KEY_CACHE: dict[tuple[str, int], object] = {}


def new_key(kind: str = "rsa2048", slot: int = 0) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """A private key; keys are cached per (kind, slot) so a test session generates few RSA keys."""
    cache_key = (kind, slot)
    if cache_key not in _KEY_CACHE:
        if kind == "rsa2048":
            _KEY_CACHE[cache_key] = rsa.generate_private_key(65537, 2048)
        elif kind == "rsa3072":
            _KEY_CACHE[cache_key] = rsa.generate_private_key(65537, 3072)
        elif kind == "p256":
            _KEY_CACHE[cache_key] = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(kind)
    return _KEY_CACHE[cache_key]  # type: ignore[return-value]


def _name(cn: str, org: str = "Carnet Test PKI") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@dataclass
class Issued:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)  # intermediates, leaf's issuer first

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write ``stem.key`` (PKCS#8 PEM) and ``stem.pem`` (the certificate) and return their paths."""
        key_path = directory / f"{stem}.key"
        cert_path = directory / f"{stem}.pem"
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        cert_path.write_bytes(pem(self.cert))
        return key_path, cert_path


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _chain_below(issuer: Issued) -> list[x509.Certificate]:
    """Certificates a signer sends: its issuer and up, without the self-signed root (a trust anchor)."""
    if issuer.cert.issuer == issuer.cert.subject:
        return []
    return [issuer.cert, *issuer.chain]


def make_ca(
    cn: str,
    issuer: Issued | None = None,
    *,
    key_kind: str = "rsa2048",
    slot: int = 0,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """A CA certificate: self-signed root when ``issuer`` is None, else an intermediate under it."""
    key = new_key(key_kind, slot + 100)
    subject = _name(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - timedelta(days=30))
        .not_valid_after(not_after or NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    signer = issuer.key if issuer else key
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    cert = builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    return Issued(key, cert, _chain_below(issuer) if issuer else [])


def make_leaf(
    issuer: Issued,
    email: str,
    *,
    cn: str | None = None,
    key_kind: str = "rsa2048",
    slot: int = 0,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
    extra_emails: list[str] | None = None,
    key_usage_digital_signature: bool = True,
    subject_extra: list[x509.NameAttribute] | None = None,
    san: bool = True,
    ocsp_url: str | None = None,
) -> Issued:
    """An S/MIME end-entity certificate for ``email`` (EKU emailProtection unless ``eku`` says otherwise).

    ``subject_extra`` appends attributes to the subject (e.g. ``serialNumber`` for a national identifier);
    ``san=False`` leaves out the subjectAltName and puts ``email`` in the subject's emailAddress instead;
    ``eku=[]`` leaves out the extended key usage extension; ``ocsp_url`` adds an authorityInfoAccess OCSP entry.
    """
    key = new_key(key_kind, slot)
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    emails = [email, *(extra_emails or [])]
    subject = _name(cn or email.split("@")[0])
    attributes = list(subject) + list(subject_extra or [])
    if not san:
        attributes.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=key_usage_digital_signature,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=not is_rsa,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    if eku is None or eku:
        usages = eku if eku is not None else [ExtendedKeyUsageOID.EMAIL_PROTECTION]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if ocsp_url:
        access = x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(e) for e in emails]), critical=False
        )
    cert = builder.sign(issuer.key, hashes.SHA256())  # type: ignore[arg-type]
    return Issued(key, cert, _chain_below(issuer))


def make_crl(
    issuer: Issued,
    revoked: list[x509.Certificate],
    *,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(this_update or NOW - timedelta(hours=1))
        .next_update(next_update or NOW + timedelta(days=7))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(NOW - timedelta(minutes=30))
            .build()
        )
    return builder.sign(issuer.key, hashes.SHA256())  # type: ignore[arg-type]


def make_ocsp_response(
    issuer: Issued,
    cert: x509.Certificate,
    *,
    revoked: bool = False,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
) -> bytes:
    """DER of a successful OCSP response (RFC 6960) for ``cert``, signed directly by its ``issuer``."""
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=cert,
            issuer=issuer.cert,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=this_update or NOW - timedelta(hours=1),
            next_update=next_update or NOW + timedelta(days=1),
            revocation_time=NOW - timedelta(minutes=30) if revoked else None,
            revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert)
    )
    response = builder.sign(issuer.key, hashes.SHA256())  # type: ignore[arg-type]
    return response.public_bytes(serialization.Encoding.DER)


@dataclass
class TestPki:
    """Root → intermediate → leaves, with the usual bad cases, and CRLs for both CAs."""

    __test__ = False  # not a pytest test class despite its name

    root: Issued
    intermediate: Issued
    alice: Issued  # RSA-2048, alice@carnet.test
    bob: Issued  # RSA-2048, bob@carnet.test
    carol_ec: Issued  # P-256, carol@carnet.test
    expired: Issued
    not_yet_valid: Issued
    revoked: Issued
    wrong_eku: Issued
    stranger: Issued  # under an unknown root
    crls: list[x509.CertificateRevocationList]


def build_test_pki() -> TestPki:
    root = make_ca("Carnet Test Root")
    inter = make_ca("Carnet Test Persons CA", root, slot=1)
    alice = make_leaf(inter, "alice@carnet.test", cn="Dr Alice Martin", slot=1)
    bob = make_leaf(inter, "bob@carnet.test", cn="Bob Durand", slot=2)
    carol = make_leaf(inter, "carol@carnet.test", cn="Carol Petit", key_kind="p256", slot=1)
    expired = make_leaf(
        inter,
        "old@carnet.test",
        slot=3,
        not_before=NOW - timedelta(days=400),
        not_after=NOW - timedelta(days=1),
    )
    future = make_leaf(
        inter,
        "future@carnet.test",
        slot=4,
        not_before=NOW + timedelta(days=10),
        not_after=NOW + timedelta(days=400),
    )
    revoked = make_leaf(inter, "revoked@carnet.test", slot=5)
    wrong_eku = make_leaf(inter, "tls@carnet.test", slot=6, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    other_root = make_ca("Unknown Root", slot=7)
    stranger = make_leaf(other_root, "stranger@elsewhere.test", slot=7)
    crls = [make_crl(inter, [revoked.cert]), make_crl(root, [])]
    return TestPki(root, inter, alice, bob, carol, expired, future, revoked, wrong_eku, stranger, crls)
