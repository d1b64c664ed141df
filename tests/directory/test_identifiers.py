"""National identifiers and addresses: known-valid and known-invalid values, messages that name the rule."""

import pytest
from dirhelp import finess, nir, rpps, siret
from hypothesis import given
from hypothesis import strategies as st

from carnet.directory.addresses import candidate, first_free, fold, professional_base, search_key, slug
from carnet.directory.identifiers import (
    OID_INS_DEMO,
    OID_INS_NIA,
    OID_INS_NIR,
    OID_INS_TEST,
    InvalidIdentifier,
    ins_key,
    luhn_check_digit,
    luhn_checksum,
    organisation_id,
    parse_organisation_national_id,
    parse_professional_national_id,
    professional_id,
    validate_adeli,
    validate_finess,
    validate_ins,
    validate_rpps,
    validate_siret,
)

# A NIR from INSEE's documentation of the key, and the same birth in Corsica.
KNOWN_NIR = "269054958815780"


def test_rpps_luhn() -> None:
    assert validate_rpps("10000000009") == "10000000009"
    assert validate_rpps(" 1000 0000 009 ") == "10000000009"
    with pytest.raises(InvalidIdentifier, match=r"Luhn check digit 8 does not match the first 10 digits, expected 9"):
        validate_rpps("10000000008")
    with pytest.raises(InvalidIdentifier, match="must be 11 digits long, got 10"):
        validate_rpps("1000000000")
    with pytest.raises(InvalidIdentifier, match="only digits"):
        validate_rpps("1000000000A")


def test_adeli_shape_and_idnps() -> None:
    assert validate_adeli("751234567") == "751234567"
    with pytest.raises(InvalidIdentifier, match="must be 9 digits long"):
        validate_adeli("7512345678")
    assert professional_id("RPPS", "10000000009").national_id == "810000000009"
    assert professional_id("adeli", "751234567").national_id == "0751234567"
    assert parse_professional_national_id("810000000009").value == "10000000009"
    with pytest.raises(InvalidIdentifier, match="must start with 8"):
        parse_professional_national_id("910000000009")


def test_finess_luhn_and_idnst() -> None:
    value = finess(1)
    assert validate_finess(value) == value
    bad = value[:-1] + str((int(value[-1]) + 1) % 10)
    with pytest.raises(InvalidIdentifier, match=rf"FINESS '{bad}': Luhn check digit .* expected {value[-1]}"):
        validate_finess(bad)
    assert organisation_id("FINESS", value).national_id == "1" + value
    assert parse_organisation_national_id("1" + value).value == value


def test_siret_luhn_and_la_poste() -> None:
    assert validate_siret("73282932000074") == "73282932000074"
    assert validate_siret(siret(1234)) == siret(1234)
    with pytest.raises(InvalidIdentifier, match="Luhn check digit 5 does not match the first 13 digits"):
        validate_siret("73282932000075")
    with pytest.raises(InvalidIdentifier, match=r"SIREN 732829321: Luhn check digit 1 is wrong, expected 0"):
        validate_siret("73282932100074")
    # La Poste: head office Luhn-valid; establishments valid when the digit sum is a multiple of 5.
    assert validate_siret("35600000000048")
    assert validate_siret("35600000049990")  # digit sum 45, not Luhn-valid
    assert luhn_checksum("35600000049990") != 0
    with pytest.raises(InvalidIdentifier, match=r"La Poste establishment .* digit sum 54 is not a multiple of 5"):
        validate_siret("35600000049999")
    assert organisation_id("SIRET", "73282932000074").national_id == "373282932000074"


def test_ins_nir_key() -> None:
    ins = validate_ins(KNOWN_NIR)
    assert ins.matricule == KNOWN_NIR and ins.oid == OID_INS_NIR and ins.kind.value == "NIR"
    assert validate_ins("2 69 05 49 588 157 80").matricule == KNOWN_NIR
    with pytest.raises(InvalidIdentifier, match="INS key 42 does not match 13 digits, expected 80"):
        validate_ins("269054958815742")
    with pytest.raises(InvalidIdentifier, match=r"must be 15 characters \(13 \+ 2-digit key\), got 14"):
        validate_ins("26905495881578")
    with pytest.raises(InvalidIdentifier, match="may be 2A or 2B"):
        validate_ins("2690549X8815780")


