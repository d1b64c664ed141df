"""Identities and their mailboxes, whose S/MIME certificates follow the mailbox's life.

Creating a mailbox issues its certificate (RFC 8550/8551 S/MIME, :func:`carnet.pki.authority.issue`): the
``persons`` CA for professionals (PER) and patients, the ``organisations`` CA for services (ORG), practices (CAB)
and apps (APP); the subject serialNumber carries the national identifier (IDNPS of the professional, IDNST of the
organisation), as IGC-Santé does. :func:`renew_certificate` issues a new certificate and revokes the old one as
``superseded``; :func:`disable_mailbox` revokes it as ``cessationOfOperation`` (RFC 5280 §5.3.1).

Atomicity: the certificate is issued first (the CA commits it in its own transaction), then the identity and the
mailbox are written in one transaction that names the certificate. If that transaction fails, the certificate is
revoked at once, so there is never a mailbox without its certificate, and a certificate without a mailbox is never
published (the directory only serves a mailbox's ``certificate_serial``). Everything that can be checked is checked
before the certificate is issued: bad input issues nothing and writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.directory import store
from carnet.directory.addresses import (
    AddressError,
    first_free,
    is_local_domain,
    name_base,
    normalise_address,
    patient_domain,
)
from carnet.directory.checks import (
    CheckedOrganisation,
    CheckedPatient,
    CheckedProfessional,
    check_app,
    check_organisation,
    check_patient,
    check_professional,
    check_service,
    display_key,
)
from carnet.directory.identifiers import looks_like_ins, normalise_matricule, parse_organisation_national_id
from carnet.directory.models import (
    Affiliation,
    App,
    Mailbox,
    Organisation,
    Patient,
    Professional,
    Representative,
    SendAs,
)
from carnet.directory.records import (
    AppInput,
    Duplicate,
    IdentityNotQualified,
    IdentityStatus,
    InvalidInput,
    MailboxInfo,
    MailboxKind,
    NotFound,
    OrganisationInput,
    PatientInput,
    ProfessionalInput,
    RepresentativeRole,
)

if TYPE_CHECKING:
    from carnet.pki.authority import CertificateRecord

log = logging.getLogger(__name__)

#: Issuing CA per mailbox kind (carnet.pki.profiles.ALLOWED_AUTHORITIES["smime"]).
AUTHORITY = {
    MailboxKind.PER: "persons",
    MailboxKind.PAT: "persons",
    MailboxKind.ORG: "organisations",
    MailboxKind.CAB: "organisations",
    MailboxKind.APP: "organisations",
}
_ADDRESS_ATTEMPTS = 3
_X520_LIMIT = 64  # RFC 5280 Appendix A: ub-common-name, ub-organization-name


@dataclass(frozen=True, slots=True)
class CertificateSpec:
    """What goes into a mailbox certificate besides its address."""

    kind: MailboxKind
    common_name: str
    national_id: str | None = None
    organisation: str | None = None
    key_type: str | None = None


def _x520(value: str | None) -> str | None:
    return value[:_X520_LIMIT].rstrip() if value else value


async def issue_certificate(db: Database, settings: Settings, spec: CertificateSpec, address: str) -> str:
    """Issue the S/MIME certificate of ``address``; returns its serial (hex)."""
    from carnet.pki.authority import IssueRequest, issue

    request = IssueRequest(
        profile="smime",
        common_name=_x520(spec.common_name) or address,
        emails=[address],
        national_id=spec.national_id,
        organisation=_x520(spec.organisation),
        key_type=spec.key_type,
        authority=AUTHORITY[spec.kind],
    )
    credential = await issue(db, settings, request)
    return credential.serial


async def discard_certificate(db: Database, settings: Settings, serial: str) -> None:
    """Revoke a certificate whose mailbox could not be written (cessationOfOperation)."""
    from carnet.pki.authority import AlreadyRevoked, revoke

    with contextlib.suppress(AlreadyRevoked):
        await revoke(db, settings, serial, reason="cessation_of_operation")
    log.info("revoked certificate %s: its mailbox was not created", serial)


async def _provision(
    db: Database,
    settings: Settings,
    spec: CertificateSpec,
    plan: Callable[[AsyncSession], Awaitable[str]],
    write: Callable[[AsyncSession, str, str], Awaitable[Mailbox]],
) -> MailboxInfo:
    """Plan an address (read-only), issue its certificate, then write identity + mailbox in one transaction.

    A lost race for the address (another process took it between plan and write) is retried with the next
    candidate; any failure of the write revokes the certificate just issued.
    """
    for attempt in range(_ADDRESS_ATTEMPTS):
        async with db.session() as session:
            address = await plan(session)
        serial = await issue_certificate(db, settings, spec, address)
        try:
            async with db.transaction() as session:
                mailbox = await write(session, address, serial)
                info = await mailbox_info(session, mailbox)
        except IntegrityError:
            await discard_certificate(db, settings, serial)
            async with db.session() as session:
                taken = await store.mailbox_by_address(session, address) is not None
            if taken and attempt + 1 < _ADDRESS_ATTEMPTS:
                continue
            raise Duplicate(f"could not create {address}: it was created concurrently or the identity exists") from None
        except BaseException:
            await discard_certificate(db, settings, serial)
            raise
        log.info("created %s mailbox %s (certificate %s)", spec.kind.value, address, serial)
        return info
    raise Duplicate("could not allocate a free address")  # pragma: no cover - loop always returns or raises


async def _free_local(session: AsyncSession, base: str, domain: str) -> str:
    taken = await store.taken_local_parts(session, base, domain)
    try:
        return first_free(base, taken.__contains__)
    except AddressError as exc:
        raise InvalidInput(str(exc)) from None


def mailbox_row(
    kind: MailboxKind,
    address: str,
    display: str,
    key: str,
    serial: str,
    *,
    red_list: bool,
    service: str | None = None,
    **owner: int,
) -> Mailbox:
    return Mailbox(
        address=address,
        kind=kind.value,
        display_name=display[:200],
        display_key=key[:200],
        service=service,
        red_list=red_list,
        certificate_serial=serial,
        created_at=utcnow(),
        **owner,
    )


# Writing identities (inside a caller's transaction; shared with the bulk importer) -------------------------------


async def write_organisation(session: AsyncSession, org: CheckedOrganisation) -> Organisation:
    row = Organisation(
        id_type=org.id.type.value,
        id_value=org.id.value,
        national_id=org.id.national_id,
        name=org.name,
        name_key=display_key(org.name),
        street=org.street,
        postal_code=org.postal_code,
        city=org.city,
        city_key=display_key(org.city) if org.city else None,
        created_at=utcnow(),
    )
    await store.add(session, row)
    return row


async def write_professional(
    session: AsyncSession, pro: CheckedProfessional, address: str, serial: str, *, red_list: bool = False
) -> Mailbox:
    organisations = await store.organisations_by_national_ids(session, pro.organisations)
    missing = [o for o in pro.organisations if o not in organisations]
    if missing:
        raise NotFound(f"organisation {', '.join(missing)} is not in the directory")
    now = utcnow()
    row = Professional(
        id_type=pro.id.type.value,
        id_value=pro.id.value,
        national_id=pro.id.national_id,
        first_name=pro.first_name,
        last_name=pro.last_name,
        name_key=display_key(pro.first_name, pro.last_name),
        profession_code=pro.profession_code,
        specialty_code=pro.specialty_code,
        created_at=now,
    )
    await store.add(session, row)
    session.add_all(
        Affiliation(professional_id=row.id, organisation_id=organisations[o].id, created_at=now)
        for o in pro.organisations
    )
    names = [part for o in pro.organisations for part in (organisations[o].name, organisations[o].city)]
    mailbox = mailbox_row(
        MailboxKind.PER,
        address,
        pro.display_name,
        display_key(pro.display_name, *names),
        serial,
        red_list=red_list,
        professional_id=row.id,
    )
    await store.add(session, mailbox)
    return mailbox


async def write_patient(
    session: AsyncSession, pat: CheckedPatient, address: str, serial: str, *, red_list: bool = False
) -> Mailbox:
    row = Patient(
        ins=pat.ins.matricule,
        ins_oid=pat.ins.oid,
        birth_name=pat.birth_name,
        first_names=pat.first_names,
        birth_date=pat.birth_date,
        sex=pat.sex,
        birthplace_code=pat.birthplace_code,
        identity_status=pat.identity_status.value,
        created_at=utcnow(),
    )
    await store.add(session, row)
    mailbox = mailbox_row(MailboxKind.PAT, address, pat.display_name, "", serial, red_list=red_list, patient_id=row.id)
    await store.add(session, mailbox)
    return mailbox


def patient_address(pat: CheckedPatient, settings: Settings) -> str:
    return f"{pat.ins.local_part}@{patient_domain(settings.domain)}"


def require_qualified(pat: CheckedPatient) -> None:
    if pat.identity_status is not IdentityStatus.VALI:
        raise IdentityNotQualified(
            f"INS {pat.ins.matricule}: identity status {pat.identity_status.value}; only a qualified INS "
            "(status VALI) may be used in messages"
        )


# Creating ----------------------------------------------------------------------------------------------------------


async def add_organisation(
    db: Database,
    settings: Settings,
    data: OrganisationInput,
    *,
    services: Sequence[str] = (),
    practice: bool = False,
    red_list: bool = False,
    key_type: str | None = None,
) -> list[MailboxInfo]:
    """Register an organisation, then one ORG mailbox per service and, for a practice, its CAB mailbox."""
    org = check_organisation(data)
    planned = [check_service(s) for s in services]
    if practice:
        try:
            name_base(org.name, "practice name")
        except AddressError as exc:
            raise InvalidInput(str(exc)) from None
    async with db.transaction() as session:
        if await store.organisation_by_national_id(session, org.id.national_id) is not None:
            raise Duplicate(
                f"{org.id.type.value} {org.id.value} (IDNST {org.id.national_id}) is already in the directory"
            )
        try:
            await write_organisation(session, org)
        except IntegrityError:
            raise Duplicate(f"IDNST {org.id.national_id} was created concurrently") from None
    created: list[MailboxInfo] = []
    if practice:
        created.append(
            await add_service(
                db, settings, org.id.national_id, org.name, kind=MailboxKind.CAB, red_list=red_list, key_type=key_type
            )
        )
    for service, _base in planned:
        created.append(
            await add_service(db, settings, org.id.national_id, service, red_list=red_list, key_type=key_type)
        )
    return created


async def add_service(
    db: Database,
    settings: Settings,
    organisation: str,
    service: str,
    *,
    kind: MailboxKind = MailboxKind.ORG,
    local_part: str | None = None,
    red_list: bool = False,
    key_type: str | None = None,
) -> MailboxInfo:
    """An ORG mailbox for a service of an organisation (or its CAB mailbox): ``service@DOMAIN``."""
    if kind not in (MailboxKind.ORG, MailboxKind.CAB):
        raise InvalidInput(f"an organisation's mailbox is ORG or CAB, not {kind}")
    idnst = parse_organisation_national_id(organisation).national_id
    service_name, base = check_service(service)
    if local_part:
        _name, base = check_service(local_part)
    async with db.session() as session:
        org = await store.organisation_by_national_id(session, idnst)
    if org is None:
        raise NotFound(f"organisation {idnst} is not in the directory")
    org_id, org_name = org.id, org.name
    display = org_name if kind is MailboxKind.CAB else f"{service_name} - {org_name}"
    spec = CertificateSpec(kind, display, org.national_id, org_name, key_type)

    async def plan(session: AsyncSession) -> str:
        if local_part:
            address = f"{base}@{settings.domain}"
            if await store.mailbox_by_address(session, address) is not None:
                raise Duplicate(f"address {address} is already taken")
            return address
        return f"{await _free_local(session, base, settings.domain)}@{settings.domain}"

    async def write(session: AsyncSession, address: str, serial: str) -> Mailbox:
        mailbox = mailbox_row(
            kind,
            address,
            display,
            display_key(service_name, org_name, org.city),
            serial,
            red_list=red_list,
            service=None if kind is MailboxKind.CAB else service_name,
            organisation_id=org_id,
        )
        await store.add(session, mailbox)
        return mailbox

    return await _provision(db, settings, spec, plan, write)


async def add_professional(
    db: Database,
    settings: Settings,
    data: ProfessionalInput,
    *,
    red_list: bool = False,
    key_type: str | None = None,
) -> MailboxInfo:
    """Register a professional and create their PER mailbox ``prenom.nom@DOMAIN`` with its certificate."""
    pro = check_professional(data)

    async def plan(session: AsyncSession) -> str:
        existing = await store.professional_by_national_id(session, pro.id.national_id)
        if existing is not None:
            raise Duplicate(
                f"{pro.id.type.value} {pro.id.value} (IDNPS {pro.id.national_id}) is already in the directory"
            )
        organisations = await store.organisations_by_national_ids(session, pro.organisations)
        missing = [o for o in pro.organisations if o not in organisations]
        if missing:
            raise NotFound(f"organisation {', '.join(missing)} is not in the directory")
        return f"{await _free_local(session, pro.address_base, settings.domain)}@{settings.domain}"

    async def write(session: AsyncSession, address: str, serial: str) -> Mailbox:
        return await write_professional(session, pro, address, serial, red_list=red_list)

    spec = CertificateSpec(MailboxKind.PER, pro.display_name, pro.id.national_id, None, key_type)
    return await _provision(db, settings, spec, plan, write)


async def add_patient(
    db: Database,
    settings: Settings,
    data: PatientInput,
    *,
    red_list: bool = False,
    key_type: str | None = None,
) -> MailboxInfo:
    """Register a patient with a qualified INS (status VALI) and create ``<INS>@patient.DOMAIN``."""
    pat = check_patient(data, test_mode=settings.test_mode)
    require_qualified(pat)
    address = patient_address(pat, settings)

    async def plan(session: AsyncSession) -> str:
        if await store.patient_by_ins(session, pat.ins.matricule) is not None:
            raise Duplicate(f"INS {pat.ins.matricule} is already in the directory")
        return address

    async def write(session: AsyncSession, address: str, serial: str) -> Mailbox:
        return await write_patient(session, pat, address, serial, red_list=red_list)

    spec = CertificateSpec(MailboxKind.PAT, pat.display_name, None, None, key_type)
    return await _provision(db, settings, spec, plan, write)


async def add_app(db: Database, settings: Settings, data: AppInput, *, key_type: str | None = None) -> MailboxInfo:
    """Register an app of a publisher organisation and create its APP mailbox ``<app name>@DOMAIN``."""
    app = check_app(data)
    async with db.session() as session:
        publisher = await store.organisation_by_national_id(session, app.publisher)
        if publisher is None:
            raise NotFound(f"publisher organisation {app.publisher} is not in the directory")
        if await store.app_by_name(session, app.name) is not None:
            raise Duplicate(f"an app named {app.name!r} is already in the directory")
    publisher_id, publisher_name = publisher.id, publisher.name

    async def plan(session: AsyncSession) -> str:
        return f"{await _free_local(session, app.address_base, settings.domain)}@{settings.domain}"

    async def write(session: AsyncSession, address: str, serial: str) -> Mailbox:
        row = App(name=app.name, publisher_id=publisher_id, contact=app.contact, created_at=utcnow())
        await store.add(session, row)
        mailbox = mailbox_row(
            MailboxKind.APP,
            address,
            app.name,
            display_key(app.name, publisher_name),
            serial,
            red_list=False,
            app_id=row.id,
        )
        await store.add(session, mailbox)
        return mailbox

    spec = CertificateSpec(MailboxKind.APP, app.name, None, publisher_name, key_type)
    return await _provision(db, settings, spec, plan, write)


# Relations ---------------------------------------------------------------------------------------------------------


async def add_affiliation(db: Database, professional: str, organisation: str) -> None:
    """Record that a professional (IDNPS) works for an organisation (IDNST)."""
    async with db.transaction() as session:
        pro = await _professional(session, professional)
        org = await store.organisation_by_national_id(session, parse_organisation_national_id(organisation).national_id)
        if org is None:
            raise NotFound(f"organisation {organisation} is not in the directory")
        if await store.affiliation(session, pro.id, org.id) is None:
            await store.add(session, Affiliation(professional_id=pro.id, organisation_id=org.id, created_at=utcnow()))


async def grant_send_as(db: Database, address: str, professional: str) -> None:
    """Allow a professional (IDNPS, or their PER address) to send as an ORG/CAB mailbox of an organisation they
    work for."""
    async with db.transaction() as session:
        mailbox = await _require_mailbox(session, address)
        if mailbox.kind not in (MailboxKind.ORG, MailboxKind.CAB):
            raise InvalidInput(f"{mailbox.address} is a {mailbox.kind} mailbox: only ORG and CAB mailboxes are shared")
        pro = await _professional(session, professional)
        assert mailbox.organisation_id is not None
        if await store.affiliation(session, pro.id, mailbox.organisation_id) is None:
            raise InvalidInput(
                f"{pro.first_name} {pro.last_name} does not work for the organisation of {mailbox.address}"
            )
        if not await store.send_as_allowed(session, pro.id, mailbox.id):
            await store.add(session, SendAs(mailbox_id=mailbox.id, professional_id=pro.id, created_at=utcnow()))


async def revoke_send_as(db: Database, address: str, professional: str) -> bool:
    async with db.transaction() as session:
        mailbox = await _require_mailbox(session, address)
        pro = await _professional(session, professional)
        return await store.remove_send_as(session, pro.id, mailbox.id) > 0


async def add_representative(
    db: Database,
    settings: Settings,
    patient: str,
    representative: str,
    role: str,
    *,
    valid_until: date | None = None,
) -> None:
    """Link a legal representative (a patient of the directory, by INS) to a patient (by INS): they may act for
    them until ``valid_until`` (e.g. the minor's 18th birthday) or until removed."""
    try:
        role_value = RepresentativeRole(role)
    except ValueError:
        raise InvalidInput(
            f"representative role {role!r} must be one of {', '.join(r.value for r in RepresentativeRole)}"
        ) from None
    async with db.transaction() as session:
        pat = await _patient(session, patient, settings)
        rep = await _patient(session, representative, settings)
        if pat.id == rep.id:
            raise InvalidInput("a patient cannot be their own legal representative")
        if any(r.representative_id == rep.id for r, _p in await store.representatives_of(session, pat.id)):
            raise Duplicate(f"{rep.ins} already represents {pat.ins}")
        await store.add(
            session,
            Representative(
                patient_id=pat.id,
                representative_id=rep.id,
                role=role_value.value,
                valid_until=valid_until,
                created_at=utcnow(),
            ),
        )


async def set_identity_status(db: Database, settings: Settings, ins: str, status: str) -> None:
    """Record a new identity status (RNIV); mail to a patient whose identity is no longer VALI is not delivered."""
    try:
        value = IdentityStatus(status.upper())
    except ValueError:
        raise InvalidInput(
            f"identity status {status!r} must be one of {', '.join(s.value for s in IdentityStatus)}"
        ) from None
    async with db.transaction() as session:
        pat = await _patient(session, ins, settings)
        await store.set_identity_status(session, pat.id, value.value)


# Life of a mailbox ----------------------------------------------------------------------------------------------------


async def set_red_list(db: Database, address: str, red_list: bool) -> MailboxInfo:
    """Put a mailbox on (or off) the red list: hidden from search and export, still reachable for delivery."""
    async with db.transaction() as session:
        mailbox = await _require_mailbox(session, address)
        await store.update_mailbox(session, mailbox.id, red_list=red_list)
        await session.refresh(mailbox)
        return await mailbox_info(session, mailbox)


async def disable_mailbox(db: Database, settings: Settings, address: str) -> MailboxInfo:
    """Disable a mailbox: no more logins or delivery, app passwords and the certificate revoked. The address stays
    reserved forever."""
    now = utcnow()
    async with db.transaction() as session:
        mailbox = await _require_mailbox(session, address)
        if mailbox.disabled_at is not None:
            raise InvalidInput(f"{mailbox.address} is already disabled")
        await store.update_mailbox(session, mailbox.id, disabled_at=now)
        await store.revoke_all_app_passwords(session, mailbox.id, now)
        serial = mailbox.certificate_serial
    from carnet.pki.authority import AlreadyRevoked, revoke

    with contextlib.suppress(AlreadyRevoked):
        await revoke(db, settings, serial, reason="cessation_of_operation")
    return await require_mailbox(db, address)


async def renew_certificate(
    db: Database, settings: Settings, address: str, *, key_type: str | None = None
) -> MailboxInfo:
    """Issue a new certificate for an active mailbox, then revoke the previous one as superseded."""
    async with db.session() as session:
        mailbox = await _require_mailbox(session, address)
        if mailbox.disabled_at is not None:
            raise InvalidInput(f"{mailbox.address} is disabled: its certificate is not renewed")
        spec = await _spec_of(session, mailbox, key_type)
        old_serial, mailbox_id, current = mailbox.certificate_serial, mailbox.id, mailbox.address
    serial = await issue_certificate(db, settings, spec, current)
    try:
        async with db.transaction() as session:
            await store.update_mailbox(session, mailbox_id, certificate_serial=serial)
    except BaseException:
        await discard_certificate(db, settings, serial)
        raise
    from carnet.pki.authority import AlreadyRevoked, revoke

    with contextlib.suppress(AlreadyRevoked):
        await revoke(db, settings, old_serial, reason="superseded")
    return await require_mailbox(db, current)


async def _spec_of(session: AsyncSession, mailbox: Mailbox, key_type: str | None) -> CertificateSpec:
    kind = MailboxKind(mailbox.kind)
    if kind is MailboxKind.PER and mailbox.professional_id is not None:
        pro = await store.professional_by_id(session, mailbox.professional_id)
        assert pro is not None
        return CertificateSpec(kind, mailbox.display_name, pro.national_id, None, key_type)
    if kind in (MailboxKind.ORG, MailboxKind.CAB) and mailbox.organisation_id is not None:
        org = await store.organisation_by_id(session, mailbox.organisation_id)
        assert org is not None
        return CertificateSpec(kind, mailbox.display_name, org.national_id, org.name, key_type)
    if kind is MailboxKind.APP and mailbox.app_id is not None:
        app = await store.app_by_id(session, mailbox.app_id)
        assert app is not None
        publisher = await store.organisation_by_id(session, app.publisher_id)
        return CertificateSpec(kind, mailbox.display_name, None, publisher.name if publisher else None, key_type)
    return CertificateSpec(kind, mailbox.display_name, None, None, key_type)


# Reading -----------------------------------------------------------------------------------------------------------


async def mailbox_info(session: AsyncSession, mailbox: Mailbox) -> MailboxInfo:
    """The public view of a mailbox row, with its owner's identifiers and whether mail may be delivered."""
    kind = MailboxKind(mailbox.kind)
    national_id = ins = organisation = None
    deliverable, reason = mailbox.disabled_at is None, "" if mailbox.disabled_at is None else "mailbox disabled"
    if mailbox.professional_id is not None:
        pro = await store.professional_by_id(session, mailbox.professional_id)
        national_id = pro.national_id if pro else None
        orgs = await store.affiliated_organisations(session, mailbox.professional_id)
        organisation = orgs[0].name if orgs else None
    elif mailbox.organisation_id is not None:
        org = await store.organisation_by_id(session, mailbox.organisation_id)
        national_id, organisation = (org.national_id, org.name) if org else (None, None)
    elif mailbox.app_id is not None:
        app = await store.app_by_id(session, mailbox.app_id)
        publisher = await store.organisation_by_id(session, app.publisher_id) if app else None
        national_id, organisation = (publisher.national_id, publisher.name) if publisher else (None, None)
    elif mailbox.patient_id is not None:
        pat = await store.patient_by_id(session, mailbox.patient_id)
        ins = pat.ins if pat else None
        if pat is not None and pat.identity_status != IdentityStatus.VALI and deliverable:
            deliverable, reason = False, f"identity status {pat.identity_status} is not VALI"
    return MailboxInfo(
        id=mailbox.id,
        address=mailbox.address,
        kind=kind,
        display_name=mailbox.display_name,
        red_list=mailbox.red_list,
        certificate_serial=mailbox.certificate_serial,
        created_at=mailbox.created_at,
        disabled_at=mailbox.disabled_at,
        national_id=national_id,
        ins=ins,
        service=mailbox.service,
        organisation=organisation,
        deliverable=deliverable,
        reason=reason,
    )


async def lookup_mailbox(db: Database, address: str) -> MailboxInfo | None:
    """The mailbox of ``address`` for routing (red-listed and disabled ones included; see ``deliverable``), or
    None when the address is not one of ours."""
    try:
        normalised = normalise_address(address)
    except AddressError:
        return None
    async with db.session() as session:
        mailbox = await store.mailbox_by_address(session, normalised)
        return await mailbox_info(session, mailbox) if mailbox is not None else None


async def require_mailbox(db: Database, address: str) -> MailboxInfo:
    info = await lookup_mailbox(db, address)
    if info is None:
        raise NotFound(f"no mailbox {address}")
    return info


async def orphan_certificates(
    db: Database, settings: Settings, *, older_than: timedelta = timedelta(minutes=10)
) -> list[CertificateRecord]:
    """Unrevoked S/MIME certificates naming one of our addresses that no mailbox holds as its certificate in force.

    They come from a process that stopped between issuing a certificate and writing its mailbox, or between renewing
    and revoking the previous certificate. They are never published (the directory serves mailboxes' certificates
    only); :func:`revoke_orphan_certificates` revokes them. Certificates younger than ``older_than`` are left alone:
    their mailbox may be being written right now. Certificates issued for our addresses outside the directory (e.g.
    by ``carnet demo`` or ``carnet pki issue``) are listed too: review before revoking.
    """
    from carnet.pki.authority import list_certificates

    cutoff = utcnow() - older_than
    candidates = [
        record
        for record in await list_certificates(db, revoked=False, profile="smime")
        if record.not_before < cutoff
        and record.emails
        and all(is_local_domain(email.rpartition("@")[2], settings.domain) for email in record.emails)
    ]
    async with db.session() as session:
        held = {
            m.certificate_serial for m in await store.mailboxes_with_serials(session, [r.serial for r in candidates])
        }
    return [r for r in candidates if r.serial not in held]


async def revoke_orphan_certificates(
    db: Database, settings: Settings, *, older_than: timedelta = timedelta(minutes=10)
) -> list[str]:
    """Revoke every :func:`orphan_certificates` (cessationOfOperation); returns their serials."""
    serials = [record.serial for record in await orphan_certificates(db, settings, older_than=older_than)]
    for serial in serials:
        await discard_certificate(db, settings, serial)
    return serials


async def list_mailboxes(
    db: Database,
    *,
    kind: MailboxKind | None = None,
    include_red_list: bool = False,
    include_disabled: bool = False,
    offset: int = 0,
    limit: int = 1000,
) -> list[MailboxInfo]:
    async with db.session() as session:
        rows = await store.list_mailboxes(
            session,
            kind=kind.value if kind else None,
            include_red_list=include_red_list,
            include_disabled=include_disabled,
            offset=offset,
            limit=limit,
        )
        return [await mailbox_info(session, row) for row in rows]


async def describe(db: Database, address: str) -> dict[str, object]:
    """Everything the directory holds about a mailbox and its owner (``carnet directory show``)."""
    async with db.session() as session:
        mailbox = await _require_mailbox(session, address)
        info = await mailbox_info(session, mailbox)
        out: dict[str, object] = {
            "address": info.address,
            "kind": info.kind.value,
            "display_name": info.display_name,
            "status": "active" if info.active else f"disabled {info.disabled_at:%Y-%m-%d %H:%M}Z",
            "red_list": info.red_list,
            "certificate_serial": info.certificate_serial,
            "created": f"{info.created_at:%Y-%m-%d %H:%M}Z",
            "password_set": mailbox.password_hash is not None,
        }
        if mailbox.professional_id is not None:
            pro = await store.professional_by_id(session, mailbox.professional_id)
            assert pro is not None
            out |= {
                "identifier": f"{pro.id_type} {pro.id_value}",
                "national_id": pro.national_id,
                "profession": pro.profession_code,
                "specialty": pro.specialty_code or "",
                "organisations": [o.name for o in await store.affiliated_organisations(session, pro.id)],
                "send_as": [m.address for m in await store.send_as_mailboxes(session, pro.id)],
            }
        elif mailbox.organisation_id is not None:
            org = await store.organisation_by_id(session, mailbox.organisation_id)
            assert org is not None
            out |= {
                "identifier": f"{org.id_type} {org.id_value}",
                "national_id": org.national_id,
                "organisation": org.name,
                "service": mailbox.service or "",
                "city": " ".join(p for p in (org.postal_code, org.city) if p),
            }
        elif mailbox.patient_id is not None:
            pat = await store.patient_by_id(session, mailbox.patient_id)
            assert pat is not None
            out |= {
                "ins": pat.ins,
                "ins_oid": pat.ins_oid,
                "birth_name": pat.birth_name,
                "first_names": pat.first_names,
                "birth_date": pat.birth_date.isoformat(),
                "sex": pat.sex,
                "birthplace": pat.birthplace_code,
                "identity_status": pat.identity_status,
                "representatives": [f"{p.ins} ({r.role})" for r, p in await store.representatives_of(session, pat.id)],
            }
        elif mailbox.app_id is not None:
            app = await store.app_by_id(session, mailbox.app_id)
            assert app is not None
            out |= {"app": app.name, "publisher": info.organisation or "", "contact": app.contact}
        return out


async def _require_mailbox(session: AsyncSession, address: str) -> Mailbox:
    try:
        normalised = normalise_address(address)
    except AddressError as exc:
        raise InvalidInput(str(exc)) from None
    mailbox = await store.mailbox_by_address(session, normalised)
    if mailbox is None:
        raise NotFound(f"no mailbox {normalised}")
    return mailbox


async def _professional(session: AsyncSession, ref: str) -> Professional:
    """A professional by IDNPS (``8``+RPPS, ``0``+ADELI) or by PER address."""
    if "@" in ref:
        mailbox = await _require_mailbox(session, ref)
        pro = await store.professional_by_id(session, mailbox.professional_id) if mailbox.professional_id else None
    else:
        pro = await store.professional_by_national_id(session, ref.strip())
    if pro is None:
        raise NotFound(f"professional {ref} is not in the directory")
    return pro


async def _patient(session: AsyncSession, ref: str, settings: Settings) -> Patient:
    """A patient by INS matricule or by patient address."""
    if looks_like_ins(ref):
        pat = await store.patient_by_ins(session, normalise_matricule(ref))
    else:
        mailbox = await _require_mailbox(session, ref)
        pat = await store.patient_by_id(session, mailbox.patient_id) if mailbox.patient_id else None
    if pat is None:
        raise NotFound(f"patient {ref} is not in the directory")
    return pat
