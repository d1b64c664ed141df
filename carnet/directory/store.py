"""The directory's store layer: every SQL statement of ``carnet.directory`` is here.

Functions take an open :class:`~sqlalchemy.ext.asyncio.AsyncSession` (the caller owns the transaction) and return
ORM rows or plain values. Text searches compare the folded ``*_key`` columns with ``LIKE … ESCAPE '\\'`` and bound
parameters: user text never becomes SQL, and ``%``/``_`` in it match themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, and_, case, delete, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from carnet.directory.models import (
    Affiliation,
    App,
    AppPassword,
    Mailbox,
    Operator,
    Organisation,
    Patient,
    Professional,
    RemoteCertificate,
    Representative,
    SendAs,
    Throttle,
)

_ESCAPE = "\\"


def like_pattern(token: str, *, prefix: bool = False) -> str:
    """``%token%`` (or ``token%``) with ``\\``, ``%`` and ``_`` escaped so they match literally."""
    escaped = token.replace(_ESCAPE, _ESCAPE * 2).replace("%", _ESCAPE + "%").replace("_", _ESCAPE + "_")
    return f"{escaped}%" if prefix else f"%{escaped}%"


def _contains_all(column: ColumnElement[str] | object, tokens: Sequence[str]) -> ColumnElement[bool]:
    """Every token starts a word of ``column`` (a space-separated search key)."""
    col: ColumnElement[str] = column  # type: ignore[assignment]
    return and_(
        *(
            or_(
                col.like(like_pattern(t, prefix=True), escape=_ESCAPE),
                col.like("% " + like_pattern(t, prefix=True), escape=_ESCAPE),
            )
            for t in tokens
        )
    )


# Identities ------------------------------------------------------------------------------------------------


async def organisation_by_national_id(s: AsyncSession, national_id: str) -> Organisation | None:
    return (await s.execute(select(Organisation).where(Organisation.national_id == national_id))).scalar_one_or_none()


async def organisations_by_national_ids(s: AsyncSession, national_ids: Iterable[str]) -> dict[str, Organisation]:
    ids = list(set(national_ids))
    if not ids:
        return {}
    rows = (await s.execute(select(Organisation).where(Organisation.national_id.in_(ids)))).scalars()
    return {row.national_id: row for row in rows}


async def organisation_by_id(s: AsyncSession, organisation_id: int) -> Organisation | None:
    return await s.get(Organisation, organisation_id)


async def professional_by_national_id(s: AsyncSession, national_id: str) -> Professional | None:
    return (await s.execute(select(Professional).where(Professional.national_id == national_id))).scalar_one_or_none()


async def professional_by_id(s: AsyncSession, professional_id: int) -> Professional | None:
    return await s.get(Professional, professional_id)


async def patient_by_ins(s: AsyncSession, ins: str) -> Patient | None:
    return (await s.execute(select(Patient).where(Patient.ins == ins))).scalar_one_or_none()


async def patient_by_id(s: AsyncSession, patient_id: int) -> Patient | None:
    return await s.get(Patient, patient_id)


async def app_by_name(s: AsyncSession, name: str) -> App | None:
    return (await s.execute(select(App).where(func.lower(App.name) == name.lower()))).scalar_one_or_none()


async def app_by_id(s: AsyncSession, app_id: int) -> App | None:
    return await s.get(App, app_id)


async def existing_national_ids(
    s: AsyncSession, professional_ids: Sequence[str], patient_ins: Sequence[str], organisation_ids: Sequence[str]
) -> set[str]:
    """Which of these IDNPS, INS and IDNST are already in the directory (for bulk import)."""
    found: set[str] = set()
    for start in range(0, max(len(professional_ids), len(patient_ins), len(organisation_ids)), 500):
        chunk = professional_ids[start : start + 500]
        if chunk:
            found.update(
                (await s.execute(select(Professional.national_id).where(Professional.national_id.in_(chunk)))).scalars()
            )
        chunk = patient_ins[start : start + 500]
        if chunk:
            found.update((await s.execute(select(Patient.ins).where(Patient.ins.in_(chunk)))).scalars())
        chunk = organisation_ids[start : start + 500]
        if chunk:
            found.update(
                (await s.execute(select(Organisation.national_id).where(Organisation.national_id.in_(chunk)))).scalars()
            )
    return found


async def add(s: AsyncSession, *rows: object) -> None:
    """Insert ``rows`` and flush, so that generated ids are known and constraint violations surface here."""
    s.add_all(rows)
    await s.flush()


async def affiliated_organisations(s: AsyncSession, professional_id: int) -> list[Organisation]:
    stmt = (
        select(Organisation)
        .join(Affiliation, Affiliation.organisation_id == Organisation.id)
        .where(Affiliation.professional_id == professional_id)
        .order_by(Affiliation.id)
    )
    return list((await s.execute(stmt)).scalars())


async def affiliation(s: AsyncSession, professional_id: int, organisation_id: int) -> Affiliation | None:
    stmt = select(Affiliation).where(
        Affiliation.professional_id == professional_id, Affiliation.organisation_id == organisation_id
    )
    return (await s.execute(stmt)).scalar_one_or_none()


async def set_identity_status(s: AsyncSession, patient_id: int, status: str) -> None:
    await s.execute(update(Patient).where(Patient.id == patient_id).values(identity_status=status))


# Representatives and delegations ---------------------------------------------------------------------------


async def represented_patients(s: AsyncSession, representative_id: int, today: date) -> list[Patient]:
    stmt = (
        select(Patient)
        .join(Representative, Representative.patient_id == Patient.id)
        .where(
            Representative.representative_id == representative_id,
            or_(Representative.valid_until.is_(None), Representative.valid_until >= today),
        )
        .order_by(Patient.id)
    )
    return list((await s.execute(stmt)).scalars())


async def representatives_of(s: AsyncSession, patient_id: int) -> list[tuple[Representative, Patient]]:
    stmt = (
        select(Representative, Patient)
        .join(Patient, Patient.id == Representative.representative_id)
        .where(Representative.patient_id == patient_id)
        .order_by(Representative.id)
    )
    return [(row[0], row[1]) for row in (await s.execute(stmt)).all()]


async def send_as_mailboxes(s: AsyncSession, professional_id: int) -> list[Mailbox]:
    stmt = (
        select(Mailbox)
        .join(SendAs, SendAs.mailbox_id == Mailbox.id)
        .where(SendAs.professional_id == professional_id, Mailbox.disabled_at.is_(None))
        .order_by(Mailbox.address)
    )
    return list((await s.execute(stmt)).scalars())


async def send_as_allowed(s: AsyncSession, professional_id: int, mailbox_id: int) -> bool:
    stmt = select(exists().where(SendAs.professional_id == professional_id, SendAs.mailbox_id == mailbox_id))
    return bool((await s.execute(stmt)).scalar())


async def remove_send_as(s: AsyncSession, professional_id: int, mailbox_id: int) -> int:
    result = await s.execute(
        delete(SendAs).where(SendAs.professional_id == professional_id, SendAs.mailbox_id == mailbox_id)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# Mailboxes -------------------------------------------------------------------------------------------------


async def mailbox_by_address(s: AsyncSession, address: str) -> Mailbox | None:
    return (await s.execute(select(Mailbox).where(Mailbox.address == address))).scalar_one_or_none()


async def mailbox_by_id(s: AsyncSession, mailbox_id: int) -> Mailbox | None:
    return await s.get(Mailbox, mailbox_id)


async def mailboxes_of(
    s: AsyncSession,
    *,
    professional_id: int | None = None,
    organisation_id: int | None = None,
    patient_id: int | None = None,
    app_id: int | None = None,
) -> list[Mailbox]:
    stmt = select(Mailbox)
    if professional_id is not None:
        stmt = stmt.where(Mailbox.professional_id == professional_id)
    if organisation_id is not None:
        stmt = stmt.where(Mailbox.organisation_id == organisation_id)
    if patient_id is not None:
        stmt = stmt.where(Mailbox.patient_id == patient_id)
    if app_id is not None:
        stmt = stmt.where(Mailbox.app_id == app_id)
    return list((await s.execute(stmt.order_by(Mailbox.id))).scalars())


async def published_mailboxes(
    s: AsyncSession, *, professional_ids: Sequence[int] = (), organisation_ids: Sequence[int] = ()
) -> list[Mailbox]:
    """Active, not red-listed mailboxes of these professionals and organisations (what the directory shows)."""
    if not professional_ids and not organisation_ids:
        return []
    stmt = select(Mailbox).where(
        Mailbox.disabled_at.is_(None),
        Mailbox.red_list.is_(False),
        or_(Mailbox.professional_id.in_(list(professional_ids)), Mailbox.organisation_id.in_(list(organisation_ids))),
    )
    return list((await s.execute(stmt.order_by(Mailbox.id))).scalars())


async def taken_local_parts(s: AsyncSession, base: str, domain: str) -> set[str]:
    """Local parts at ``domain`` starting with ``base`` (every collision candidate), disabled mailboxes included."""
    pattern = like_pattern(base[:60], prefix=True) + "@" + domain.replace("%", "").replace("_", _ESCAPE + "_")
    rows = (await s.execute(select(Mailbox.address).where(Mailbox.address.like(pattern, escape=_ESCAPE)))).scalars()
    return {address.rpartition("@")[0] for address in rows}


async def all_local_parts(s: AsyncSession, domain: str) -> set[str]:
    """Every local part at ``domain`` (bulk import plans addresses in memory)."""
    suffix = "@" + domain
    rows = (
        await s.execute(
            select(Mailbox.address).where(
                Mailbox.address.like("%" + suffix.replace("_", _ESCAPE + "_"), escape=_ESCAPE)
            )
        )
    ).scalars()
    return {address[: -len(suffix)] for address in rows if address.endswith(suffix)}


async def mailboxes_with_serials(s: AsyncSession, serials: Sequence[str]) -> list[Mailbox]:
    if not serials:
        return []
    return list((await s.execute(select(Mailbox).where(Mailbox.certificate_serial.in_(list(serials))))).scalars())


async def update_mailbox(s: AsyncSession, mailbox_id: int, **values: object) -> None:
    await s.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(**values))


async def list_mailboxes(
    s: AsyncSession, *, kind: str | None, include_red_list: bool, include_disabled: bool, offset: int, limit: int
) -> list[Mailbox]:
    stmt = select(Mailbox)
    if kind:
        stmt = stmt.where(Mailbox.kind == kind)
    if not include_red_list:
        stmt = stmt.where(Mailbox.red_list.is_(False))
    if not include_disabled:
        stmt = stmt.where(Mailbox.disabled_at.is_(None))
    return list((await s.execute(stmt.order_by(Mailbox.address).offset(offset).limit(limit))).scalars())


async def count_rows(s: AsyncSession) -> dict[str, int]:
    """Row count of every directory table (tests and the CLI summary)."""
    counts: dict[str, int] = {}
    for model in (
        Organisation,
        Professional,
        Affiliation,
        Patient,
        Representative,
        App,
        Mailbox,
        SendAs,
        AppPassword,
        Operator,
    ):
        counts[model.__tablename__] = int((await s.execute(select(func.count()).select_from(model))).scalar_one())
    return counts


# Search ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Folded, validated search criteria (see :mod:`carnet.directory.search`)."""

    text: tuple[str, ...] = ()
    name: tuple[str, ...] = ()
    organisation: tuple[str, ...] = ()
    city: str | None = None
    profession: str | None = None
    specialty: str | None = None
    rpps: str | None = None
    finess: str | None = None
    kind: str | None = None


