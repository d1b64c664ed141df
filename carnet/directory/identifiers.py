"""National health identifiers: parsing and check digits.

- RPPS (Répertoire Partagé des Professionnels de Santé): 11 digits, the last a Luhn check digit (ISO/IEC 7812-1
  annex B). National identifier of a professional (IDNPS, OID 1.2.250.1.71.4.2.1): ``"8" + RPPS``.
- ADELI: 9 digits (department, profession, order number, key); IDNPS ``"0" + ADELI``. The ADELI key algorithm is
  not published with the identifier, so only the shape is checked.
- FINESS (Fichier National des Établissements Sanitaires et Sociaux): 9 digits, Luhn check digit; national
  identifier of a structure (IDNST, OID 1.2.250.1.71.4.2.2): ``"1" + FINESS``.
- SIRET (INSEE): 14 digits, Luhn over the whole number and over the SIREN (first 9); La Poste (SIREN 356 000 000)
  numbers its establishments so that the digit sum is a multiple of 5 instead (INSEE rule); IDNST ``"3" + SIRET``.
- INS (Identité Nationale de Santé, référentiel INS v2): the matricule is the NIR (OID 1.2.250.1.213.1.4.8) or the
  NIA (1.2.250.1.213.1.4.9): 13 characters and a 2-digit key ``97 − (number mod 97)``; the Corsican departments
  ``2A`` and ``2B`` count as ``19`` and ``18`` in the key computation. The test (.10) and demonstration (.11) OIDs
  are refused unless the instance runs in test mode.

Every check raises :class:`InvalidIdentifier`, whose message names the identifier, the value and the rule broken.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: IDNPS: national identifier of a health professional (ANS, "Annuaire Santé").
OID_IDNPS = "1.2.250.1.71.4.2.1"
#: IDNST: national identifier of a health structure.
OID_IDNST = "1.2.250.1.71.4.2.2"
#: INS matricule OIDs (référentiel INS, ANS).
OID_INS_NIR = "1.2.250.1.213.1.4.8"
OID_INS_NIA = "1.2.250.1.213.1.4.9"
OID_INS_TEST = "1.2.250.1.213.1.4.10"
OID_INS_DEMO = "1.2.250.1.213.1.4.11"
INS_OIDS = (OID_INS_NIR, OID_INS_NIA, OID_INS_TEST, OID_INS_DEMO)

#: SIREN of La Poste, whose SIRET numbers follow the "digit sum multiple of 5" rule.
LA_POSTE_SIREN = "356000000"


class InvalidIdentifier(ValueError):
    """An identifier failed a check; ``kind`` is the identifier (``"RPPS"``, ``"INS"``…), ``rule`` the rule."""

    def __init__(self, kind: str, value: str, rule: str) -> None:
        self.kind = kind
        self.value = value
        self.rule = rule
        super().__init__(f"{kind} {value!r}: {rule}")


class ProfessionalIdType(enum.StrEnum):
    RPPS = "RPPS"
    ADELI = "ADELI"


class OrganisationIdType(enum.StrEnum):
    FINESS = "FINESS"
    SIRET = "SIRET"


class InsKind(enum.StrEnum):
    NIR = "NIR"
    NIA = "NIA"
    TEST = "TEST"
    DEMO = "DEMO"


_INS_KIND_BY_OID = {
    OID_INS_NIR: InsKind.NIR,
    OID_INS_NIA: InsKind.NIA,
    OID_INS_TEST: InsKind.TEST,
    OID_INS_DEMO: InsKind.DEMO,
}


def _clean(value: str) -> str:
    """Drop the spaces, dots and dashes people type inside identifiers."""
    return "".join(ch for ch in str(value).strip() if ch not in " .-\u00a0")


def luhn_checksum(digits: str) -> int:
    """Luhn sum modulo 10 of ``digits`` (the last digit being the check digit); 0 means valid."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10


def luhn_check_digit(payload: str) -> int:
    """The Luhn check digit to append to ``payload``."""
    return (10 - luhn_checksum(payload + "0")) % 10


def _digits(kind: str, value: str, length: int) -> str:
    cleaned = _clean(value)
    if not cleaned.isascii() or not cleaned.isdigit():
        raise InvalidIdentifier(kind, value, f"must contain only digits ({length} expected)")
    if len(cleaned) != length:
        raise InvalidIdentifier(kind, value, f"must be {length} digits long, got {len(cleaned)}")
    return cleaned