def test_ins_corsica() -> None:
    # 2A counts as 19 and 2B as 18 in the key computation.
    assert ins_key("185052A123456") == ins_key("1850519123456") == 33
    assert ins_key("185052B123456") == ins_key("1850518123456") == 60
    assert validate_ins("185052A12345633").local_part == "185052a12345633"
    assert validate_ins("185052b12345660").matricule == "185052B12345660"
    with pytest.raises(InvalidIdentifier, match="INS key 60 does not match 13 digits, expected 33"):
        validate_ins("185052A12345660")


def test_ins_nia_and_oids() -> None:
    nia = "7" + KNOWN_NIR[1:13]
    nia += f"{ins_key(nia):02d}"
    assert validate_ins(nia, OID_INS_NIA).kind.value == "NIA"
    with pytest.raises(InvalidIdentifier, match="an NIA starts with 7 or 8, not 2"):
        validate_ins(KNOWN_NIR, OID_INS_NIA)
    with pytest.raises(InvalidIdentifier, match="7 and 8 start an NIA"):
        validate_ins(nia, OID_INS_NIR)
    for oid in (OID_INS_TEST, OID_INS_DEMO):
        with pytest.raises(InvalidIdentifier, match=r"OID .* is refused outside test mode"):
            validate_ins(KNOWN_NIR, oid)
        assert validate_ins(KNOWN_NIR, oid, test_mode=True).oid == oid
    with pytest.raises(InvalidIdentifier, match="is not an INS OID"):
        validate_ins(KNOWN_NIR, "1.2.3")


@given(st.integers(min_value=0, max_value=99_999_999), st.integers(min_value=0, max_value=9), st.data())
def test_luhn_detects_every_single_digit_error(n: int, delta: int, data: st.DataObject) -> None:
    value = rpps(n)
    assert validate_rpps(value) == value
    position = data.draw(st.integers(min_value=0, max_value=10))
    if delta:
        changed = value[:position] + str((int(value[position]) + delta) % 10) + value[position + 1 :]
        with pytest.raises(InvalidIdentifier):
            validate_rpps(changed)


@given(st.integers(min_value=0, max_value=999_999), st.sampled_from(["75", "2A", "2B", "99"]), st.integers(1, 96))
def test_ins_key_round_trip(n: int, department: str, wrong: int) -> None:
    value = nir(n, department=department)
    assert validate_ins(value).matricule == value
    key = (int(value[-2:]) + wrong - 1) % 97 + 1
    if key != int(value[-2:]):
        with pytest.raises(InvalidIdentifier, match="does not match 13 digits"):
            validate_ins(value[:-2] + f"{key:02d}")


def test_luhn_check_digit() -> None:
    assert luhn_check_digit("7992739871") == 3  # the classic example
    assert luhn_checksum("79927398713") == 0


def test_address_folding() -> None:
    assert fold("Éloïse Œdipe Straße") == "eloise oedipe strasse"
    assert slug("Jean Pierre") == "jean-pierre"
    assert slug("D'Ornano") == "d-ornano"
    assert professional_base("Anne-Sophie", "Le Goff-Müller") == "anne-sophie.le-goff-muller"
    assert search_key("Saint-Étienne") == "saint etienne"


def test_collision_rule_is_deterministic_and_fits_64() -> None:
    taken = {"anne.martin", "anne.martin2"}
    assert first_free("anne.martin", taken.__contains__) == "anne.martin3"
    long_base = "a" * 30 + "." + "b" * 40
    assert len(candidate(long_base, 1)) == 64
    assert candidate(long_base, 12).endswith("12") and len(candidate(long_base, 12)) == 64