def _search_conditions(f: SearchFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        Mailbox.disabled_at.is_(None),
        Mailbox.red_list.is_(False),
        Mailbox.kind != "PAT",  # patients are never listed
    ]
    if f.kind:
        conditions.append(Mailbox.kind == f.kind)
    if f.text:
        conditions.append(_contains_all(Mailbox.display_key, f.text))
    if f.name:
        conditions.append(
            or_(
                and_(
                    Mailbox.kind == "PER",
                    exists().where(
                        Professional.id == Mailbox.professional_id, _contains_all(Professional.name_key, f.name)
                    ),
                ),
                and_(Mailbox.kind != "PER", _contains_all(Mailbox.display_key, f.name)),
            )
        )
    if f.profession or f.specialty or f.rpps:
        professional = [Professional.id == Mailbox.professional_id]
        if f.profession:
            professional.append(Professional.profession_code == f.profession)
        if f.specialty:
            professional.append(Professional.specialty_code == f.specialty)
        if f.rpps:
            professional.append(and_(Professional.id_type == "RPPS", Professional.id_value == f.rpps))
        conditions.append(exists().where(*professional))
    if f.organisation or f.city or f.finess:
        org: list[ColumnElement[bool]] = []
        if f.organisation:
            org.append(_contains_all(Organisation.name_key, f.organisation))
        if f.city:
            org.append(Organisation.city_key.like(like_pattern(f.city, prefix=True), escape=_ESCAPE))
        if f.finess:
            org.append(and_(Organisation.id_type == "FINESS", Organisation.id_value == f.finess))
        own = exists().where(Organisation.id == Mailbox.organisation_id, *org)
        worked_for = exists().where(
            Affiliation.professional_id == Mailbox.professional_id, Organisation.id == Affiliation.organisation_id, *org
        )
        published_by = exists().where(App.id == Mailbox.app_id, Organisation.id == App.publisher_id, *org)
        conditions.append(or_(own, worked_for, published_by))
    return conditions


