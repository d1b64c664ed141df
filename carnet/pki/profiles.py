"""Certificate profiles of carnet's authority: what each certificate contains, and input validation.

The hierarchy follows IGC-Santé's: a self-signed **root** and three issuing CAs beneath it, **persons**
(professionals, patients), **organisations** (structures and apps) and **servers** (the operator's TLS server and
client certificates). Every certificate is X.509 v3 (RFC 5280 §4.1), has a random 159-bit serial (§4.1.2.2: positive,
at most 20 octets, unpredictable) and is signed with SHA-256 (RSA PKCS#1 v1.5, RFC 4055 / ECDSA, RFC 5758).

End-entity profiles:

============  ===========================================  ==================  =======================
profile       keyUsage (§4.2.1.3, critical)                extKeyUsage          subjectAltName
============  ===========================================  ==================  =======================
smime         digitalSignature + keyEncipherment (RSA)      emailProtection     rfc822Name, one or more
              digitalSignature + keyAgreement (EC, RFC 5753)
tls-server    digitalSignature (+ keyEncipherment for RSA)  serverAuth          dNSName, one or more
tls-client    digitalSignature                              clientAuth          dNSName, one or more
============  ===========================================  ==================  =======================

(RFC 8550 §4.4 for S/MIME, RFC 5280 §4.2.1.12 for the key purposes.) Subjects are ``C=FR, O=<organisation>,
CN=<common name>`` and, for health professionals, the national identifier in the ``serialNumber`` attribute
(X.520, OID 2.5.4.5) as IGC-Santé does: ``"8" + RPPS``, ``"0" + ADELI``…. Every certificate but the root names its
issuer's CRL (cRLDistributionPoints, §4.2.1.13) and its OCSP responder and issuer certificate (authorityInfoAccess,
§4.2.2.1), under ``settings.pki_base_url``; all carry subjectKeyIdentifier (§4.2.1.2) and, below the root,
authorityKeyIdentifier (§4.2.1.1). CA certificates have basicConstraints cA=TRUE with a path length (§4.2.1.9):
1 for the root, 0 for the issuing CAs; their keyUsage is keyCertSign + cRLSign, plus digitalSignature because the
CAs sign their own OCSP responses (RFC 6960 §4.2.2.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from carnet.pki.keys import PkiError, PrivateKey, PublicKey

ProfileName = Literal["smime", "tls-server", "tls-client"]
PROFILES: Final[tuple[str, ...]] = get_args(ProfileName)
#: The profile recorded for the issuing CAs' own certificates (issued by the root).
CA_PROFILE: Final = "ca"

ROOT: Final = "root"
ISSUING_CAS: Final[tuple[str, ...]] = ("persons", "organisations", "servers")
AUTHORITY_NAMES: Final[tuple[str, ...]] = (ROOT, *ISSUING_CAS)
#: Common names, after IGC-Santé's ("AC RACINE IGC-SANTE", "AC IGC-SANTE … PERSONNES", …).
_CA_COMMON_NAMES: Final = {
    ROOT: "AC RACINE CARNET",
    "persons": "AC CARNET PERSONNES",
    "organisations": "AC CARNET ORGANISATIONS",
    "servers": "AC CARNET SERVEURS",
}
#: Which issuing CAs may issue which profile.
ALLOWED_AUTHORITIES: Final[dict[str, tuple[str, ...]]] = {
    "smime": ("persons", "organisations"),
    "tls-server": ("servers", "organisations"),
    "tls-client": ("servers", "organisations"),
}
DEFAULT_AUTHORITY: Final = {"smime": "persons", "tls-server": "servers", "tls-client": "servers"}

ROOT_VALIDITY: Final = timedelta(days=20 * 365)
ISSUING_CA_VALIDITY: Final = timedelta(days=10 * 365)
#: Certificates start a little in the past so that clients with a slow clock accept them at once.
BACKDATE: Final = timedelta(minutes=5)


class InvalidRequest(PkiError, ValueError):
    """A certificate request the profiles refuse (bad address, bad host name, names not fitting the profile…)."""


# Validation -------------------------------------------------------------------------------------------------

_ATEXT: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")  # RFC 5322 §3.2.3
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # RFC 1035 §2.3.1, RFC 1123 §2.1
_NATIONAL_ID: Final = re.compile(r"[0-9A-Za-z][0-9A-Za-z/.-]{0,63}")  # within X.520 PrintableString


def validate_dns_name(name: str) -> str:
    """A host name for dNSName (RFC 5280 §4.2.1.6: preferred name syntax, RFC 1034 §3.5), lower-cased.

    At least two labels; no wildcard; internationalised names must be given as A-labels (``xn--…``).
    """
    value = name.strip().lower().removesuffix(".")
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidRequest(f"{name!r} is not a valid DNS host name")
    if labels[-1].isdigit():
        raise InvalidRequest(f"{name!r} is an IP address, not a DNS host name")
    return value


def validate_email(address: str) -> str:
    """An address for rfc822Name (RFC 5280 §4.2.1.6: RFC 5322 §3.4.1 addr-spec), lower-cased.

    The local part must be a dot-atom in ASCII (rfc822Name is an IA5String; internationalised local parts would
    need SmtpUTF8Mailbox, RFC 9598, which carnet does not issue); the domain must be a valid host name.
    """
    value = address.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or len(local) > 64 or len(value) > 254 or domain.endswith("."):
        raise InvalidRequest(f"{address!r} is not a valid e-mail address")
    if not all(_ATEXT.fullmatch(atom) for atom in local.split(".")):
        raise InvalidRequest(f"{address!r} is not a valid e-mail address (local part)")
    try:
        domain = validate_dns_name(domain)
    except InvalidRequest:
        raise InvalidRequest(f"{address!r} is not a valid e-mail address (domain)") from None
    return f"{local.lower()}@{domain}"


def validate_national_id(value: str) -> str:
    """A national health identifier for the subject serialNumber (X.520 PrintableString, at most 64 characters)."""
    value = value.strip()
    if not _NATIONAL_ID.fullmatch(value):
        raise InvalidRequest(f"{value!r} is not a valid national identifier (letters, digits, '/', '.', '-')")
    return value


def validate_text(value: str, what: str, limit: int = 64) -> str:
    """A common name or organisation: non-empty, printable, within the X.520 upper bound (RFC 5280 Appendix A)."""
    value = value.strip()
    if not value or len(value) > limit or not value.isprintable():
        raise InvalidRequest(f"{what} must be 1 to {limit} printable characters, got {value!r}")
    return value


# Names and URLs ---------------------------------------------------------------------------------------------


def ca_subject(domain: str, ca_name: str) -> x509.Name:
    """``C=FR, O=<domain>, OU=IGC carnet, CN=AC …``: the distinguished name of one of our CAs."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, domain),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IGC carnet"),
            x509.NameAttribute(NameOID.COMMON_NAME, _CA_COMMON_NAMES[ca_name]),
        ]
    )


