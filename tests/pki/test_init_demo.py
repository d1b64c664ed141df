"""``carnet init`` and ``carnet demo`` on SQLite and PostgreSQL: once only, nothing secret printed, usable result."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from pki.ca_helpers import openssl, write_pem

from carnet.cli import main
from carnet.config import Settings, async_url
from carnet.db import Database
from carnet.pki import authority
from carnet.pki.demo import DEMO_IDENTITIES, create_demo, luhn_check_digit, rpps_national_id
from carnet.pki.smime import sign_message, verify_message
from carnet.pki.smime.credentials import SignerCredential
from carnet.pki.smime.result import Status
from carnet.pki.smime.validation import ChainValidator
from carnet.pki.trust import local_trust_store


@pytest.fixture(autouse=True)
def _no_carnet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CARNET_"):
            monkeypatch.delenv(name)


def _carnet(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _snapshot(data: Path, db_url: str) -> tuple[list[tuple[str, str]], dict[Path, bytes]]:
    """(certificate serials and fingerprints in the database, every file under DATA/pki and DATA/secrets)."""

    async def rows() -> list[tuple[str, str]]:
        db = Database(async_url(db_url))
        try:
            records = await authority.list_certificates(db)
            cas = await authority.authority_certificates(db)
        finally:
            await db.close()
        return [(r.serial, r.fingerprint_sha256) for r in records] + [
            (name, authority.fingerprint(c)) for name, c in cas.items()
        ]

    files = {p: p.read_bytes() for base in ("pki", "secrets") for p in sorted((data / base).rglob("*")) if p.is_file()}
    return asyncio.run(rows()), files


def test_init_once_then_already_initialised(tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "var"
    common = ("--data", data, "--database-url", db_url)
    status, out, err = _carnet(capsys, "init", "--domain", "hopital-demo.fr", *common)
    assert status == 0, err
    assert "Certificate authority of hopital-demo.fr (created)" in out
    for cn in ("AC RACINE CARNET", "AC CARNET PERSONNES", "AC CARNET ORGANISATIONS", "AC CARNET SERVEURS"):
        assert cn in out
    assert "hopital-demo.fr, patient.hopital-demo.fr" in out
    for path in ("ca-bundle.pem", "root.pem", "tls/server.pem", "tls/server.key", "crl/persons.crl"):
        assert str(data / "pki" / path) in out
    secret = (data / "secrets" / "kek").read_text().strip()
    key_text = (data / "pki" / "tls" / "server.key").read_text()
    assert "PRIVATE KEY" not in out + err and secret not in out + err
    assert "".join(key_text.splitlines()[1:3]) not in out
    before = _snapshot(data, db_url)

    status, again, err = _carnet(capsys, "init", "--domain", "hopital-demo.fr", *common)
    assert status == 0, err
    assert again.splitlines()[0] == f"{data} is already initialised; nothing changed."
    assert "(existing)" in again and "Files written" not in again
    assert _snapshot(data, db_url) == before


def test_later_commands_keep_the_initialised_domain(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--data", tmp_path / "var", "--database-url", db_url)
    assert _carnet(capsys, "init", "--domain", "clinique.test", *common)[0] == 0
    status, out, err = _carnet(capsys, "pki", "issue", "--profile", "smime", "--email", "a@clinique.test",
                               "--key", "p256", "--out-dir", tmp_path, *common)
    assert status == 0, err
    serial = out.split()[3]
    certificate = x509.load_pem_x509_certificate((tmp_path / f"{serial}.pem").read_bytes())
    crldp = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert crldp[0].full_name[0].value == "https://clinique.test/pki/crl/persons.crl"


def test_luhn_and_rpps() -> None:
    assert luhn_check_digit("7992739871") == "3"  # the textbook example
    assert rpps_national_id("1000123456") == "810001234565"
    rpps = rpps_national_id("1000123456")[1:]
    total = sum(int(d) if i % 2 == 0 else (2 * int(d) - 9 if int(d) > 4 else 2 * int(d))
                for i, d in enumerate(reversed(rpps)))
    assert total % 10 == 0


async def test_demo_issues_once(settings: Settings, db: Database) -> None:
    await authority.init_hierarchy(db, settings)
    lines = await create_demo(settings)
    text = "\n".join(lines)
    assert "anne.martin@carnet.test" in text and "national id 810001234565" in text
    assert "camille.durand@patient.carnet.test" in text
    assert "secretariat.cardiologie@carnet.test" in text and "CA organisations" in text
    assert text.count("(issued,") == len(DEMO_IDENTITIES)
    assert str(settings.data_dir / "pki" / "ca-bundle.pem") in text
    assert "PRIVATE" not in text
    count = len(await authority.list_certificates(db))

    again = "\n".join(await create_demo(settings))
    assert again.count("(existing,") == len(DEMO_IDENTITIES) and "(issued," not in again
    assert len(await authority.list_certificates(db)) == count

    anne = (await authority.find_by_email(db, "anne.martin@carnet.test"))[0]
    assert anne.certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "810001234565"
    assert anne.key_held


async def test_demo_identity_signs_and_the_local_trust_store_verifies(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    """The path the MTA will take: sign on the user's behalf, verify against our own hierarchy with CRLs."""
    await authority.init_hierarchy(db, settings)
    await create_demo(settings)
    anne = (await authority.find_by_email(db, "anne.martin@carnet.test"))[0]
    credential = await authority.load_credential(db, settings, anne.serial)
    message = (
        b"From: Dr Anne Martin <anne.martin@carnet.test>\r\nTo: camille.durand@patient.carnet.test\r\n"
        b"Subject: Compte rendu\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBonjour.\r\n"
    )
    signed = sign_message(message, SignerCredential(credential.key, credential.certificate, credential.chain))

    validator = ChainValidator(await local_trust_store(db, settings))
    result = await verify_message(signed, validator)
    assert result.status is Status.VALID, result.detail
    assert result.signer is not None
    assert result.signer.national_id == "810001234565" and result.signer.revocation == "good"

    await authority.revoke(db, settings, anne.serial, "keyCompromise")
    result = await verify_message(signed, ChainValidator(await local_trust_store(db, settings)))
    assert result.status is Status.REVOKED

    pki = settings.data_dir / "pki"
    leaf = write_pem(tmp_path / "anne.pem", credential.certificate)
    checked = openssl("verify", "-CAfile", pki / "root.pem", "-untrusted", pki / "ca" / "persons.pem",
                      "-crl_check", "-CRLfile", pki / "crl" / "persons.crl", leaf)
    assert "certificate revoked" in checked.stdout


def test_carnet_demo_serves_the_pki(tmp_path: Path, db_url: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARNET_")}
    env["CARNET_LISTEN__HTTP"] = f"127.0.0.1:{port}"
    carnet = Path(sys.executable).parent / "carnet"
    process = subprocess.Popen(
        [carnet, "demo", "--domain", "carnet.test", "--data", data, "--database-url", db_url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                bundle = httpx.get(f"http://127.0.0.1:{port}/pki/ca-bundle.pem", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                if time.monotonic() > deadline:
                    raise TimeoutError("the server did not answer within 30 s") from None
                time.sleep(0.2)
        assert bundle.status_code == 200 and len(x509.load_pem_x509_certificates(bundle.content)) == 4
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    assert "anne.martin@carnet.test" in output and "serving CRLs" in output
    assert "PRIVATE KEY" not in output

