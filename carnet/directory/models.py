"""Tables of the directory (migration ``0002_directory``). Only :mod:`carnet.directory.store` uses them.

- ``dir_organisations``, ``dir_professionals``, ``dir_affiliations`` (who works where: a PractitionerRole),
  ``dir_patients``, ``dir_representatives`` (legal representatives acting for a patient), ``dir_apps``: identities.
- ``dir_mailboxes``: one row per address; the owner is exactly one identity (per ``kind``); the S/MIME certificate
  in force is ``certificate_serial`` (a ``pki_certificates.serial``). Addresses are never reused: a disabled
  mailbox keeps its row and its address.
- ``dir_send_as``: professionals allowed to send as an organisation's mailbox (ORG/CAB).
- ``dir_app_passwords``: per-device passwords (argon2id hashes), ``dir_throttle``: failed-login counters.
- ``dir_operators``: the trust space; ``dir_remote_certificates``: cache of peers' certificates.

``*_key`` columns hold the search form of a name (accents stripped, lower case; :func:`carnet.directory.addresses.
search_key`) so that searches behave the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime


class Organisation(Base):
    """A health structure (FINESS) or a company/practice (SIRET); IDNST in ``national_id``."""

    __tablename__ = "dir_organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    id_type: Mapped[str] = mapped_column(String(8))  # FINESS | SIRET
    id_value: Mapped[str] = mapped_column(String(14))
    national_id: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(200), index=True)
    street: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(10))
    city: Mapped[str | None] = mapped_column(String(100))
    city_key: Mapped[str | None] = mapped_column(String(100), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Professional(Base):
    """A health professional (RPPS or ADELI); IDNPS in ``national_id``."""

    __tablename__ = "dir_professionals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    id_type: Mapped[str] = mapped_column(String(8))  # RPPS | ADELI
    id_value: Mapped[str] = mapped_column(String(11))
    national_id: Mapped[str] = mapped_column(String(16), unique=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(201), index=True)  # "first last", search form
    profession_code: Mapped[str] = mapped_column(String(8), index=True)  # TRE_G15-ProfessionSante
    specialty_code: Mapped[str | None] = mapped_column(String(16), index=True)  # TRE_R38-SpecialiteOrdinale
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Affiliation(Base):
    """A professional works for an organisation (the FHIR PractitionerRole)."""

    __tablename__ = "dir_affiliations"
    __table_args__ = (UniqueConstraint("professional_id", "organisation_id", name="uq_dir_affiliations_pair"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    professional_id: Mapped[int] = mapped_column(ForeignKey("dir_professionals.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("dir_organisations.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Patient(Base):
    """A patient identified by an INS (matricule + OID) with the INS identity traits and status."""

    __tablename__ = "dir_patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ins: Mapped[str] = mapped_column(String(15), unique=True)  # matricule, upper case (2A/2B)
    ins_oid: Mapped[str] = mapped_column(String(32))
    birth_name: Mapped[str] = mapped_column(String(100))
    first_names: Mapped[str] = mapped_column(String(200))  # the list of birth first names, space separated
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(1))  # M | F | I
    birthplace_code: Mapped[str] = mapped_column(String(5))  # INSEE COG commune, or 99xxx country
    identity_status: Mapped[str] = mapped_column(String(8))  # PROV | VALI | DOUTE | FICTI | VIDE
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Representative(Base):
    """A legal representative (parent of a minor, guardian…) who may act for a patient."""

    __tablename__ = "dir_representatives"
    __table_args__ = (
        UniqueConstraint("patient_id", "representative_id", name="uq_dir_representatives_pair"),
        CheckConstraint("patient_id <> representative_id", name="not_self"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("dir_patients.id"), index=True)
    representative_id: Mapped[int] = mapped_column(ForeignKey("dir_patients.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # parent | guardian | curator
    valid_until: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class App(Base):
    """An application (the catalogue will extend it): publisher organisation, name, contact."""

    __tablename__ = "dir_apps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("dir_organisations.id"), index=True)
    contact: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Mailbox(Base):
    """A mailbox and its address: PER, ORG, APP, CAB or PAT, owned by exactly one identity."""

    __tablename__ = "dir_mailboxes"
    __table_args__ = (
        CheckConstraint(
            "(kind = 'PER' AND professional_id IS NOT NULL AND organisation_id IS NULL AND patient_id IS NULL"
            " AND app_id IS NULL)"
            " OR (kind IN ('ORG', 'CAB') AND organisation_id IS NOT NULL AND professional_id IS NULL"
            " AND patient_id IS NULL AND app_id IS NULL)"
            " OR (kind = 'APP' AND app_id IS NOT NULL AND professional_id IS NULL AND organisation_id IS NULL"
            " AND patient_id IS NULL)"
            " OR (kind = 'PAT' AND patient_id IS NOT NULL AND professional_id IS NULL AND organisation_id IS NULL"
            " AND app_id IS NULL)",
            name="one_owner",
        ),
        Index("ix_dir_mailboxes_kind_listed", "kind", "red_list", "disabled_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(254), unique=True)  # lower case
    kind: Mapped[str] = mapped_column(String(3))
    display_name: Mapped[str] = mapped_column(String(200))
    display_key: Mapped[str] = mapped_column(String(200), index=True)
    service: Mapped[str | None] = mapped_column(String(100))
    professional_id: Mapped[int | None] = mapped_column(ForeignKey("dir_professionals.id"), index=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("dir_organisations.id"), index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("dir_patients.id"), index=True)
    app_id: Mapped[int | None] = mapped_column(ForeignKey("dir_apps.id"), index=True)
    red_list: Mapped[bool] = mapped_column(Boolean, default=False)
    certificate_serial: Mapped[str] = mapped_column(String(40))  # the certificate in force (or last, if disabled)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SendAs(Base):
    """A professional allowed to send as an organisation mailbox (ORG or CAB)."""

    __tablename__ = "dir_send_as"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("dir_mailboxes.id"), primary_key=True)
    professional_id: Mapped[int] = mapped_column(ForeignKey("dir_professionals.id"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AppPassword(Base):
    """A per-device password: ``lookup`` is its public first characters, ``hash`` the argon2id hash of it all."""

    __tablename__ = "dir_app_passwords"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("dir_mailboxes.id"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    lookup: Mapped[str] = mapped_column(String(8))
    hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Throttle(Base):
    """Failed logins for one key (``acct:<login>`` or ``ip:<address or /64>``), shared by every process."""

    __tablename__ = "dir_throttle"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime())
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Operator(Base):
    """A messaging operator of the trust space (including, optionally, ourselves)."""

    __tablename__ = "dir_operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    ca_bundle_pem: Mapped[str] = mapped_column(Text)
    relay_endpoints: Mapped[list[str]] = mapped_column(JSON, default=list)
    directory_url: Mapped[str | None] = mapped_column(String(500))
    legacy_crypto: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(16))  # manual | whitelist
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RemoteCertificate(Base):
    """A cached answer of a peer's directory for one address (positive or negative), until ``expires_at``."""

    __tablename__ = "dir_remote_certificates"

    address: Mapped[str] = mapped_column(String(254), primary_key=True)
    domain: Mapped[str] = mapped_column(String(253), index=True)
    status: Mapped[str] = mapped_column(String(16))
    certificates_pem: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[str] = mapped_column(String(500), default="")
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
