"""``/pki/`` over HTTP: OCSP GET and POST (RFC 6960 Appendix A), CRLs, CA certificates, the bundle, limits.

In-process through httpx's ASGI transport, and against a real uvicorn server with ``openssl ocsp``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from fastapi import FastAPI
from pki.ca_helpers import (
    initialised,
    live_server,
    ocsp_request_by_serial,
    ocsp_request_for,
    openssl,
    pki_files,
    smime,
    write_pem,
)
from testpki import make_ca

from carnet.config import Settings
from carnet.db import Database
from carnet.pki import authority
from carnet.pki.http import create_app, pki_router
from carnet.pki.ocsp import MAX_REQUEST_BYTES


@pytest.fixture
async def client(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(pki_router(db, settings))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pki.test") as client:
        yield client


async def test_ocsp_get_url_encoded_base64(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    credential = await smime(db, settings, key_type="p256")
    persons = credential.chain[0]
    der = ocsp_request_for(credential.certificate, persons, nonce=b"0123456789abcdef")
    encoded = base64.b64encode(der).decode()
    for path in (quote(encoded, safe=""), encoded, base64.urlsafe_b64encode(der).decode().rstrip("=")):
        answer = await client.get(f"/pki/ocsp/{path}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/ocsp-response"
        assert "max-age=" in answer.headers["cache-control"]
        response = ocsp.load_der_ocsp_response(answer.content)
        assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == credential.certificate.serial_number
        assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"0123456789abcdef"

    await authority.revoke(db, settings, credential.serial, "affiliationChanged")
    response = ocsp.load_der_ocsp_response((await client.get(f"/pki/ocsp/{quote(encoded, safe='')}")).content)
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is x509.ReasonFlags.affiliation_changed


async def test_ocsp_post(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    cas = await authority.authority_certificates(db)
    answer = await client.post(
        "/pki/ocsp",
        content=ocsp_request_by_serial(cas["persons"], 987654321),
        headers={"content-type": "application/ocsp-request"},
    )
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    assert ocsp.load_der_ocsp_response(answer.content).certificate_status is ocsp.OCSPCertStatus.UNKNOWN


@pytest.mark.parametrize("path", ["/pki/ocsp/not-base64!!", "/pki/ocsp/Z2FyYmFnZQ%3D%3D", "/pki/ocsp/%00"])
async def test_ocsp_get_garbage_is_malformed(
    client: httpx.AsyncClient, db: Database, settings: Settings, path: str
) -> None:
    await initialised(db, settings)
    answer = await client.get(path)
    assert answer.status_code == 200
    response = ocsp.load_der_ocsp_response(answer.content)
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert answer.headers["cache-control"] == "no-store"


async def test_ocsp_post_garbage_and_unknown_issuer(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    await initialised(db, settings)
    headers = {"content-type": "application/ocsp-request"}
    garbage = await client.post("/pki/ocsp", content=b"\x30\x82garbage", headers=headers)
    assert ocsp.load_der_ocsp_response(garbage.content).response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    foreign_request = ocsp_request_by_serial(make_ca("Elsewhere").cert, 7)
    foreign = await client.post("/pki/ocsp", content=foreign_request, headers=headers)
    assert ocsp.load_der_ocsp_response(foreign.content).response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


async def test_ocsp_limits_and_media_type(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    wrong_type = await client.post("/pki/ocsp", content=b"x", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415
    assert wrong_type.headers["content-type"] == "application/problem+json"
    assert wrong_type.json()["status"] == 415
    too_big = await client.post(
        "/pki/ocsp", content=b"\x30" * (MAX_REQUEST_BYTES + 1), headers={"content-type": "application/ocsp-request"}
    )
    assert too_big.status_code == 413 and "Traceback" not in too_big.text

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_REQUEST_BYTES // 1000 + 2):
            yield b"\x30" * 1000

    streamed = await client.post("/pki/ocsp", content=chunks(), headers={"content-type": "application/ocsp-request"})
    assert streamed.status_code == 413
    too_long = await client.get("/pki/ocsp/" + "A" * 9000)
    assert too_long.status_code == 414


async def test_crl_ca_and_bundle_endpoints(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    cas = await authority.authority_certificates(db)
    for name, certificate in cas.items():
        crl_answer = await client.get(f"/pki/crl/{name}.crl")
        assert crl_answer.status_code == 200
        assert crl_answer.headers["content-type"] == "application/pkix-crl"
        crl = x509.load_der_x509_crl(crl_answer.content)
        assert crl.issuer == certificate.subject
        assert crl.is_signature_valid(certificate.public_key())  # type: ignore[arg-type]
        cert_answer = await client.get(f"/pki/ca/{name}.crt")
        assert cert_answer.headers["content-type"] == "application/pkix-cert"
        assert x509.load_der_x509_certificate(cert_answer.content) == certificate
    bundle = await client.get("/pki/ca-bundle.pem")
    assert bundle.headers["content-type"] == "application/pem-certificate-chain"
    assert x509.load_pem_x509_certificates(bundle.content) == list(cas.values())
    assert bundle.content == (pki_files(settings) / "ca-bundle.pem").read_bytes()
    for path in ("/pki/crl/patients.crl", "/pki/ca/nobody.crt"):
        missing = await client.get(path)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["title"] == "Not Found"


async def test_not_initialised_is_a_problem_not_a_traceback(client: httpx.AsyncClient) -> None:
    for path in ("/pki/crl/persons.crl", "/pki/ca/root.crt", "/pki/ca-bundle.pem"):
        answer = await client.get(path)
        assert answer.status_code == 503
        assert answer.json()["detail"].startswith("the certificate authority is not initialised")
        assert "Traceback" not in answer.text


async def test_application_errors_are_problem_documents(settings: Settings) -> None:
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pki.test") as client:
        missing = await client.get("/nothing/here")
        assert missing.status_code == 404 and missing.json()["status"] == 404
        method = await client.delete("/pki/ca-bundle.pem")
        assert method.status_code == 405 and method.headers["content-type"] == "application/problem+json"


async def test_openssl_ocsp_against_a_live_server(db: Database, settings: Settings, tmp_path: Path) -> None:
    await initialised(db, settings)
    credential = await smime(db, settings, national_id="810001234565")
    leaf = write_pem(tmp_path / "leaf.pem", credential.certificate)
    pki = pki_files(settings)
    with live_server(settings) as base_url:

        def ask(cert: Path, issuer: Path) -> str:
            result = openssl("ocsp", "-issuer", issuer, "-cert", cert, "-url", f"{base_url}/pki/ocsp",
                             "-CAfile", pki / "root.pem")
            assert result.returncode == 0, result.stdout
            assert "Response verify OK" in result.stdout, result.stdout
            return result.stdout

        assert f"{leaf}: good" in ask(leaf, pki / "ca" / "persons.pem")
        assert f"{pki / 'ca' / 'persons.pem'}: good" in ask(pki / "ca" / "persons.pem", pki / "root.pem")
        await authority.revoke(db, settings, credential.serial, "keyCompromise")
        revoked = ask(leaf, pki / "ca" / "persons.pem")
        assert f"{leaf}: revoked" in revoked and "Reason: keyCompromise" in revoked

        async with httpx.AsyncClient(base_url=base_url) as client:
            der = ocsp_request_for(credential.certificate, credential.chain[0])
            answer = await client.get(f"/pki/ocsp/{quote(base64.b64encode(der).decode(), safe='')}")
            assert ocsp.load_der_ocsp_response(answer.content).certificate_status is ocsp.OCSPCertStatus.REVOKED
            crl = x509.load_der_x509_crl((await client.get("/pki/crl/persons.crl")).content)
            assert crl.get_revoked_certificate_by_serial_number(credential.certificate.serial_number) is not None
            head = await client.head("/pki/ca/persons.crt")
            assert head.status_code == 200
            pem = (await client.get("/pki/ca-bundle.pem")).content
            assert x509.load_pem_x509_certificates(pem)[0].public_bytes(serialization.Encoding.PEM) == (
                pki / "root.pem"
            ).read_bytes()
