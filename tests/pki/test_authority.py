"""The authority on SQLite and PostgreSQL: hierarchy, issuing, revoking, lookups, sealed keys, the migration."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from pki.ca_helpers import initialised, openssl, pki_files, smime, write_pem
from sqlalchemy import func, select

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.models import metadata
from carnet.pki import authority, models
from carnet.pki.authority import IssueRequest
from carnet.pki.keys import SealedKeyError, public_keys_match
from carnet.pki.profiles import InvalidRequest


async def _rows(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """Everything the PKI stored, for before/after comparisons."""
    async with db.session() as session:
        return {
            "authorities": [
                tuple(r) for r in await session.execute(
                    select(models.Authority.name, models.Authority.fingerprint_sha256, models.Authority.sealed_key,
                           models.Authority.next_crl_number).order_by(models.Authority.name)
                )
            ],
            "certificates": [
                tuple(r) for r in await session.execute(
                    select(models.Certificate.serial, models.Certificate.fingerprint_sha256,
                           models.Certificate.revoked_at).order_by(models.Certificate.serial)
                )
            ],
            "crls": [
                tuple(r) for r in await session.execute(
                    select(models.Crl.authority_id, models.Crl.number).order_by(models.Crl.id)
                )
            ],
        }


def _files(settings: Settings) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(pki_files(settings).rglob("*")) if p.is_file()}


async def test_init_creates_the_hierarchy_and_publishes_files(db: Database, settings: Settings) -> None:
    report = await initialised(db, settings)
    assert report.created and report.domain == "carnet.test"
    certificates = await authority.authority_certificates(db)
    assert list(certificates) == ["root", "persons", "organisations", "servers"]
    root = certificates["root"]
    for name in ("persons", "organisations", "servers"):
        assert certificates[name].issuer == root.subject
        assert certificates[name].extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    pki = pki_files(settings)
    assert (pki / "root.pem").read_bytes() == root.public_bytes(serialization.Encoding.PEM)
    bundle = x509.load_pem_x509_certificates((pki / "ca-bundle.pem").read_bytes())
    assert bundle == list(certificates.values())
    for name in certificates:
        crl = x509.load_der_x509_crl((pki / "crl" / f"{name}.crl").read_bytes())
        assert crl.issuer == certificates[name].subject
        assert crl.is_signature_valid(certificates[name].public_key())  # type: ignore[arg-type]

    tls_chain = x509.load_pem_x509_certificates((pki / "tls" / "server.pem").read_bytes())
    assert tls_chain[1] == certificates["servers"]
    san = tls_chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["carnet.test", "patient.carnet.test"]
    eku = tls_chain[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    key_path = pki / "tls" / "server.key"
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert (pki / "tls").stat().st_mode & 0o777 == 0o700
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert public_keys_match(key, tls_chain[0].public_key())  # type: ignore[arg-type]
    result = openssl("verify", "-purpose", "sslserver", "-CAfile", pki / "root.pem",
                     "-untrusted", pki / "ca" / "servers.pem", pki / "tls" / "server.pem")
    assert result.returncode == 0, result.stdout

    lines = "\n".join(report.lines())
    for name, certificate in certificates.items():
        assert name in lines
        assert authority.display_fingerprint(authority.fingerprint(certificate)) in lines
    assert "AC CARNET PERSONNES" in lines and str(pki / "ca-bundle.pem") in lines
    assert str(key_path) in lines
    assert "PRIVATE KEY" not in lines and "BEGIN" not in lines


async def test_init_twice_changes_nothing(db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    before, files_before = await _rows(db), _files(settings)
    report = await authority.init_hierarchy(db, settings)
    assert not report.created
    assert report.files_written == []
    assert await _rows(db) == before
    assert _files(settings) == files_before
    assert [a.fingerprint_sha256 for a in report.authorities] == [row[1] for row in sorted(
        before["authorities"], key=lambda r: ["root", "persons", "organisations", "servers"].index(str(r[0]))
    )]


async def test_init_again_restores_only_missing_files(db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    pki = pki_files(settings)
    (pki / "root.pem").unlink()
    (pki / "tls" / "server.key").unlink()
    (pki / "crl" / "persons.crl").unlink()
    untouched = (pki / "ca-bundle.pem").stat().st_mtime_ns
    report = await authority.init_hierarchy(db, settings)
    assert not report.created
    assert set(report.files_written) == {pki / "root.pem", pki / "tls" / "server.key", pki / "tls" / "server.pem",
                                         pki / "crl" / "persons.crl"}
    assert (pki / "ca-bundle.pem").stat().st_mtime_ns == untouched
    key = serialization.load_pem_private_key((pki / "tls" / "server.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificates((pki / "tls" / "server.pem").read_bytes())[0]
    assert public_keys_match(key, cert.public_key())  # type: ignore[arg-type]


async def test_concurrent_init_creates_one_hierarchy(db: Database, settings: Settings) -> None:
    reports = await asyncio.gather(authority.init_hierarchy(db, settings), authority.init_hierarchy(db, settings))
    assert sorted(r.created for r in reports) == [False, True]
    async with db.session() as session:
        assert (await session.execute(select(func.count()).select_from(models.Authority))).scalar_one() == 4
    assert {r.authorities[0].fingerprint_sha256 for r in reports} == {
        authority.fingerprint((await authority.authority_certificates(db))["root"])
    }


async def test_issue_stores_the_certificate_and_its_sealed_key(db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    credential = await smime(db, settings, "Anne.Martin@carnet.test", national_id="810001234565")
    certificates = await authority.authority_certificates(db)
    assert credential.chain == (certificates["persons"],)
    assert credential.certificate.issuer == certificates["persons"].subject
    assert public_keys_match(credential.key, credential.certificate.public_key())  # type: ignore[arg-type]
    assert credential.serial == format(credential.certificate.serial_number, "x")
    assert "key" not in repr(credential).replace("profile", "")

    record = await authority.get_certificate(db, credential.serial.upper())
    assert (record.profile, record.authority, record.emails, record.national_id, record.key_type) == (
        "smime", "persons", ("anne.martin@carnet.test",), "810001234565", "rsa2048"
    )
    assert record.subject == "serialNumber=810001234565,CN=Dr Anne Martin,C=FR"
    assert record.key_held and record.status() == "valid"
    assert record.not_after == credential.certificate.not_valid_after_utc

    async with db.session() as session:
        sealed = (await session.execute(
            select(models.Certificate.sealed_key).where(models.Certificate.serial == credential.serial)
        )).scalar_one()
    plaintext = credential.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert sealed is not None and plaintext not in sealed

    loaded = await authority.load_credential(db, settings, credential.serial)
    assert loaded.certificate == credential.certificate and loaded.chain == credential.chain
    assert public_keys_match(loaded.key, credential.certificate.public_key())  # type: ignore[arg-type]

    wrong = settings.model_copy(update={"key_secret": type(settings.key_secret)("another secret")})
    with pytest.raises(SealedKeyError):
        await authority.load_credential(db, wrong, credential.serial)


@pytest.mark.parametrize("key_type", ["rsa3072", "p256"])
async def test_issue_other_profiles_and_key_types(db: Database, settings: Settings, key_type: str) -> None:
    await initialised(db, settings)
    org = await smime(db, settings, "secretariat@carnet.test", ca="organisations", key_type=key_type)
    assert org.authority == "organisations" and org.chain[0].subject == org.certificate.issuer
    client = await authority.issue(
        db, settings, IssueRequest("tls-client", "", dns_names=["relay.carnet.test"], key_type=key_type)
    )
    assert client.authority == "servers"
    record = await authority.get_certificate(db, client.serial)
    assert (record.profile, record.dns_names, record.emails, record.key_type) == (
        "tls-client", ("relay.carnet.test",), (), key_type
    )


async def test_invalid_request_stores_nothing(db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    before = await _rows(db)
    with pytest.raises(InvalidRequest):
        await authority.issue(db, settings, IssueRequest("smime", "x", emails=["bad address"]))
    with pytest.raises(InvalidRequest):
        await authority.issue(db, settings, IssueRequest("tls-server", "x", emails=["a@carnet.test"]))
    assert await _rows(db) == before


async def test_issue_before_init_is_a_typed_error(db: Database, settings: Settings) -> None:
    with pytest.raises(authority.NotInitialised, match="carnet init"):
        await smime(db, settings)


async def test_key_not_kept_when_asked(db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    credential = await smime(db, settings, keep_key=False)
    assert not (await authority.get_certificate(db, credential.serial)).key_held
    with pytest.raises(authority.KeyNotHeld):
        await authority.load_credential(db, settings, credential.serial)


async def test_find_by_email_puts_valid_unrevoked_first(db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    old = await smime(db, settings, "anne.martin@carnet.test")
    new = await smime(db, settings, "anne.martin@carnet.test")
    await smime(db, settings, "someone.else@carnet.test")
    await authority.revoke(db, settings, new.serial, "superseded")
    found = await authority.find_by_email(db, "ANNE.MARTIN@carnet.test")
    assert [r.serial for r in found] == [old.serial, new.serial]
    assert [r.status() for r in found] == ["valid", "revoked"]
    assert found[1].revocation_reason == "superseded"
    assert await authority.find_by_email(db, "nobody@carnet.test") == []
    later = utcnow() + timedelta(days=settings.pki.leaf_validity_days + 1)
    records = await authority.find_by_email(db, "anne.martin@carnet.test", valid_at=later)
    statuses = {r.serial: r.status(later) for r in records}
    assert statuses == {old.serial: "expired", new.serial: "revoked"}
    with pytest.raises(InvalidRequest):
        await authority.find_by_email(db, "not an address")


async def test_revoke_errors_are_typed(db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    credential = await smime(db, settings)
    with pytest.raises(authority.UnknownCertificate):
        await authority.revoke(db, settings, "0123456789abcdef")
    with pytest.raises(InvalidRequest, match="hexadecimal"):
        await authority.revoke(db, settings, "not-a-serial")
    with pytest.raises(InvalidRequest, match="reason"):
        await authority.revoke(db, settings, credential.serial, "because")
    with pytest.raises(InvalidRequest, match="cACompromise"):
        await authority.revoke(db, settings, credential.serial, "cACompromise")
    record = await authority.revoke(db, settings, credential.serial, "key-compromise")
    assert record.revocation_reason == "keyCompromise" and record.revoked_at is not None
    with pytest.raises(authority.AlreadyRevoked):
        await authority.revoke(db, settings, credential.serial)


async def test_revoked_issuing_ca_issues_nothing_more(db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    organisations = (await authority.authority_certificates(db))["organisations"]
    await authority.revoke(db, settings, authority.serial_hex(organisations.serial_number), "cACompromise")
    with pytest.raises(authority.AuthorityRevoked):
        await smime(db, settings, "s@carnet.test", ca="organisations")
    listed = await authority.list_certificates(db, revoked=True)
    assert [(r.profile, r.authority) for r in listed] == [("ca", "root")]


async def test_issued_certificate_verifies_with_openssl(db: Database, settings: Settings, tmp_path: Path) -> None:
    await initialised(db, settings)
    credential = await smime(db, settings, national_id="810001234565", key_type="p256")
    leaf = write_pem(tmp_path / "leaf.pem", credential.certificate)
    pki = pki_files(settings)
    result = openssl("verify", "-purpose", "smimesign", "-CAfile", pki / "root.pem",
                     "-untrusted", pki / "ca" / "persons.pem", leaf)
    assert result.returncode == 0 and f"{leaf}: OK" in result.stdout, result.stdout


async def test_migration_matches_the_models(db: Database) -> None:
    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})  # type: ignore[arg-type]
        return compare_metadata(context, metadata)

    async with db.engine.connect() as connection:
        differences = await connection.run_sync(diff)

    def table_of(entry: object) -> str:
        operation = entry[0] if isinstance(entry, list) else entry  # modify_* diffs come grouped per column
        kind, *rest = operation  # type: ignore[misc]
        if kind in ("add_table", "remove_table"):
            return str(rest[0].name)
        if kind in ("add_column", "remove_column") or kind.startswith("modify_"):
            return str(rest[1])
        return str(rest[0].table.name)  # indexes, constraints, foreign keys

    assert [d for d in differences if table_of(d).startswith("pki_")] == []


async def test_init_with_another_domain_says_which_domain_it_serves(db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    report = await authority.init_hierarchy(db, settings.model_copy(update={"domain": "other.test"}))
    assert not report.created and report.domain == "carnet.test"
    assert "serves carnet.test, not other.test" in report.lines()[0]
