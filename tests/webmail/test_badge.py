"""The signature badge: level and wording per verification status, roles from the directory."""

from __future__ import annotations

from typing import Any

import pytest
from keypool import use_pooled_keys
from sqlalchemy import event

from carnet.config import Settings
from carnet.db import Database
from carnet.directory import mailboxes
from carnet.directory.identifiers import synthetic_rpps as rpps
from carnet.directory.records import ProfessionalInput
from carnet.pki import authority
from carnet.pki.smime.result import SignerInfo, SmimeResult, Status
from carnet.webmail.badge import Badge, BadgeLevel, badge_for, describe


@pytest.fixture(autouse=True)
def _fast_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    use_pooled_keys(monkeypatch)


def stored(status: Status, national_id: str = "810001234567", **signer: Any) -> dict[str, Any]:
    """What the gateway stores for a message: ``SmimeResult.to_dict()``."""
    info = SignerInfo(
        status=status,
        common_name=signer.pop("common_name", "Dr Anne Martin"),
        emails=signer.pop("emails", ["anne.martin@carnet.test"]),
        national_id=national_id,
        chain_status="ok",
        revocation="good",
        **signer,
    )
    return SmimeResult(status, signer=info, signers=[info], from_address="anne.martin@carnet.test").to_dict()


# badge_for -------------------------------------------------------------------------------------------------------


def test_no_result_is_unsigned() -> None:
    badge = badge_for(None)
    assert badge == Badge(BadgeLevel.UNSIGNED, "unsigned")
    assert badge.label("fr") == "Message non signé"
    assert badge.label("en") == "Unsigned message"
    assert (badge.short("fr"), badge.short("en")) == ("Non signé", "Unsigned")


def test_unsigned_result_is_unsigned() -> None:
    badge = badge_for(SmimeResult(Status.UNSIGNED).to_dict())
    assert badge.level is BadgeLevel.UNSIGNED
    assert badge.status == "unsigned"
    assert badge.signer_name == ""


def test_valid_signature_is_verified() -> None:
    badge = badge_for(stored(Status.VALID))
    assert badge.level is BadgeLevel.VERIFIED
    assert badge.status == "valid"
    assert badge.signer_name == "Dr Anne Martin"
    assert badge.identifier == "RPPS 10001234567"
    assert badge.national_id == "810001234567"
    assert badge.address == "anne.martin@carnet.test"
    assert badge.label("fr") == "Signé et vérifié : Dr Anne Martin — RPPS 10001234567"
    assert badge.label("en") == "Signed and verified: Dr Anne Martin — RPPS 10001234567"
    assert (badge.short("fr"), badge.short("en")) == ("Vérifié", "Verified")


@pytest.mark.parametrize(
    ("national_id", "identifier"),
    [
        ("810001234567", "RPPS 10001234567"),
        ("0751234567", "ADELI 751234567"),
        ("1750000001", "FINESS 750000001"),
        ("373282932000074", "SIRET 73282932000074"),
        ("", ""),
        ("9123", ""),
        ("8", ""),
    ],
)
def test_identifier_from_the_national_id_prefix(national_id: str, identifier: str) -> None:
    assert badge_for(stored(Status.VALID, national_id)).identifier == identifier


@pytest.mark.parametrize("status", [s for s in Status if s not in (Status.VALID, Status.UNSIGNED)])
def test_every_other_status_is_a_warning_naming_the_problem(status: Status) -> None:
    badge = badge_for(stored(status))
    assert badge.level is BadgeLevel.WARNING
    assert badge.status == status.value
    fr, en = badge.label("fr"), badge.label("en")
    assert fr.startswith("Attention : ")
    assert en.startswith("Warning: ")
    assert "could not be verified" not in en  # a specific sentence, not the fallback
    assert "Dr Anne Martin" not in fr + en  # an unverified identity is not stated
    assert (badge.short("fr"), badge.short("en")) == ("Attention", "Warning")


def test_warning_sentences() -> None:
    def labels(status: Status) -> tuple[str, str]:
        badge = badge_for(stored(status))
        return badge.label("fr"), badge.label("en")

    assert labels(Status.REVOKED) == (
        "Attention : le certificat du signataire est révoqué",
        "Warning: the signer's certificate is revoked",
    )
    assert labels(Status.FROM_MISMATCH)[1] == "Warning: the signer is not the sender shown"
    assert labels(Status.TAMPERED) == labels(Status.BAD_SIGNATURE)
    assert "altered after signing" in labels(Status.TAMPERED)[1]
    assert "expired" in labels(Status.EXPIRED)[1]
    assert "not trusted" in labels(Status.UNTRUSTED)[1]
    assert "malformed" in labels(Status.MALFORMED)[1]
    assert "decrypted" in labels(Status.DECRYPT_FAILED)[1]


