"""The OCSP responder (RFC 6960) on SQLite and PostgreSQL, without HTTP."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp
from pki.ca_helpers import initialised, ocsp_request_by_serial, ocsp_request_for, smime
from testpki import make_ca

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.pki import authority
from carnet.pki.ocsp import OcspResponder, issuer_key_hash


def check_signed_by(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> None:
    public_key = issuer.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert isinstance(response.signature_hash_algorithm, hashes.SHA256)
    public_key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(), hashes.SHA256())
    assert response.certificates == [issuer]
    assert response.responder_key_hash == issuer_key_hash(issuer, hashes.SHA1())  # noqa: S303  (RFC 6960 §4.2.1)
    assert response.responder_name is None


async def _setup(db: Database, settings: Settings) -> tuple[OcspResponder, dict[str, x509.Certificate]]:
    await initialised(db, settings)
    return OcspResponder(db, settings), await authority.authority_certificates(db)


async def test_good_with_nonce_echoed(db: Database, settings: Settings) -> None:
    responder, cas = await _setup(db, settings)
    credential = await smime(db, settings)
    nonce = os.urandom(16)
    answer = await responder.respond(ocsp_request_for(credential.certificate, cas["persons"], nonce=nonce))
    assert (answer.response_status, answer.cert_status) == ("successful", "good")
    response = ocsp.load_der_ocsp_response(answer.der)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == credential.certificate.serial_number
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert response.next_update_utc is not None
    assert response.next_update_utc - response.this_update_utc == timedelta(
        hours=settings.pki.revocation_validity_hours
    )
    assert abs(response.produced_at_utc - utcnow()) < timedelta(minutes=1)
    check_signed_by(response, cas["persons"])


async def test_revoked_with_time_and_reason(db: Database, settings: Settings) -> None:
    responder, cas = await _setup(db, settings)
    credential = await smime(db, settings, key_type="p256")
    record = await authority.revoke(db, settings, credential.serial, "keyCompromise")
    answer = await responder.respond(ocsp_request_for(credential.certificate, cas["persons"]))
    response = ocsp.load_der_ocsp_response(answer.der)
    assert answer.cert_status == "revoked"
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_time_utc == record.revoked_at
    assert response.revocation_reason is x509.ReasonFlags.key_compromise
    with pytest.raises(x509.ExtensionNotFound):
        response.extensions.get_extension_for_class(x509.OCSPNonce)
    check_signed_by(response, cas["persons"])


async def test_revoked_unspecified_has_no_reason(db: Database, settings: Settings) -> None:
    responder, cas = await _setup(db, settings)
    credential = await smime(db, settings, key_type="p256")
    await authority.revoke(db, settings, credential.serial)
    response = ocsp.load_der_ocsp_response((await responder.respond(
        ocsp_request_for(credential.certificate, cas["persons"])
    )).der)
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is None


async def test_unknown_serial_is_unknown(db: Database, settings: Settings) -> None:
    responder, cas = await _setup(db, settings)
    answer = await responder.respond(ocsp_request_by_serial(cas["persons"], x509.random_serial_number()))
    response = ocsp.load_der_ocsp_response(answer.der)
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    check_signed_by(response, cas["persons"])


async def test_certificate_of_another_ca_is_unknown_to_this_one(db: Database, settings: Settings) -> None:
    responder, cas = await _setup(db, settings)
    credential = await smime(db, settings, "s@carnet.test", ca="organisations", key_type="p256")
    answer = await responder.respond(ocsp_request_by_serial(cas["persons"], credential.certificate.serial_number))
    assert answer.cert_status == "unknown"
    answer = await responder.respond(ocsp_request_for(credential.certificate, cas["organisations"]))
    assert answer.cert_status == "good"


async def test_root_answers_for_the_issuing_cas(db: Database, settings: Settings) -> None:
    responder, cas = await _setup(db, settings)
    await authority.revoke(db, settings, authority.serial_hex(cas["organisations"].serial_number), "cACompromise")
    good = ocsp.load_der_ocsp_response((await responder.respond(ocsp_request_for(cas["persons"], cas["root"]))).der)
    assert good.certificate_status is ocsp.OCSPCertStatus.GOOD
    check_signed_by(good, cas["root"])
    answer = await responder.respond(ocsp_request_for(cas["organisations"], cas["root"]))
    revoked = ocsp.load_der_ocsp_response(answer.der)
    assert revoked.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_reason is x509.ReasonFlags.ca_compromise


async def test_sha256_cert_id(db: Database, settings: Settings) -> None:
    responder, cas = await _setup(db, settings)
    credential = await smime(db, settings, key_type="p256")
    der = ocsp_request_for(credential.certificate, cas["persons"], algorithm=hashes.SHA256)
    response = ocsp.load_der_ocsp_response((await responder.respond(der)).der)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert isinstance(response.hash_algorithm, hashes.SHA256)
    assert response.issuer_key_hash == issuer_key_hash(cas["persons"], hashes.SHA256())


async def test_unknown_issuer_is_unauthorized(db: Database, settings: Settings) -> None:
    responder, _ = await _setup(db, settings)
    stranger = make_ca("Some Other Root")
    answer = await responder.respond(ocsp_request_by_serial(stranger.cert, 12345))
    assert answer.response_status == "unauthorized"
    response = ocsp.load_der_ocsp_response(answer.der)
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


@pytest.mark.parametrize("der", [b"", b"garbage", b"\x30\x03\x02\x01\x01", b"\x30" * 20000])
async def test_malformed_requests(db: Database, settings: Settings, der: bytes) -> None:
    responder, _ = await _setup(db, settings)
    answer = await responder.respond(der)
    assert answer.response_status == "malformedRequest"
    assert ocsp.load_der_ocsp_response(answer.der).response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


async def test_nonce_longer_than_32_octets_is_malformed(db: Database, settings: Settings) -> None:
    responder, cas = await _setup(db, settings)
    credential = await smime(db, settings, key_type="p256")
    answer = await responder.respond(ocsp_request_for(credential.certificate, cas["persons"], nonce=os.urandom(33)))
    assert answer.response_status == "malformedRequest"


async def test_request_for_two_certificates_is_malformed(db: Database, settings: Settings) -> None:
    responder, cas = await _setup(db, settings)
    one = asn1_ocsp.OCSPRequest.load(ocsp_request_by_serial(cas["persons"], 1))
    single = one["tbs_request"]["request_list"][0]
    two = asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": [single, single]}}).dump()
    assert (await responder.respond(two)).response_status == "malformedRequest"


async def test_not_initialised_is_unauthorized(db: Database, settings: Settings) -> None:
    stranger = make_ca("Some Other Root")
    answer = await OcspResponder(db, settings).respond(ocsp_request_by_serial(stranger.cert, 1))
    assert answer.response_status == "unauthorized"