def end_entity_subject(common_name: str, organisation: str | None, national_id: str | None) -> x509.Name:
    """``C=FR[, O=<organisation>], CN=<common name>[, serialNumber=<national id>]`` (IGC-Santé layout)."""
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    if national_id:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, national_id))
    return x509.Name(attributes)


def crl_url(base_url: str, ca_name: str) -> str:
    return f"{base_url}/crl/{ca_name}.crl"


def ocsp_url(base_url: str) -> str:
    return f"{base_url}/ocsp"


def ca_issuers_url(base_url: str, ca_name: str) -> str:
    return f"{base_url}/ca/{ca_name}.crt"


# Certificates -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issuer:
    """What signing a certificate needs from the issuing CA."""

    name: str  # "root", "persons", …
    certificate: x509.Certificate
    key: PrivateKey


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def end_entity_key_usage(profile: str, public_key: PublicKey) -> x509.KeyUsage:
    """keyUsage of an end-entity certificate (RFC 5280 §4.2.1.3, RFC 8550 §4.4.2, RFC 5753 for EC)."""
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=is_rsa and profile in ("smime", "tls-server"),
        data_encipherment=False,
        key_agreement=not is_rsa and profile == "smime",
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


_EKU: Final = {
    "smime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "tls-server": ExtendedKeyUsageOID.SERVER_AUTH,
    "tls-client": ExtendedKeyUsageOID.CLIENT_AUTH,
}