def test_unknown_or_missing_status_is_a_warning() -> None:
    assert badge_for({"status": "something_new"}).level is BadgeLevel.WARNING
    assert (
        badge_for({"status": "something_new"}).label("en") == "Warning: the message's signature could not be verified"
    )
    assert badge_for({}).level is BadgeLevel.WARNING
    assert badge_for({"status": None, "signer": "not a dict"}).status == "malformed"


def test_address_is_from_when_the_certificate_carries_it() -> None:
    data = stored(Status.VALID, emails=["cabinet@carnet.test", "Anne.Martin@carnet.test"])
    assert badge_for(data).address == "anne.martin@carnet.test"
    data["from_address"] = "someone@else.test"
    assert badge_for(data).address == "cabinet@carnet.test"
    data["signer"]["emails"] = []
    assert badge_for(data).address == ""


def test_language_selection() -> None:
    badge = badge_for(None)
    assert badge.label("en-GB") == "Unsigned message"
    assert badge.label("de") == "Message non signé"  # French is the default


# Roles ---------------------------------------------------------------------------------------------------------


def test_role_from_specialty_then_profession() -> None:
    gp = Badge(BadgeLevel.VERIFIED, "valid", "Dr Anne Martin", "RPPS 10001234567", "", "10", "SM54")
    assert (gp.role("fr"), gp.role("en")) == ("médecin généraliste", "general practitioner")
    assert gp.label("fr") == "Signé et vérifié : Dr Anne Martin — médecin généraliste — RPPS 10001234567"
    assert gp.label("en") == "Signed and verified: Dr Anne Martin — general practitioner — RPPS 10001234567"
    paediatrician = Badge(BadgeLevel.VERIFIED, "valid", profession_code="10", specialty_code="SM40")
    assert (paediatrician.role("fr"), paediatrician.role("en")) == ("pédiatre", "paediatrician")
    doctor = Badge(BadgeLevel.VERIFIED, "valid", profession_code="10", specialty_code="SM99")
    assert (doctor.role("fr"), doctor.role("en")) == ("médecin", "doctor")
    nurse = Badge(BadgeLevel.VERIFIED, "valid", "Léa Petit", profession_code="60")
    assert (nurse.role("fr"), nurse.role("en")) == ("infirmier", "nurse")
    assert nurse.label("fr") == "Signé et vérifié : Léa Petit — infirmier"
    assert Badge(BadgeLevel.VERIFIED, "valid", profession_code="99").role("fr") == ""
    assert Badge(BadgeLevel.VERIFIED, "valid").label("en") == "Signed and verified"


async def test_describe_fills_roles_from_the_directory_in_one_query(db: Database, settings: Settings) -> None:
    await authority.init_hierarchy(db, settings)
    anne = rpps(101)
    bob = rpps(102)
    await mailboxes.add_professional(db, settings, ProfessionalInput("RPPS", anne, "Anne", "Martin", "10", "SM54", []))
    await mailboxes.add_professional(db, settings, ProfessionalInput("RPPS", bob, "Bob", "Durand", "60", None, []))
    badges = [
        badge_for(stored(Status.VALID, "8" + anne)),
        badge_for(None),
        badge_for(stored(Status.VALID, "8" + bob, common_name="Bob Durand")),
        badge_for(stored(Status.VALID, "8" + rpps(103))),  # not in the directory
        badge_for(stored(Status.VALID, "1750000001", common_name="Clinique")),  # an organisation
        badge_for(stored(Status.REVOKED, "8" + anne)),
    ]
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        described = await describe(db, badges)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)

    assert len([s for s in statements if "dir_professionals" in s]) == 1
    assert [b.profession_code for b in described] == ["10", "", "60", "", "", "10"]
    assert [b.specialty_code for b in described] == ["SM54", "", "", "", "", "SM54"]
    assert described[0].label("fr") == f"Signé et vérifié : Dr Anne Martin — médecin généraliste — RPPS {anne}"
    assert described[2].role("en") == "nurse"
    assert described[1] is badges[1]
    assert described[4] == badges[4]
    assert described[5].label("fr") == "Attention : le certificat du signataire est révoqué"
    assert badges[0].specialty_code == ""  # the input is left as it was


async def test_describe_without_professionals_does_not_query(db: Database) -> None:
    badges = [badge_for(None), badge_for(stored(Status.VALID, "1750000001"))]
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        assert await describe(db, badges) == badges
        assert await describe(db, []) == []
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    assert statements == []