async def search_mailboxes(s: AsyncSession, f: SearchFilter, *, offset: int, limit: int) -> tuple[int, list[Mailbox]]:
    """Listed mailboxes matching ``f`` (never red-listed, disabled or patients' ones), and how many match in all."""
    conditions = _search_conditions(f)
    total = int((await s.execute(select(func.count()).select_from(Mailbox).where(*conditions))).scalar_one())
    stmt = select(Mailbox).where(*conditions).order_by(Mailbox.display_key, Mailbox.id).offset(offset).limit(limit)
    return total, list((await s.execute(stmt)).scalars())


# FHIR view -------------------------------------------------------------------------------------------------


async def search_professionals(
    s: AsyncSession,
    *,
    name: Sequence[str] = (),
    national_ids: Sequence[str] = (),
    rpps: Sequence[str] = (),
    offset: int,
    limit: int,
) -> tuple[int, list[Professional]]:
    conditions: list[ColumnElement[bool]] = []
    if name:
        conditions.append(_contains_all(Professional.name_key, name))
    if national_ids or rpps:
        conditions.append(
            or_(
                Professional.national_id.in_(list(national_ids)),
                and_(Professional.id_type == "RPPS", Professional.id_value.in_(list(rpps))),
            )
        )
    total = int((await s.execute(select(func.count()).select_from(Professional).where(*conditions))).scalar_one())
    stmt = select(Professional).where(*conditions).order_by(Professional.name_key, Professional.id)
    return total, list((await s.execute(stmt.offset(offset).limit(limit))).scalars())