def _with_publication(builder: x509.CertificateBuilder, base_url: str, issuer_name: str) -> x509.CertificateBuilder:
    """cRLDistributionPoints (RFC 5280 §4.2.1.13) and authorityInfoAccess (§4.2.2.1) naming the issuer's."""
    return builder.add_extension(
        x509.CRLDistributionPoints(
            [
                x509.DistributionPoint(
                    full_name=[x509.UniformResourceIdentifier(crl_url(base_url, issuer_name))],
                    relative_name=None,
                    reasons=None,
                    crl_issuer=None,
                )
            ]
        ),
        critical=False,
    ).add_extension(
        x509.AuthorityInformationAccess(
            [
                x509.AccessDescription(
                    AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url(base_url))
                ),
                x509.AccessDescription(
                    AuthorityInformationAccessOID.CA_ISSUERS,
                    x509.UniformResourceIdentifier(ca_issuers_url(base_url, issuer_name)),
                ),
            ]
        ),
        critical=False,
    )


def _base_builder(
    subject: x509.Name, issuer_name: x509.Name, public_key: PublicKey, not_before: datetime, not_after: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())  # 159 random bits, RFC 5280 §4.1.2.2
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _authority_key_identifier(issuer: Issuer) -> x509.AuthorityKeyIdentifier:
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def root_certificate(key: PrivateKey, domain: str, now: datetime) -> x509.Certificate:
    """The self-signed root (RFC 5280 §3.2, §4.2.1.9 pathLenConstraint 1: one level of issuing CAs)."""
    subject = ca_subject(domain, ROOT)
    builder = (
        _base_builder(subject, subject, key.public_key(), now - BACKDATE, now + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
    )
    return builder.sign(key, hashes.SHA256())


def issuing_ca_certificate(
    public_key: PublicKey, ca_name: str, domain: str, root: Issuer, base_url: str, now: datetime
) -> x509.Certificate:
    """An issuing CA under the root (pathLenConstraint 0: it issues end-entity certificates only)."""
    not_after = min(now + ISSUING_CA_VALIDITY, root.certificate.not_valid_after_utc)
    builder = (
        _base_builder(ca_subject(domain, ca_name), root.certificate.subject, public_key, now - BACKDATE, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(_authority_key_identifier(root), critical=False)
    )
    return _with_publication(builder, base_url, root.name).sign(root.key, hashes.SHA256())


@dataclass(frozen=True, slots=True)
class EndEntity:
    """A validated end-entity request: every name already normalised."""

    profile: str
    common_name: str
    emails: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    national_id: str | None = None
    organisation: str | None = None


def end_entity_certificate(
    entity: EndEntity,
    public_key: PublicKey,
    issuer: Issuer,
    base_url: str,
    now: datetime,
    validity: timedelta,
) -> x509.Certificate:
    """An end-entity certificate of ``entity.profile`` signed by ``issuer`` (validity clamped to the issuer's)."""
    not_after = min(now + validity, issuer.certificate.not_valid_after_utc)
    names: list[x509.GeneralName] = [x509.RFC822Name(e) for e in entity.emails]
    names += [x509.DNSName(d) for d in entity.dns_names]
    subject = end_entity_subject(entity.common_name, entity.organisation, entity.national_id)
    builder = (
        _base_builder(subject, issuer.certificate.subject, public_key, now - BACKDATE, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(end_entity_key_usage(entity.profile, public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([_EKU[entity.profile]]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(_authority_key_identifier(issuer), critical=False)
    )
    return _with_publication(builder, base_url, issuer.name).sign(issuer.key, hashes.SHA256())
