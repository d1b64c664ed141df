"""CRLs (RFC 5280 §5) on SQLite and PostgreSQL, checked with cryptography and with OpenSSL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from pki.ca_helpers import initialised, openssl, pki_files, smime, write_pem
from sqlalchemy import select

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.pki import authority, models, revocation
from carnet.pki.smime.result import Status
from carnet.pki.smime.validation import ChainValidator
from carnet.pki.trust import local_trust_store, refresh_crls


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


async def test_fresh_crl_is_a_signed_v2_crl(db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    persons = (await authority.authority_certificates(db))["persons"]
    crl = await revocation.generate_crl(db, settings, "persons")
    assert crl.issuer == persons.subject
    assert crl.is_signature_valid(persons.public_key())  # type: ignore[arg-type]
    assert isinstance(crl.signature_hash_algorithm, hashes.SHA256)
    der = crl.public_bytes(serialization.Encoding.DER)
    assert der[:20].find(b"\x02\x01\x01") != -1  # version v2 (RFC 5280 §5.1.2.1)
    assert _number(crl) == 2  # init issued number 1
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == persons.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert crl.next_update_utc - crl.last_update_utc == timedelta(hours=settings.pki.revocation_validity_hours)
    assert abs(crl.last_update_utc - utcnow()) < timedelta(minutes=1)
    assert len(crl) == 0
    assert revocation.crl_path(settings, "persons").read_bytes() == der
    async with db.session() as session:
        query = select(models.Crl.number, models.Crl.der).order_by(models.Crl.id.desc())
        stored = (await session.execute(query)).first()
    assert stored is not None and tuple(stored) == (2, der)
    assert _number(await revocation.generate_crl(db, settings, "persons")) == 3


async def test_revocations_are_listed_with_reason_codes(db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    compromised = await smime(db, settings, "a@carnet.test", key_type="p256")
    unspecified = await smime(db, settings, "b@carnet.test", key_type="p256")
    await smime(db, settings, "c@carnet.test", key_type="p256")
    await authority.revoke(db, settings, compromised.serial, "keyCompromise")
    await authority.revoke(db, settings, unspecified.serial)
    crl = x509.load_der_x509_crl(revocation.crl_path(settings, "persons").read_bytes())
    assert {entry.serial_number for entry in crl} == {
        compromised.certificate.serial_number, unspecified.certificate.serial_number
    }
    entry = crl.get_revoked_certificate_by_serial_number(compromised.certificate.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    record = await authority.get_certificate(db, compromised.serial)
    assert entry.revocation_date_utc == record.revoked_at
    plain = crl.get_revoked_certificate_by_serial_number(unspecified.certificate.serial_number)
    assert plain is not None
    with pytest.raises(x509.ExtensionNotFound):  # RFC 5280 §5.3.1: absent rather than unspecified
        plain.extensions.get_extension_for_class(x509.CRLReason)
    other = x509.load_der_x509_crl(revocation.crl_path(settings, "organisations").read_bytes())
    assert len(other) == 0


async def test_roots_crl_covers_the_issuing_cas(db: Database, settings: Settings) -> None:
    await initialised(db, settings)
    certificates = await authority.authority_certificates(db)
    servers_serial = certificates["servers"].serial_number
    await authority.revoke(db, settings, authority.serial_hex(servers_serial), "cessationOfOperation")
    crl = x509.load_der_x509_crl(await revocation.current_crl(db, settings, "root"))
    assert crl.issuer == certificates["root"].subject
    assert [entry.serial_number for entry in crl] == [servers_serial]
    assert crl.is_signature_valid(certificates["root"].public_key())  # type: ignore[arg-type]


async def test_current_crl_reuses_a_fresh_one_and_reissues_a_stale_one(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await initialised(db, settings)
    first = await revocation.current_crl(db, settings, "servers")
    assert await revocation.current_crl(db, settings, "servers") == first
    later = utcnow() + timedelta(hours=settings.pki.revocation_validity_hours * 0.6)
    monkeypatch.setattr(revocation, "utcnow", lambda: later)
    stale_replaced = x509.load_der_x509_crl(await revocation.current_crl(db, settings, "servers", write=True))
    assert _number(stale_replaced) == _number(x509.load_der_x509_crl(first)) + 1
    assert stale_replaced.last_update_utc == later.replace(microsecond=0)
    assert revocation.crl_path(settings, "servers").read_bytes() == stale_replaced.public_bytes(
        serialization.Encoding.DER
    )


async def test_expired_revoked_certificates_leave_the_crl(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await initialised(db, settings)
    credential = await smime(db, settings, key_type="p256")
    await authority.revoke(db, settings, credential.serial)
    assert len(x509.load_der_x509_crl(revocation.crl_path(settings, "persons").read_bytes())) == 1
    after_expiry = credential.certificate.not_valid_after_utc + timedelta(days=1)
    monkeypatch.setattr(revocation, "utcnow", lambda: after_expiry)
    assert len(await revocation.generate_crl(db, settings, "persons")) == 0


async def test_unknown_ca_is_a_typed_error(db: Database, settings: Settings) -> None:
    with pytest.raises(authority.NotInitialised):
        await revocation.current_crl(db, settings, "persons")
    await initialised(db, settings)
    with pytest.raises(authority.UnknownAuthority):
        await revocation.generate_crl(db, settings, "patients")


async def test_openssl_crl_check_agrees_before_and_after_revocation(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    await initialised(db, settings)
    credential = await smime(db, settings, national_id="810001234565")
    leaf = write_pem(tmp_path / "leaf.pem", credential.certificate)
    pki = pki_files(settings)
    root, persons = pki / "root.pem", pki / "ca" / "persons.pem"
    crl = revocation.crl_path(settings, "persons")
    parsed = openssl("crl", "-inform", "DER", "-in", crl, "-CAfile", persons, "-noout")
    assert "verify OK" in parsed.stdout, parsed.stdout

    def verify(*extra: str | Path) -> str:
        return openssl("verify", "-CAfile", root, "-untrusted", persons, *extra, leaf).stdout

    assert f"{leaf}: OK" in verify()
    assert f"{leaf}: OK" in verify("-crl_check", "-CRLfile", crl)
    assert f"{leaf}: OK" in verify("-crl_check_all", "-CRLfile", crl, "-CRLfile", revocation.crl_path(settings, "root"))

    await authority.revoke(db, settings, credential.serial, "keyCompromise")
    assert f"{leaf}: OK" in verify()  # without CRL checking nothing changes
    revoked = verify("-crl_check", "-CRLfile", crl)
    assert "certificate revoked" in revoked and f"{leaf}: OK" not in revoked


async def test_local_trust_store_follows_revocations(db: Database, settings: Settings) -> None:
    """trust.py: our root as anchor, the issuing CAs as intermediates, current CRLs; refresh_crls picks up news."""
    await initialised(db, settings)
    credential = await smime(db, settings, key_type="p256")
    store = await local_trust_store(db, settings)
    cas = await authority.authority_certificates(db)
    assert store.anchors == (cas["root"],)
    assert set(store.intermediates) == {cas["persons"], cas["organisations"], cas["servers"]}
    assert store.hard_fail is settings.pki.revocation_hard_fail
    validator = ChainValidator(store)
    valid = await validator.validate(credential.certificate)
    assert (valid.status, valid.revocation) == (Status.VALID, "good")

    await authority.revoke(db, settings, credential.serial, "keyCompromise")
    await refresh_crls(db, settings, store)
    revoked = await validator.validate(credential.certificate)
    assert revoked.status is Status.REVOKED