async def search_organisations(
    s: AsyncSession,
    *,
    name: Sequence[str] = (),
    city: str | None = None,
    postal_code: str | None = None,
    national_ids: Sequence[str] = (),
    finess: Sequence[str] = (),
    offset: int,
    limit: int,
) -> tuple[int, list[Organisation]]:
    conditions: list[ColumnElement[bool]] = []
    if name:
        conditions.append(_contains_all(Organisation.name_key, name))
    if city:
        conditions.append(Organisation.city_key.like(like_pattern(city, prefix=True), escape=_ESCAPE))
    if postal_code:
        conditions.append(Organisation.postal_code == postal_code)
    if national_ids or finess:
        conditions.append(
            or_(
                Organisation.national_id.in_(list(national_ids)),
                and_(Organisation.id_type == "FINESS", Organisation.id_value.in_(list(finess))),
            )
        )
    total = int((await s.execute(select(func.count()).select_from(Organisation).where(*conditions))).scalar_one())
    stmt = select(Organisation).where(*conditions).order_by(Organisation.name_key, Organisation.id)
    return total, list((await s.execute(stmt.offset(offset).limit(limit))).scalars())


async def search_roles(
    s: AsyncSession,
    *,
    professional_national_id: str | None = None,
    organisation_national_id: str | None = None,
    profession: str | None = None,
    specialty: str | None = None,
    offset: int,
    limit: int,
) -> tuple[int, list[tuple[Professional, Organisation | None]]]:
    """PractitionerRoles: one per affiliation, and one without organisation for a professional who has none."""
    conditions: list[ColumnElement[bool]] = []
    if professional_national_id:
        conditions.append(Professional.national_id == professional_national_id)
    if organisation_national_id:
        conditions.append(Organisation.national_id == organisation_national_id)
    if profession:
        conditions.append(Professional.profession_code == profession)
    if specialty:
        conditions.append(Professional.specialty_code == specialty)
    joined = (
        select(Professional, Organisation)
        .outerjoin(Affiliation, Affiliation.professional_id == Professional.id)
        .outerjoin(Organisation, Organisation.id == Affiliation.organisation_id)
        .where(*conditions)
    )
    total = int((await s.execute(select(func.count()).select_from(joined.subquery()))).scalar_one())
    page = joined.order_by(Professional.name_key, Professional.id, Organisation.id).offset(offset).limit(limit)
    return total, [(row[0], row[1]) for row in (await s.execute(page)).all()]