def _luhn(kind: str, value: str, number: str, what: str) -> None:
    if luhn_checksum(number) != 0:
        expected = luhn_check_digit(number[:-1])
        raise InvalidIdentifier(
            kind, value, f"Luhn check digit {number[-1]} does not match {what}, expected {expected}"
        )


def validate_rpps(value: str) -> str:
    """An RPPS number: 11 digits with a Luhn check digit. Returns the canonical digits."""
    number = _digits("RPPS", value, 11)
    _luhn("RPPS", value, number, "the first 10 digits")
    return number


def validate_adeli(value: str) -> str:
    """An ADELI number: 9 digits. Returns the canonical digits."""
    return _digits("ADELI", value, 9)


def validate_finess(value: str) -> str:
    """A FINESS number: 9 digits with a Luhn check digit."""
    number = _digits("FINESS", value, 9)
    _luhn("FINESS", value, number, "the first 8 digits")
    return number


def validate_siret(value: str) -> str:
    """A SIRET number: 14 digits, Luhn-valid SIREN and SIRET, or La Poste's digit-sum rule."""
    number = _digits("SIRET", value, 14)
    siren = number[:9]
    if siren == LA_POSTE_SIREN:
        if luhn_checksum(number) != 0 and sum(int(d) for d in number) % 5 != 0:
            raise InvalidIdentifier(
                "SIRET",
                value,
                f"La Poste establishment (SIREN {LA_POSTE_SIREN}): digit sum {sum(int(d) for d in number)} "
                "is not a multiple of 5",
            )
        return number
    if luhn_checksum(siren) != 0:
        raise InvalidIdentifier(
            "SIRET",
            value,
            f"SIREN {siren}: Luhn check digit {siren[-1]} is wrong, expected {luhn_check_digit(siren[:-1])}",
        )
    _luhn("SIRET", value, number, "the first 13 digits")
    return number


# National identifiers (IDNPS, IDNST) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfessionalId:
    """An RPPS or ADELI number and the IDNPS derived from it (OID 1.2.250.1.71.4.2.1)."""

    type: ProfessionalIdType
    value: str

    @property
    def national_id(self) -> str:
        return ("8" if self.type is ProfessionalIdType.RPPS else "0") + self.value


@dataclass(frozen=True, slots=True)
class OrganisationId:
    """A FINESS or SIRET number and the IDNST derived from it (OID 1.2.250.1.71.4.2.2)."""

    type: OrganisationIdType
    value: str

    @property
    def national_id(self) -> str:
        return ("1" if self.type is OrganisationIdType.FINESS else "3") + self.value


def professional_id(id_type: str, value: str) -> ProfessionalId:
    kind = ProfessionalIdType(id_type.upper())
    number = validate_rpps(value) if kind is ProfessionalIdType.RPPS else validate_adeli(value)
    return ProfessionalId(kind, number)


def organisation_id(id_type: str, value: str) -> OrganisationId:
    kind = OrganisationIdType(id_type.upper())
    number = validate_finess(value) if kind is OrganisationIdType.FINESS else validate_siret(value)
    return OrganisationId(kind, number)


def parse_professional_national_id(value: str) -> ProfessionalId:
    """An IDNPS (``8`` + RPPS or ``0`` + ADELI) back to its parts."""
    cleaned = _clean(value)
    if cleaned[:1] == "8":
        return ProfessionalId(ProfessionalIdType.RPPS, validate_rpps(cleaned[1:]))
    if cleaned[:1] == "0":
        return ProfessionalId(ProfessionalIdType.ADELI, validate_adeli(cleaned[1:]))
    raise InvalidIdentifier("IDNPS", value, "must start with 8 (RPPS) or 0 (ADELI)")


def parse_organisation_national_id(value: str) -> OrganisationId:
    """An IDNST (``1`` + FINESS or ``3`` + SIRET) back to its parts."""
    cleaned = _clean(value)
    if cleaned[:1] == "1":
        return OrganisationId(OrganisationIdType.FINESS, validate_finess(cleaned[1:]))
    if cleaned[:1] == "3":
        return OrganisationId(OrganisationIdType.SIRET, validate_siret(cleaned[1:]))
    raise InvalidIdentifier("IDNST", value, "must start with 1 (FINESS) or 3 (SIRET)")


