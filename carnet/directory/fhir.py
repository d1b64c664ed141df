"""A read-only FHIR R4 view of the directory, shaped like the national "Annuaire Santé" FHIR API (ANS).

Resources (HL7 FHIR R4, 4.0.1): ``Practitioner`` (one per professional, id = IDNPS), ``Organization`` (one per
organisation, id = IDNST), ``PractitionerRole`` (one per professional × organisation worked for, id =
``<IDNPS>-<IDNST>``, or ``<IDNPS>`` for a professional attached to no organisation). Mailboxes are ``telecom``
ContactPoints with ``system=email`` (FHIR R4 §2.24.0.1 ContactPoint); red-listed and disabled mailboxes are left
out. Identifiers use the official systems: ``urn:oid:1.2.250.1.71.4.2.1`` for the IDNPS (``8`` + RPPS / ``0`` +
ADELI), ``urn:oid:1.2.250.1.71.4.2.2`` for the IDNST (``1`` + FINESS / ``3`` + SIRET), plus the raw RPPS/FINESS
under ``https://rpps.esante.gouv.fr`` / ``https://finess.esante.gouv.fr``; identifier types from FR Core
``fr-core-cs-v2-0203``; profession and specialty codings from the ANS nomenclatures TRE_G15 and TRE_R38.

Interactions (FHIR RESTful API §3.1.0): ``read`` (``GET [type]/[id]``) and ``search-type`` (``GET [type]?…``)
answering ``searchset`` Bundles with ``total`` and ``self``/``next`` links, ``_count`` (at most 50) and
``_offset``. Search parameters: Practitioner ``identifier``, ``name``, ``family``, ``given``, ``_id``;
Organization ``identifier``, ``name``, ``address-city``, ``address-postalcode``, ``_id``; PractitionerRole
``practitioner``, ``organization``, ``role``, ``specialty``, ``_id``. Unknown parameters are refused (strict
handling). Errors are ``OperationOutcome`` resources. Media type ``application/fhir+json``.
Not provided: write interactions, ``_include``, history, ``_format=xml``, CapabilityStatement negotiation beyond
``GET metadata``. Patients are not part of the view.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from carnet.config import Settings
from carnet.db import Database
from carnet.directory import store
from carnet.directory.checks import PROFESSIONS
from carnet.directory.identifiers import OID_IDNPS, OID_IDNST
from carnet.directory.models import Mailbox, Organisation, Professional
from carnet.directory.search import MAX_OFFSET, QueryError, words

FHIR_JSON = "application/fhir+json"
SYSTEM_IDNPS = f"urn:oid:{OID_IDNPS}"
SYSTEM_IDNST = f"urn:oid:{OID_IDNST}"
SYSTEM_RPPS = "https://rpps.esante.gouv.fr"
SYSTEM_FINESS = "https://finess.esante.gouv.fr"
SYSTEM_ID_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
SYSTEM_PROFESSION = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
SYSTEM_SPECIALTY = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
MAX_COUNT = 50
DEFAULT_COUNT = 20
_COMMON = {"_count", "_offset", "_format"}
_PARAMS = {
    "Practitioner": {"identifier", "name", "family", "given", "_id"},
    "Organization": {"identifier", "name", "address-city", "address-postalcode", "_id"},
    "PractitionerRole": {"practitioner", "organization", "role", "specialty", "_id"},
}


class FhirError(Exception):
    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        self.status, self.code, self.diagnostics = status, code, diagnostics
        super().__init__(diagnostics)


def operation_outcome(code: str, diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


def _response(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


def _meta(at: datetime) -> dict[str, str]:
    return {"lastUpdated": at.astimezone(UTC).isoformat().replace("+00:00", "Z")}


def _identifier(system: str, value: str, type_code: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"use": "official", "system": system, "value": value}
    if type_code:
        out["type"] = {"coding": [{"system": SYSTEM_ID_TYPE, "code": type_code}]}
    return out


def _telecom(mailboxes: list[Mailbox]) -> list[dict[str, Any]]:
    return [{"system": "email", "value": m.address, "use": "work"} for m in mailboxes]


def practitioner(pro: Professional, mailboxes: list[Mailbox]) -> dict[str, Any]:
    identifiers = [_identifier(SYSTEM_IDNPS, pro.national_id, "IDNPS")]
    if pro.id_type == "RPPS":
        identifiers.append(_identifier(SYSTEM_RPPS, pro.id_value, "RPPS"))
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": pro.national_id,
        "meta": _meta(pro.created_at),
        "identifier": identifiers,
        "active": True,
        "name": [{"use": "official", "family": pro.last_name, "given": [pro.first_name]}],
    }
    if mailboxes:
        resource["telecom"] = _telecom(mailboxes)
    return resource


def organization(org: Organisation, mailboxes: list[Mailbox]) -> dict[str, Any]:
    identifiers = [_identifier(SYSTEM_IDNST, org.national_id, "IDNST")]
    if org.id_type == "FINESS":
        identifiers.append(_identifier(SYSTEM_FINESS, org.id_value, "FINEG"))
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": org.national_id,
        "meta": _meta(org.created_at),
        "identifier": identifiers,
        "active": True,
        "name": org.name,
    }
    if mailboxes:
        resource["telecom"] = _telecom(mailboxes)
    address = {k: v for k, v in (("city", org.city), ("postalCode", org.postal_code)) if v}
    if org.street:
        address["line"] = [org.street]  # type: ignore[assignment]
    if address:
        resource["address"] = [{"use": "work", **address, "country": "FR"}]
    return resource


def role_id(pro: Professional, org: Organisation | None) -> str:
    return f"{pro.national_id}-{org.national_id}" if org is not None else pro.national_id


def practitioner_role(pro: Professional, org: Organisation | None, mailboxes: list[Mailbox]) -> dict[str, Any]:
    coding = {"system": SYSTEM_PROFESSION, "code": pro.profession_code}
    if pro.profession_code in PROFESSIONS:
        coding["display"] = PROFESSIONS[pro.profession_code]
    resource: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": role_id(pro, org),
        "meta": _meta(pro.created_at),
        "active": True,
        "practitioner": {
            "reference": f"Practitioner/{pro.national_id}",
            "display": f"{pro.first_name} {pro.last_name}",
        },
        "code": [{"coding": [coding]}],
    }
    if org is not None:
        resource["organization"] = {"reference": f"Organization/{org.national_id}", "display": org.name}
    if pro.specialty_code:
        resource["specialty"] = [{"coding": [{"system": SYSTEM_SPECIALTY, "code": pro.specialty_code}]}]
    if mailboxes:
        resource["telecom"] = _telecom(mailboxes)
    return resource


# Search parameters ---------------------------------------------------------------------------------------------


def _token(value: str) -> tuple[str | None, str]:
    system, bar, code = value.partition("|")
    return (system or None, code) if bar else (None, value)


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name, [])
    if len(values) > 1:
        raise FhirError(400, "invalid", f"parameter {name} is repeated")
    if values and len(values[0]) > 200:
        raise FhirError(400, "too-costly", f"parameter {name} is longer than 200 characters")
    return values[0] if values else None


def _reference(value: str | None, resource_type: str) -> str | None:
    if value is None:
        return None
    return value.rsplit("/", 1)[1] if value.startswith(f"{resource_type}/") else value


def _paging(params: dict[str, list[str]]) -> tuple[int, int]:
    try:
        count = int(_single(params, "_count") or DEFAULT_COUNT)
        offset = int(_single(params, "_offset") or 0)
    except ValueError:
        raise FhirError(400, "invalid", "_count and _offset must be integers") from None
    if not 0 <= offset <= MAX_OFFSET:
        raise FhirError(400, "too-costly", f"_offset must be between 0 and {MAX_OFFSET}")
    return offset, max(0, min(count, MAX_COUNT))


def _text(params: dict[str, list[str]], name: str) -> tuple[str, ...]:
    try:
        return words(_single(params, name), name)
    except QueryError as exc:
        raise FhirError(400, "invalid", str(exc)) from None


def _check_params(resource_type: str, params: dict[str, list[str]]) -> None:
    unknown = sorted(set(params) - _PARAMS[resource_type] - _COMMON)
    if unknown:
        raise FhirError(400, "not-supported", f"search parameter {unknown[0]} is not supported on {resource_type}")


# Queries --------------------------------------------------------------------------------------------------------


async def _listed(
    session: AsyncSession, pros: list[Professional], orgs: list[Organisation]
) -> tuple[dict[int, list[Mailbox]], dict[int, list[Mailbox]]]:
    mailboxes = await store.published_mailboxes(
        session, professional_ids=[p.id for p in pros], organisation_ids=[o.id for o in orgs]
    )
    by_pro: dict[int, list[Mailbox]] = {}
    by_org: dict[int, list[Mailbox]] = {}
    for m in mailboxes:
        if m.professional_id is not None:
            by_pro.setdefault(m.professional_id, []).append(m)
        elif m.organisation_id is not None:
            by_org.setdefault(m.organisation_id, []).append(m)
    return by_pro, by_org


async def search_practitioners(db: Database, params: dict[str, list[str]]) -> tuple[int, list[dict[str, Any]]]:
    offset, count = _paging(params)
    national_ids, rpps = [], []
    identifier = _single(params, "identifier")
    if identifier:
        system, value = _token(identifier)
        if system in (None, SYSTEM_IDNPS):
            national_ids.append(value)
        if system in (None, SYSTEM_RPPS):
            rpps.append(value)
        if system not in (None, SYSTEM_IDNPS, SYSTEM_RPPS):
            return 0, []
    if _single(params, "_id"):
        national_ids.append(_single(params, "_id") or "")
    async with db.session() as session:
        names = _text(params, "name") + _text(params, "family") + _text(params, "given")
        total, rows = await store.search_professionals(
            session, name=names, national_ids=national_ids, rpps=rpps, offset=offset, limit=count
        )
        by_pro, _ = await _listed(session, rows, [])
    return total, [practitioner(p, by_pro.get(p.id, [])) for p in rows]


async def search_organizations(db: Database, params: dict[str, list[str]]) -> tuple[int, list[dict[str, Any]]]:
    offset, count = _paging(params)
    national_ids, finess = [], []
    identifier = _single(params, "identifier")
    if identifier:
        system, value = _token(identifier)
        if system in (None, SYSTEM_IDNST):
            national_ids.append(value)
        if system in (None, SYSTEM_FINESS):
            finess.append(value)
        if system not in (None, SYSTEM_IDNST, SYSTEM_FINESS):
            return 0, []
    if _single(params, "_id"):
        national_ids.append(_single(params, "_id") or "")
    city = _text(params, "address-city")
    async with db.session() as session:
        total, rows = await store.search_organisations(
            session,
            name=_text(params, "name"),
            city=" ".join(city) or None,
            postal_code=_single(params, "address-postalcode"),
            national_ids=national_ids,
            finess=finess,
            offset=offset,
            limit=count,
        )
        _, by_org = await _listed(session, [], rows)
    return total, [organization(o, by_org.get(o.id, [])) for o in rows]


async def search_roles(db: Database, params: dict[str, list[str]]) -> tuple[int, list[dict[str, Any]]]:
    offset, count = _paging(params)
    practitioner_id = _reference(_single(params, "practitioner"), "Practitioner")
    organization_id = _reference(_single(params, "organization"), "Organization")
    role_param = _single(params, "_id")
    if role_param:
        practitioner_id, _, organization_id = role_param.partition("-")
        organization_id = organization_id or None
    role = _single(params, "role")
    specialty = _single(params, "specialty")
    async with db.session() as session:
        total, rows = await store.search_roles(
            session,
            professional_national_id=practitioner_id,
            organisation_national_id=organization_id,
            profession=_token(role)[1] if role else None,
            specialty=_token(specialty)[1] if specialty else None,
            offset=offset,
            limit=count,
        )
        by_pro, _ = await _listed(session, [p for p, _o in rows], [])
    if role_param and organization_id is None:
        rows = [(p, o) for p, o in rows if o is None]
        total = len(rows)
    return total, [practitioner_role(p, o, by_pro.get(p.id, [])) for p, o in rows]


_SEARCHES: dict[str, Callable[[Database, dict[str, list[str]]], Awaitable[tuple[int, list[dict[str, Any]]]]]] = {
    "Practitioner": search_practitioners,
    "Organization": search_organizations,
    "PractitionerRole": search_roles,
}


def bundle(
    base: str, resource_type: str, params: dict[str, list[str]], total: int, resources: list[dict[str, Any]]
) -> dict[str, Any]:
    offset, count = _paging(params)
    plain = [(k, v) for k, values in params.items() for v in values if k not in ("_offset",)]
    links = [{"relation": "self", "url": f"{base}/{resource_type}?{urlencode([*plain, ('_offset', offset)])}"}]
    if offset + count < total and count:
        links.append(
            {"relation": "next", "url": f"{base}/{resource_type}?{urlencode([*plain, ('_offset', offset + count)])}"}
        )
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }


def capability_statement(base: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "implementation": {"description": "carnet directory (read-only)", "url": base},
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": name,
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {
                                "name": p,
                                "type": "token"
                                if p in ("identifier", "role", "specialty", "_id")
                                else "reference"
                                if p in ("practitioner", "organization")
                                else "string",
                            }
                            for p in sorted(_PARAMS[name])
                        ],
                    }
                    for name in _PARAMS
                ],
            }
        ],
    }


def fhir_router(db: Database, settings: Settings) -> APIRouter:
    """``/fhir/metadata``, ``/fhir/{type}`` (search) and ``/fhir/{type}/{id}`` (read)."""
    router = APIRouter(prefix="/fhir")

    def base_of(request: Request) -> str:
        url = str(request.url).split("?", 1)[0]
        return url[: url.index("/fhir") + len("/fhir")]

    @router.get("/metadata")
    async def metadata(request: Request) -> JSONResponse:
        return _response(capability_statement(base_of(request)))

    @router.get("/{resource_type}")
    async def search_type(resource_type: str, request: Request) -> JSONResponse:
        if resource_type not in _SEARCHES:
            return _response(operation_outcome("not-supported", f"resource type {resource_type} is not served"), 404)
        params: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            params.setdefault(key, []).append(value)
        try:
            _check_params(resource_type, params)
            total, resources = await _SEARCHES[resource_type](db, params)
            return _response(bundle(base_of(request), resource_type, params, total, resources))
        except FhirError as exc:
            return _response(operation_outcome(exc.code, exc.diagnostics), exc.status)

    @router.get("/{resource_type}/{resource_id}")
    async def read(resource_type: str, resource_id: str, request: Request) -> JSONResponse:
        if resource_type not in _SEARCHES:
            return _response(operation_outcome("not-supported", f"resource type {resource_type} is not served"), 404)
        if len(resource_id) > 64:
            return _response(operation_outcome("not-found", f"{resource_type}/{resource_id[:64]}… is not known"), 404)
        _total, resources = await _SEARCHES[resource_type](db, {"_id": [resource_id], "_count": ["2"]})
        match = [r for r in resources if r["id"] == resource_id]
        if not match:
            return _response(operation_outcome("not-found", f"{resource_type}/{resource_id} is not known"), 404)
        return _response(match[0])

    return router