# Credentials -----------------------------------------------------------------------------------------------


async def active_app_passwords(s: AsyncSession, mailbox_id: int, lookup: str | None = None) -> list[AppPassword]:
    stmt = select(AppPassword).where(AppPassword.mailbox_id == mailbox_id, AppPassword.revoked_at.is_(None))
    if lookup is not None:
        stmt = stmt.where(AppPassword.lookup == lookup)
    return list((await s.execute(stmt.order_by(AppPassword.id))).scalars())


async def app_passwords(s: AsyncSession, mailbox_id: int) -> list[AppPassword]:
    stmt = select(AppPassword).where(AppPassword.mailbox_id == mailbox_id).order_by(AppPassword.id)
    return list((await s.execute(stmt)).scalars())


async def revoke_app_password(s: AsyncSession, mailbox_id: int, password_id: int, now: datetime) -> int:
    result = await s.execute(
        update(AppPassword)
        .where(AppPassword.id == password_id, AppPassword.mailbox_id == mailbox_id, AppPassword.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def revoke_all_app_passwords(s: AsyncSession, mailbox_id: int, now: datetime) -> None:
    await s.execute(
        update(AppPassword)
        .where(AppPassword.mailbox_id == mailbox_id, AppPassword.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def touch_app_password(s: AsyncSession, password_id: int, now: datetime) -> None:
    await s.execute(update(AppPassword).where(AppPassword.id == password_id).values(last_used_at=now))


async def throttles(s: AsyncSession, keys: Sequence[str]) -> list[Throttle]:
    return list((await s.execute(select(Throttle).where(Throttle.key.in_(list(keys))))).scalars())


async def record_failure(s: AsyncSession, key: str, now: datetime, window_start: datetime) -> int:
    """Count one failed login for ``key`` atomically (an upsert); counts restart after a quiet window.

    Returns the number of failures in the current window.
    """
    dialect = s.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(Throttle).values(key=key, failures=1, last_failure_at=now, blocked_until=None)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Throttle.key],
        set_={
            "failures": case((Throttle.last_failure_at < window_start, 1), else_=Throttle.failures + 1),
            "last_failure_at": now,
        },
    ).returning(Throttle.failures)
    return int((await s.execute(stmt)).scalar_one())


async def block(s: AsyncSession, key: str, until: datetime) -> None:
    await s.execute(update(Throttle).where(Throttle.key == key).values(blocked_until=until))


async def clear_throttle(s: AsyncSession, key: str) -> None:
    await s.execute(delete(Throttle).where(Throttle.key == key))


# Trust space -----------------------------------------------------------------------------------------------


async def operators(s: AsyncSession) -> list[Operator]:
    return list((await s.execute(select(Operator).order_by(Operator.domain))).scalars())


async def operator_by_domain(s: AsyncSession, domain: str) -> Operator | None:
    return (await s.execute(select(Operator).where(Operator.domain == domain))).scalar_one_or_none()


async def delete_operator(s: AsyncSession, domain: str) -> int:
    await s.execute(delete(RemoteCertificate).where(RemoteCertificate.domain == domain))
    result = await s.execute(delete(Operator).where(Operator.domain == domain))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def cached_remote(s: AsyncSession, address: str) -> RemoteCertificate | None:
    return await s.get(RemoteCertificate, address)


async def put_remote(s: AsyncSession, row: RemoteCertificate) -> None:
    await s.merge(row)
    await s.flush()