# INS -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ins:
    """An INS matricule (15 characters, upper-case ``2A``/``2B``) and its OID."""

    matricule: str
    oid: str

    @property
    def kind(self) -> InsKind:
        return _INS_KIND_BY_OID[self.oid]

    @property
    def local_part(self) -> str:
        """The patient's mailbox local part: the matricule, lower-case (``…2a…``)."""
        return self.matricule.lower()


def ins_key(number: str) -> int:
    """The INS/NIR key of a 13-character number: 97 − (number mod 97); 2A counts as 19, 2B as 18."""
    upper = number.upper()
    digits = upper[:5] + upper[5:7].replace("2A", "19").replace("2B", "18") + upper[7:]
    return 97 - int(digits) % 97


def validate_ins(value: str, oid: str = OID_INS_NIR, *, test_mode: bool = False) -> Ins:
    """An INS matricule (NIR or NIA) with its OID; test and demo OIDs need ``test_mode``.

    The shape checked (référentiel INS; NIR structure by INSEE): 1 sex digit (1–4 for a NIR, 7–8 for a NIA), 2 digits
    of birth year, 2 of month, 2 of department (digits, or ``2A``/``2B``), 3 of commune, 3 of order, 2 of key.
    """
    if oid not in _INS_KIND_BY_OID:
        raise InvalidIdentifier("INS", value, f"OID {oid} is not an INS OID (expected one of {', '.join(INS_OIDS)})")
    kind = _INS_KIND_BY_OID[oid]
    if kind in (InsKind.TEST, InsKind.DEMO) and not test_mode:
        raise InvalidIdentifier(
            "INS", value, f"{kind.value.lower()} OID {oid} is refused outside test mode (settings.test_mode)"
        )
    cleaned = _clean(value).upper()
    if len(cleaned) != 15:
        raise InvalidIdentifier("INS", value, f"must be 15 characters (13 + 2-digit key), got {len(cleaned)}")
    body, key = cleaned[:13], cleaned[13:]
    department = body[5:7]
    rest = body[:5] + body[7:]
    if not (rest.isascii() and rest.isdigit()) or not (
        department in ("2A", "2B") or (department.isascii() and department.isdigit())
    ):
        raise InvalidIdentifier(
            "INS", value, "must be digits, except the department (characters 6-7) which may be 2A or 2B"
        )
    if not (key.isascii() and key.isdigit()):
        raise InvalidIdentifier("INS", value, f"key {key!r} must be 2 digits")
    first = body[0]
    if kind is InsKind.NIA and first not in "78":
        raise InvalidIdentifier("INS", value, f"an NIA starts with 7 or 8, not {first}")
    if kind is not InsKind.NIA and first not in "1234":
        hint = " (7 and 8 start an NIA: use OID " + OID_INS_NIA + ")" if first in "78" else ""
        raise InvalidIdentifier("INS", value, f"a NIR starts with 1, 2, 3 or 4, not {first}{hint}")
    expected = ins_key(body)
    if int(key) != expected:
        raise InvalidIdentifier("INS", value, f"INS key {key} does not match 13 digits, expected {expected:02d}")
    return Ins(cleaned, oid)


def looks_like_ins(value: str) -> bool:
    """True when ``value`` has the shape of an INS matricule (used to tell an INS login from an address)."""
    cleaned = _clean(value).upper()
    return len(cleaned) == 15 and "@" not in cleaned and cleaned.replace("2A", "00", 1).replace("2B", "00", 1).isdigit()


def normalise_matricule(value: str) -> str:
    """An INS matricule as stored (separators dropped, ``2A``/``2B`` upper case), without checking it."""
    return _clean(value).upper()


# Synthetic identifiers (demos, tests, benchmarks) -------------------------------------------------------------------


def synthetic_rpps(n: int) -> str:
    """A well-formed RPPS number (Luhn) for the ``n``-th synthetic professional: ``10`` + 8 digits + check digit."""
    body = f"10{n:08d}"
    return body + str(luhn_check_digit(body))


def synthetic_finess(n: int) -> str:
    """A well-formed FINESS number (Luhn) in department 75 for the ``n``-th synthetic organisation."""
    body = f"75{n:06d}"
    return body + str(luhn_check_digit(body))


def synthetic_nir(n: int) -> str:
    """A well-formed NIR (with its key) of a woman born in Paris in 1985, distinct for each ``n`` below 10⁶."""
    body = f"285{(n % 12) + 1:02d}75{n % 1000:03d}{n // 1000 % 1000:03d}"
    return body + f"{ins_key(body):02d}"
