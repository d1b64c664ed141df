"""Certificate profiles (RFC 5280 §4.2, RFC 8550 §4.4) and request validation, without a database."""

from __future__ import annotations

from datetime import timedelta
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from carnet.config import load_settings
from carnet.db import utcnow
from carnet.pki import profiles
from carnet.pki.authority import IssueRequest, validate_request
from carnet.pki.keys import generate_key
from carnet.pki.profiles import EndEntity, InvalidRequest, Issuer

BASE = "https://carnet.test/pki"
NOW = utcnow().replace(microsecond=0)


@cache
def hierarchy() -> tuple[Issuer, Issuer]:
    root_key, persons_key = generate_key("rsa3072"), generate_key("rsa3072")
    root = Issuer("root", profiles.root_certificate(root_key, "carnet.test", NOW), root_key)
    persons_cert = profiles.issuing_ca_certificate(persons_key.public_key(), "persons", "carnet.test", root, BASE, NOW)
    return root, Issuer("persons", persons_cert, persons_key)


def ext(certificate: x509.Certificate, kind: type) -> x509.Extension:  # type: ignore[type-arg]
    return certificate.extensions.get_extension_for_class(kind)


def verify_signature(certificate: x509.Certificate, issuer: x509.Certificate) -> None:
    public_key = issuer.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert certificate.signature_hash_algorithm is not None
    algorithm = certificate.signature_hash_algorithm
    public_key.verify(certificate.signature, certificate.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)


def test_root_is_a_self_signed_ca_with_path_length_one() -> None:
    root, _ = hierarchy()
    cert = root.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "AC RACINE CARNET"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "carnet.test"
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 1
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.CRLDistributionPoints)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc >= timedelta(days=20 * 365)
    verify_signature(cert, cert)


def test_issuing_ca_names_the_roots_crl_and_aia() -> None:
    root, persons = hierarchy()
    cert = persons.certificate
    assert cert.issuer == root.certificate.subject
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(root.certificate, x509.SubjectKeyIdentifier).value.digest
    crldp = ext(cert, x509.CRLDistributionPoints).value
    assert [n.value for n in crldp[0].full_name] == [f"{BASE}/crl/root.crl"]
    aia = {d.access_method: d.access_location.value for d in ext(cert, x509.AuthorityInformationAccess).value}
    assert aia[AuthorityInformationAccessOID.OCSP] == f"{BASE}/ocsp"
    assert aia[AuthorityInformationAccessOID.CA_ISSUERS] == f"{BASE}/ca/root.crt"
    assert cert.not_valid_after_utc <= root.certificate.not_valid_after_utc
    verify_signature(cert, root.certificate)


EXPECTED_USAGE = {
    # (profile, is_rsa): (digitalSignature, keyEncipherment, keyAgreement)
    ("smime", True): (True, True, False),
    ("smime", False): (True, False, True),
    ("tls-server", True): (True, True, False),
    ("tls-server", False): (True, False, False),
    ("tls-client", True): (True, False, False),
    ("tls-client", False): (True, False, False),
}
EKU = {
    "smime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "tls-server": ExtendedKeyUsageOID.SERVER_AUTH,
    "tls-client": ExtendedKeyUsageOID.CLIENT_AUTH,
}


@pytest.mark.parametrize("key_type", ["rsa2048", "rsa3072", "p256"])
@pytest.mark.parametrize("profile", ["smime", "tls-server", "tls-client"])
def test_end_entity_extensions_per_profile_and_key_type(profile: str, key_type: str) -> None:
    _, persons = hierarchy()
    key = generate_key(key_type)
    if profile == "smime":
        entity = EndEntity(profile, "Dr Anne Martin", emails=("anne@carnet.test", "a.martin@carnet.test"),
                           national_id="810001234565", organisation="Cabinet Martin")
    else:
        entity = EndEntity(profile, "mx.carnet.test", dns_names=("mx.carnet.test", "carnet.test"))
    cert = profiles.end_entity_certificate(entity, key.public_key(), persons, BASE, NOW, timedelta(days=30))

    assert cert.version is x509.Version.v3
    assert 0 < cert.serial_number < 2**159
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical
    is_rsa = key_type.startswith("rsa")
    assert (ku.value.digital_signature, ku.value.key_encipherment, ku.value.key_agreement) == EXPECTED_USAGE[
        (profile, is_rsa)
    ]
    assert not ku.value.key_cert_sign and not ku.value.crl_sign
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [EKU[profile]]
    san = ext(cert, x509.SubjectAlternativeName).value
    if profile == "smime":
        assert san.get_values_for_type(x509.RFC822Name) == ["anne@carnet.test", "a.martin@carnet.test"]
        assert san.get_values_for_type(x509.DNSName) == []
        assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "810001234565"
        assert cert.subject.get_attributes_for_oid(x509.ObjectIdentifier("2.5.4.5"))[0].value == "810001234565"
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Cabinet Martin"
    else:
        assert san.get_values_for_type(x509.DNSName) == ["mx.carnet.test", "carnet.test"]
        assert san.get_values_for_type(x509.RFC822Name) == []
        assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER) == []
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == (
        ext(persons.certificate, x509.SubjectKeyIdentifier).value.digest
    )
    crldp = ext(cert, x509.CRLDistributionPoints).value
    assert [n.value for n in crldp[0].full_name] == [f"{BASE}/crl/persons.crl"]
    aia = {d.access_method: d.access_location.value for d in ext(cert, x509.AuthorityInformationAccess).value}
    assert aia == {
        AuthorityInformationAccessOID.OCSP: f"{BASE}/ocsp",
        AuthorityInformationAccessOID.CA_ISSUERS: f"{BASE}/ca/persons.crt",
    }
    assert cert.not_valid_before_utc < NOW < cert.not_valid_after_utc
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)
    verify_signature(cert, persons.certificate)
    if key_type == "p256":
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def test_serials_are_random() -> None:
    _, persons = hierarchy()
    key = generate_key("p256")
    entity = EndEntity("smime", "x", emails=("x@carnet.test",))
    serials = {
        profiles.end_entity_certificate(entity, key.public_key(), persons, BASE, NOW, timedelta(days=1)).serial_number
        for _ in range(20)
    }
    assert len(serials) == 20
    assert max(s.bit_length() for s in serials) > 150


