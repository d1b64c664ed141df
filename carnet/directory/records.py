"""Plain data of the directory: what callers give (``*Input``), what they get back, and the errors."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime


class MailboxKind(enum.StrEnum):
    """Mailbox types of the MSSanté space: personal, organisational, application, practice, and the patient's."""

    PER = "PER"
    ORG = "ORG"
    APP = "APP"
    CAB = "CAB"
    PAT = "PAT"


class IdentityStatus(enum.StrEnum):
    """Identity reliability (ANS FR Core ``fr-core-cs-identity-reliability``; RNIV). Only VALI goes into messages."""

    VIDE = "VIDE"  # not yet qualified
    PROV = "PROV"  # provisional
    VALI = "VALI"  # validated: INS qualified through the INSi service
    DOUTE = "DOUTE"  # doubtful
    FICTI = "FICTI"  # fictitious


class RepresentativeRole(enum.StrEnum):
    PARENT = "parent"  # holder of parental authority over a minor
    GUARDIAN = "guardian"  # tuteur
    CURATOR = "curator"  # curateur


class DirectoryError(Exception):
    """Base of the directory's errors."""


class InvalidInput(DirectoryError, ValueError):
    """A value does not satisfy a rule; the message names the field and the rule."""


class Duplicate(DirectoryError, ValueError):
    """The identity, name or address already exists."""


class NotFound(DirectoryError, LookupError):
    """No such mailbox, identity or operator."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0]) if self.args else ""


class IdentityNotQualified(DirectoryError, ValueError):
    """The patient's identity status is not VALI: the INS may not be used in messages."""


@dataclass(slots=True)
class ProfessionalInput:
    id_type: str  # RPPS | ADELI
    id_value: str
    first_name: str
    last_name: str
    profession_code: str  # TRE_G15-ProfessionSante, e.g. "10" (médecin)
    specialty_code: str | None = None  # TRE_R38-SpecialiteOrdinale, e.g. "SM26"
    organisations: list[str] = field(default_factory=list)  # IDNST of the organisations worked for


@dataclass(slots=True)
class OrganisationInput:
    id_type: str  # FINESS | SIRET
    id_value: str
    name: str
    street: str | None = None
    postal_code: str | None = None
    city: str | None = None


@dataclass(slots=True)
class PatientInput:
    ins: str
    birth_name: str
    first_names: str
    birth_date: date
    sex: str  # M | F | I
    birthplace_code: str
    ins_oid: str = "1.2.250.1.213.1.4.8"
    identity_status: str = IdentityStatus.VALI


@dataclass(slots=True)
class AppInput:
    name: str
    publisher: str  # IDNST of the publisher organisation
    contact: str


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    """A mailbox as routing, authentication and the CLI see it."""

    id: int
    address: str
    kind: MailboxKind
    display_name: str
    red_list: bool
    certificate_serial: str
    created_at: datetime
    disabled_at: datetime | None = None
    #: IDNPS of the professional (PER), IDNST of the organisation (ORG, CAB) or of the publisher (APP).
    national_id: str | None = None
    ins: str | None = None
    service: str | None = None
    organisation: str | None = None
    #: False when mail must not be delivered (disabled mailbox, patient identity no longer VALI).
    deliverable: bool = True
    reason: str = ""

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class AppPasswordInfo:
    id: int
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Directory search criteria (all optional, combined with AND); text is matched accent- and case-insensitively."""

    text: str | None = None  # any of: name, organisation, service
    name: str | None = None
    profession: str | None = None
    specialty: str | None = None
    organisation: str | None = None
    city: str | None = None
    rpps: str | None = None
    finess: str | None = None
    kind: MailboxKind | None = None


@dataclass(frozen=True, slots=True)
class SearchHit:
    address: str
    kind: MailboxKind
    display_name: str
    national_id: str | None
    profession: str | None
    specialty: str | None
    organisation: str | None
    city: str | None
    service: str | None


@dataclass(frozen=True, slots=True)
class SearchPage:
    total: int
    offset: int
    limit: int
    hits: list[SearchHit]
