"""Identities and mailboxes on both backends: addresses, certificates following the mailbox, nothing half-written."""

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from dirhelp import finess, organisation, patient, professional, rpps

from carnet.config import Settings
from carnet.db import Database
from carnet.directory import mailboxes, store
from carnet.directory.certificates import LookupStatus, certificates_for
from carnet.directory.identifiers import InvalidIdentifier
from carnet.directory.records import (
    AppInput,
    Duplicate,
    IdentityNotQualified,
    InvalidInput,
    MailboxKind,
    NotFound,
)
from carnet.pki import authority


async def counts(db: Database) -> dict[str, int]:
    async with db.session() as session:
        rows = await store.count_rows(session)
    rows["certificates"] = len(await authority.list_certificates(db, profile="smime"))
    return rows


async def test_professional_mailbox_and_certificate(ca: Database, settings: Settings) -> None:
    [service] = await mailboxes.add_organisation(ca, settings, organisation(1), services=["Cardiologie"])
    info = await mailboxes.add_professional(ca, settings, professional(1, "Anne", "Martin",
                                                                       organisations=["1" + finess(1)]))
    assert info.address == "anne.martin@carnet.test"
    assert info.kind is MailboxKind.PER and info.national_id == "8" + rpps(1)
    record = await authority.get_certificate(ca, info.certificate_serial)
    cert = record.certificate
    assert record.authority == "persons" and record.status() == "valid"
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "8" + rpps(1)
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name) == ["anne.martin@carnet.test"]
    # The service mailbox: organisations CA, the structure's IDNST.
    assert service.address == "cardiologie@carnet.test" and service.kind is MailboxKind.ORG
    org_record = await authority.get_certificate(ca, service.certificate_serial)
    assert org_record.authority == "organisations" and org_record.national_id == "1" + finess(1)


async def test_address_collisions_accents_and_no_reuse(ca: Database, settings: Settings) -> None:
    first = await mailboxes.add_professional(ca, settings, professional(1, "Anne", "Martin"))
    second = await mailboxes.add_professional(ca, settings, professional(2, "Anne", "Mârtin"))
    third = await mailboxes.add_professional(ca, settings, professional(3, "ANNE", "martin"))
    assert [first.address, second.address, third.address] == [
        "anne.martin@carnet.test", "anne.martin2@carnet.test", "anne.martin3@carnet.test"]
    await mailboxes.disable_mailbox(ca, settings, second.address)
    fourth = await mailboxes.add_professional(ca, settings, professional(4, "Anne", "Martin"))
    assert fourth.address == "anne.martin4@carnet.test"  # a disabled address is never handed out again
    composed = await mailboxes.add_professional(ca, settings, professional(5, "Jean Pierre", "D'Ornano-Lœw"))
    assert composed.address == "jean-pierre.d-ornano-loew@carnet.test"


async def test_duplicates_and_bad_input_write_nothing(ca: Database, settings: Settings) -> None:
    await mailboxes.add_professional(ca, settings, professional(1))
    before = await counts(ca)
    with pytest.raises(Duplicate, match=rf"RPPS {rpps(1)} \(IDNPS 8{rpps(1)}\) is already in the directory"):
        await mailboxes.add_professional(ca, settings, professional(1, "Other", "Person"))
    bad = professional(2)
    bad.id_value = "10000000020"  # the key of 1000000002 is 5
    with pytest.raises(InvalidIdentifier, match="Luhn check digit 0 does not match the first 10 digits, expected 5"):
        await mailboxes.add_professional(ca, settings, bad)
    with pytest.raises(InvalidInput, match="profession code 'x1' must be two digits"):
        await mailboxes.add_professional(ca, settings, professional(3, profession="x1"))
    with pytest.raises(InvalidInput, match=r"first name .* needs at least one letter"):
        await mailboxes.add_professional(ca, settings, professional(4, "---", "Martin"))
    with pytest.raises(NotFound, match=f"organisation 1{finess(99)} is not in the directory"):
        await mailboxes.add_professional(ca, settings, professional(5, organisations=["1" + finess(99)]))
    with pytest.raises(IdentityNotQualified, match=r"identity status PROV; only a qualified INS \(status VALI\)"):
        await mailboxes.add_patient(ca, settings, patient(1, status="PROV"))
    assert await counts(ca) == before  # no row and no certificate


async def test_patient_mailbox(ca: Database, settings: Settings) -> None:
    info = await mailboxes.add_patient(ca, settings, patient(7, department="2A"))
    assert info.address.endswith("@patient.carnet.test")
    assert "2a" in info.address and info.kind is MailboxKind.PAT and info.ins == info.address[:15].upper()
    record = await authority.get_certificate(ca, info.certificate_serial)
    assert record.authority == "persons" and record.emails == (info.address,)
    with pytest.raises(Duplicate, match="is already in the directory"):
        await mailboxes.add_patient(ca, settings, patient(7, department="2A"))
    # Downgrading the identity stops delivery; the mailbox itself remains.
    await mailboxes.set_identity_status(ca, settings, info.ins or "", "DOUTE")
    looked_up = await mailboxes.lookup_mailbox(ca, info.address)
    assert looked_up is not None and not looked_up.deliverable and "not VALI" in looked_up.reason
    assert (await certificates_for(ca, settings, info.address)).status is LookupStatus.NO_CERTIFICATE


async def test_test_oids_refused_outside_test_mode(ca: Database, settings: Settings) -> None:
    production = settings.model_copy(update={"test_mode": False})
    data = patient(8)
    data.ins_oid = "1.2.250.1.213.1.4.10"
    with pytest.raises(InvalidIdentifier, match="refused outside test mode"):
        await mailboxes.add_patient(ca, production, data)
    assert (await mailboxes.add_patient(ca, settings, data)).kind is MailboxKind.PAT