def test_end_entity_validity_is_clamped_to_the_issuers() -> None:
    _, persons = hierarchy()
    entity = EndEntity("smime", "x", emails=("x@carnet.test",))
    cert = profiles.end_entity_certificate(
        entity, generate_key("p256").public_key(), persons, BASE, NOW, timedelta(days=30 * 365)
    )
    assert cert.not_valid_after_utc == persons.certificate.not_valid_after_utc


# Validation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "normalised"),
    [
        ("anne.martin@carnet.test", "anne.martin@carnet.test"),
        ("Anne.Martin@Carnet.TEST", "anne.martin@carnet.test"),
        ("secretariat+cardio@patient.carnet.test", "secretariat+cardio@patient.carnet.test"),
        ("o'brien@xn--hpital-7ua.fr", "o'brien@xn--hpital-7ua.fr"),
    ],
)
def test_valid_email_addresses(address: str, normalised: str) -> None:
    assert profiles.validate_email(address) == normalised


@pytest.mark.parametrize(
    "address",
    ["", "anne", "@carnet.test", "anne@", "anne@@carnet.test", "an ne@carnet.test", "anne.@carnet.test",
     ".anne@carnet.test", "an..ne@carnet.test", "anne@localhost", "anne@-bad.test", "anne@carnet.test.",
     "anne@192.168.1.1", "anné@carnet.test", "anne@hôpital.fr", "a" * 65 + "@carnet.test", "\"q\"@carnet.test"],
)
def test_invalid_email_addresses(address: str) -> None:
    with pytest.raises(InvalidRequest, match="not a valid e-mail address"):
        profiles.validate_email(address)


@pytest.mark.parametrize("name", ["carnet.test", "MX.Carnet.Test", "patient.carnet.test", "xn--hpital-7ua.fr", "a-b.c"])
def test_valid_dns_names(name: str) -> None:
    assert profiles.validate_dns_name(name) == name.lower()


@pytest.mark.parametrize(
    "name", ["", "localhost", "*.carnet.test", "-a.test", "a-.test", "a..test", "under_score.test", "10.0.0.1",
             "hôpital.fr", "a" * 64 + ".test", "a b.test"],
)
def test_invalid_dns_names(name: str) -> None:
    with pytest.raises(InvalidRequest):
        profiles.validate_dns_name(name)


@pytest.mark.parametrize("value", ["810001234565", "012345678", "3/750000001/ABC", "ins-1.2"])
def test_valid_national_ids(value: str) -> None:
    assert profiles.validate_national_id(value) == value


@pytest.mark.parametrize("value", ["", "81000 1234", "é123", "x" * 65, "-123"])
def test_invalid_national_ids(value: str) -> None:
    with pytest.raises(InvalidRequest):
        profiles.validate_national_id(value)


SETTINGS = load_settings(domain="carnet.test", key_secret="unused")


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (IssueRequest("smime", "x"), "at least one e-mail"),
        (IssueRequest("smime", "x", emails=["a@carnet.test"], dns_names=["carnet.test"]), "not DNS names"),
        (IssueRequest("tls-server", "x"), "at least one DNS name"),
        (IssueRequest("tls-client", "x", emails=["a@carnet.test"], dns_names=["c.test"]), "not e-mail"),
        (IssueRequest("tls-server", "x", dns_names=["c.test"], national_id="810001234565"), "national identifier"),
        (IssueRequest("smime", "x", emails=["a@carnet.test"], authority="servers"), "does not issue smime"),
        (IssueRequest("smime", "x", emails=["a@carnet.test"], authority="root"), "does not issue smime"),
        (IssueRequest("tls-server", "x", dns_names=["c.test"], authority="persons"), "does not issue tls-server"),
        (IssueRequest("smime", "x", emails=["a@carnet.test"], key_type="rsa1024"), "unsupported key type"),
        (IssueRequest("email", "x", emails=["a@carnet.test"]), "unknown profile"),  # type: ignore[arg-type]
        (IssueRequest("smime", "x" * 65, emails=["a@carnet.test"]), "common name"),
        (IssueRequest("smime", "x", emails=["not an address"]), "not a valid e-mail"),
    ],
)
def test_requests_not_fitting_the_profile_are_refused(request_: IssueRequest, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        validate_request(request_, SETTINGS)


def test_request_defaults() -> None:
    entity, key_type, ca = validate_request(
        IssueRequest("smime", "", emails=["Anne@Carnet.test", "anne@carnet.test"]), SETTINGS
    )
    assert (entity.common_name, entity.emails, key_type, ca) == (
        "anne@carnet.test", ("anne@carnet.test",), "rsa2048", "persons"
    )
    assert validate_request(IssueRequest("tls-client", "", dns_names=["a.test"]), SETTINGS)[2] == "servers"
    org = validate_request(IssueRequest("smime", "S", emails=["s@carnet.test"], authority="organisations"), SETTINGS)
    assert org[2] == "organisations"
