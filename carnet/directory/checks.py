"""Validation of identity data before anything is written (pure functions, no I/O).

Each ``check_*`` returns a normalised, frozen record or raises :class:`InvalidInput` / :class:`InvalidIdentifier`
with a message naming the field and the rule. Nomenclatures: professions from ANS NOS ``TRE_G15-ProfessionSante``
(two digits), specialties from ``TRE_R38-SpecialiteOrdinale`` (e.g. ``SM26``); identity status from ANS FR Core
``fr-core-cs-identity-reliability``; birthplace as an INSEE COG commune code (``99xxx`` for a country abroad).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from carnet.directory.addresses import AddressError, name_base, professional_base, search_key
from carnet.directory.identifiers import (
    Ins,
    OrganisationId,
    ProfessionalId,
    organisation_id,
    parse_organisation_national_id,
    professional_id,
    validate_ins,
)
from carnet.directory.records import (
    AppInput,
    IdentityStatus,
    InvalidInput,
    OrganisationInput,
    PatientInput,
    ProfessionalInput,
)

#: Labels of the most common TRE_G15 profession codes (display only: other two-digit codes are accepted).
PROFESSIONS = {
    "10": "Médecin",
    "21": "Pharmacien",
    "40": "Chirurgien-dentiste",
    "50": "Sage-femme",
    "60": "Infirmier",
    "70": "Masseur-kinésithérapeute",
    "80": "Pédicure-podologue",
    "91": "Orthophoniste",
    "92": "Orthoptiste",
}
_PROFESSION = re.compile(r"\d{2}")
_SPECIALTY = re.compile(r"[A-Z]{1,4}\d{1,4}")
_POSTAL_CODE = re.compile(r"\d{5}")
_BIRTHPLACE = re.compile(r"\d{5}|2[AB]\d{3}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
MAX_NAME = 100


def text(value: str | None, field: str, *, limit: int = MAX_NAME, required: bool = True) -> str | None:
    """A name-like field: printable, trimmed, 1..``limit`` characters, at least one letter or digit."""
    if value is None or not str(value).strip():
        if required:
            raise InvalidInput(f"{field} is required")
        return None
    cleaned = " ".join(str(value).split())
    if len(cleaned) > limit:
        raise InvalidInput(f"{field} is {len(cleaned)} characters long, the limit is {limit}")
    if not cleaned.isprintable() or any(ch in cleaned for ch in '<>"\\;'):
        raise InvalidInput(f'{field} {cleaned!r} contains characters not allowed in a name (<, >, ", \\, ;)')
    if not any(ch.isalnum() for ch in cleaned):
        raise InvalidInput(f"{field} {cleaned!r} needs at least one letter or digit")
    return cleaned


@dataclass(frozen=True, slots=True)
class CheckedProfessional:
    id: ProfessionalId
    first_name: str
    last_name: str
    profession_code: str
    specialty_code: str | None
    organisations: tuple[str, ...]  # IDNST

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def address_base(self) -> str:
        return professional_base(self.first_name, self.last_name)


@dataclass(frozen=True, slots=True)
class CheckedOrganisation:
    id: OrganisationId
    name: str
    street: str | None
    postal_code: str | None
    city: str | None


@dataclass(frozen=True, slots=True)
class CheckedPatient:
    ins: Ins
    birth_name: str
    first_names: str
    birth_date: date
    sex: str
    birthplace_code: str
    identity_status: IdentityStatus

    @property
    def display_name(self) -> str:
        return f"{self.first_names.split()[0]} {self.birth_name}"


@dataclass(frozen=True, slots=True)
class CheckedApp:
    name: str
    publisher: str  # IDNST
    contact: str
    address_base: str


def check_professional(data: ProfessionalInput) -> CheckedProfessional:
    if str(data.id_type).upper() not in ("RPPS", "ADELI"):
        raise InvalidInput(f"professional identifier type {data.id_type!r} must be RPPS or ADELI")
    pid = professional_id(data.id_type, data.id_value)
    first = text(data.first_name, "first name")
    last = text(data.last_name, "last name")
    assert first is not None and last is not None
    profession = str(data.profession_code or "").strip()
    if not _PROFESSION.fullmatch(profession):
        raise InvalidInput(f"profession code {profession!r} must be two digits (TRE_G15-ProfessionSante, e.g. 10)")
    specialty = (data.specialty_code or "").strip().upper() or None
    if specialty is not None and not _SPECIALTY.fullmatch(specialty):
        raise InvalidInput(f"specialty code {specialty!r} must look like SM26 (TRE_R38-SpecialiteOrdinale)")
    organisations = tuple(dict.fromkeys(parse_organisation_national_id(o).national_id for o in data.organisations))
    checked = CheckedProfessional(pid, first, last, profession, specialty, organisations)
    try:
        checked.address_base  # noqa: B018  (raises when the names give no address)
    except AddressError as exc:
        raise InvalidInput(str(exc)) from None
    return checked


def check_organisation(data: OrganisationInput) -> CheckedOrganisation:
    if str(data.id_type).upper() not in ("FINESS", "SIRET"):
        raise InvalidInput(f"organisation identifier type {data.id_type!r} must be FINESS or SIRET")
    oid = organisation_id(data.id_type, data.id_value)
    name = text(data.name, "organisation name", limit=200)
    assert name is not None
    street = text(data.street, "street", limit=200, required=False)
    postal_code = (data.postal_code or "").strip() or None
    if postal_code is not None and not _POSTAL_CODE.fullmatch(postal_code):
        raise InvalidInput(f"postal code {postal_code!r} must be 5 digits")
    city = text(data.city, "city", required=False)
    return CheckedOrganisation(oid, name, street, postal_code, city)


def check_patient(data: PatientInput, *, test_mode: bool) -> CheckedPatient:
    ins = validate_ins(data.ins, data.ins_oid, test_mode=test_mode)
    birth_name = text(data.birth_name, "birth name")
    first_names = text(data.first_names, "first names", limit=200)
    assert birth_name is not None and first_names is not None
    birth_date = data.birth_date
    if isinstance(birth_date, str):
        try:
            birth_date = date.fromisoformat(birth_date)
        except ValueError:
            raise InvalidInput(f"birth date {birth_date!r} must be a date as YYYY-MM-DD") from None
    if birth_date > date.today() or birth_date.year < 1850:
        raise InvalidInput(f"birth date {birth_date.isoformat()} is not plausible (1850 to today)")
    sex = str(data.sex or "").strip().upper()
    if sex not in ("M", "F", "I"):
        raise InvalidInput(f"sex {data.sex!r} must be M, F or I (INS traits)")
    birthplace = str(data.birthplace_code or "").strip().upper()
    if not _BIRTHPLACE.fullmatch(birthplace):
        raise InvalidInput(
            f"birthplace code {data.birthplace_code!r} must be an INSEE code of 5 characters (e.g. 75056, 2A004, 99134)"
        )
    try:
        status = IdentityStatus(str(data.identity_status).strip().upper())
    except ValueError:
        choices = ", ".join(s.value for s in IdentityStatus)
        raise InvalidInput(f"identity status {data.identity_status!r} must be one of {choices}") from None
    return CheckedPatient(ins, birth_name, first_names, birth_date, sex, birthplace, status)


def check_app(data: AppInput) -> CheckedApp:
    name = text(data.name, "app name")
    assert name is not None
    publisher = parse_organisation_national_id(data.publisher).national_id
    contact = str(data.contact or "").strip()
    if not (_EMAIL.fullmatch(contact) or contact.startswith("https://")) or len(contact) > 254:
        raise InvalidInput(f"app contact {contact!r} must be an e-mail address or an https:// URL")
    try:
        base = name_base(name, "app name")
    except AddressError as exc:
        raise InvalidInput(str(exc)) from None
    return CheckedApp(name, publisher, contact, base)


def check_service(service: str) -> tuple[str, str]:
    """A service name and its address base."""
    name = text(service, "service name")
    assert name is not None
    try:
        return name, name_base(name, "service")
    except AddressError as exc:
        raise InvalidInput(str(exc)) from None


def display_key(*parts: str | None) -> str:
    return search_key(" ".join(p for p in parts if p))