async def test_disable_revokes_and_renew_supersedes(ca: Database, settings: Settings) -> None:
    info = await mailboxes.add_professional(ca, settings, professional(1))
    renewed = await mailboxes.renew_certificate(ca, settings, info.address, key_type="p256")
    assert renewed.certificate_serial != info.certificate_serial
    old = await authority.get_certificate(ca, info.certificate_serial)
    assert old.revocation_reason == "superseded"
    new = await authority.get_certificate(ca, renewed.certificate_serial)
    assert new.key_type == "p256" and new.status() == "valid"
    lookup = await certificates_for(ca, settings, info.address)
    assert lookup.found and lookup.serials == (renewed.certificate_serial,)

    disabled = await mailboxes.disable_mailbox(ca, settings, info.address)
    assert not disabled.active and not disabled.deliverable
    revoked = await authority.get_certificate(ca, renewed.certificate_serial)
    assert revoked.revocation_reason == "cessationOfOperation"
    assert (await certificates_for(ca, settings, info.address)).status is LookupStatus.NO_CERTIFICATE
    with pytest.raises(InvalidInput, match="already disabled"):
        await mailboxes.disable_mailbox(ca, settings, info.address)
    with pytest.raises(InvalidInput, match="is disabled: its certificate is not renewed"):
        await mailboxes.renew_certificate(ca, settings, info.address)


async def test_failed_write_revokes_the_certificate(ca: Database, settings: Settings,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    before = await counts(ca)

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(mailboxes, "write_professional", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        await mailboxes.add_professional(ca, settings, professional(1))
    after = await counts(ca)
    assert after["dir_mailboxes"] == before["dir_mailboxes"] and after["dir_professionals"] == 0
    [orphan] = [c for c in await authority.list_certificates(ca, profile="smime")]
    assert orphan.revocation_reason == "cessationOfOperation"  # issued, then revoked: never published


async def test_red_list_hides_from_search_not_from_delivery(ca: Database, settings: Settings) -> None:
    from carnet.directory.records import SearchQuery
    from carnet.directory.search import search

    info = await mailboxes.add_professional(ca, settings, professional(1, "Zoé", "Secret"))
    assert (await search(ca, SearchQuery(name="secret"))).total == 1
    await mailboxes.set_red_list(ca, info.address, True)
    assert (await search(ca, SearchQuery(name="secret"))).total == 0
    assert (await mailboxes.lookup_mailbox(ca, info.address)).deliverable  # type: ignore[union-attr]
    assert (await certificates_for(ca, settings, info.address)).found
    assert [m.address for m in await mailboxes.list_mailboxes(ca)] == []
    assert [m.address for m in await mailboxes.list_mailboxes(ca, include_red_list=True)] == [info.address]


async def test_apps_practices_and_services(ca: Database, settings: Settings) -> None:
    created = await mailboxes.add_organisation(ca, settings, organisation(2, "Cabinet Dupont", "Lyon"),
                                               services=["Accueil", "Secrétariat médical"], practice=True)
    assert [(m.address, m.kind) for m in created] == [
        ("cabinet-dupont@carnet.test", MailboxKind.CAB),
        ("accueil@carnet.test", MailboxKind.ORG),
        ("secretariat-medical@carnet.test", MailboxKind.ORG),
    ]
    app = await mailboxes.add_app(ca, settings, AppInput("Mon Suivi", "1" + finess(2), "contact@monsuivi.example"))
    assert app.address == "mon-suivi@carnet.test" and app.kind is MailboxKind.APP
    assert (await authority.get_certificate(ca, app.certificate_serial)).authority == "organisations"
    with pytest.raises(Duplicate, match="already in the directory"):
        await mailboxes.add_app(ca, settings, AppInput("mon suivi", "1" + finess(2), "contact@monsuivi.example"))
    with pytest.raises(InvalidInput, match="reserved address 'postmaster'"):
        await mailboxes.add_service(ca, settings, "1" + finess(2), "Postmaster")
    second = await mailboxes.add_service(ca, settings, "1" + finess(2), "Accueil")
    assert second.address == "accueil2@carnet.test"
    with pytest.raises(Duplicate, match=r"address accueil@carnet\.test is already taken"):
        await mailboxes.add_service(ca, settings, "1" + finess(2), "Front desk", local_part="accueil")
    details = await mailboxes.describe(ca, app.address)
    assert details["publisher"] == "Cabinet Dupont"


async def test_orphan_certificates_are_found_and_revoked(ca: Database, settings: Settings) -> None:
    from datetime import timedelta

    info = await mailboxes.add_professional(ca, settings, professional(1))
    # A process that stopped between issuing a certificate and writing its mailbox leaves this behind.
    spec = mailboxes.CertificateSpec(MailboxKind.PER, "Lost Soul", None)
    lost = await mailboxes.issue_certificate(ca, settings, spec, "lost.soul@carnet.test")
    assert await mailboxes.orphan_certificates(ca, settings) == []  # too young: may be in progress
    orphans = await mailboxes.orphan_certificates(ca, settings, older_than=timedelta(seconds=-3600))
    assert [o.serial for o in orphans] == [lost]
    assert await mailboxes.revoke_orphan_certificates(ca, settings, older_than=timedelta(seconds=-3600)) == [lost]
    assert (await authority.get_certificate(ca, lost)).revocation_reason == "cessationOfOperation"
    assert (await authority.get_certificate(ca, info.certificate_serial)).revoked_at is None
