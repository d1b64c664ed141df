"""The certificate directory and the trust space over HTTP (a FastAPI router, mounted by the web server).

``directory_router(db, settings)`` serves:

- ``GET /directory/certificates/{address}``: the valid, unrevoked certificate of a mailbox (red-listed ones too:
  delivery needs them). Content negotiation on ``Accept`` (RFC 9110 §12.5.1): JSON by default;
  ``application/pem-certificate-chain`` (RFC 8555 §9.1) or ``application/x-pem-file`` for the PEM chain (leaf, then
  issuing CA); ``application/pkix-cert`` (RFC 2585 §4.1) for the DER leaf.
- ``GET /directory/search``: ``q``, ``name``, ``profession``, ``specialty``, ``organisation``, ``city``, ``rpps``,
  ``finess``, ``kind``, ``page`` (from 1), ``per_page`` (at most 50) — rules in :mod:`carnet.directory.search`.
- ``/directory/fhir/…``: the FHIR R4 view (:mod:`carnet.directory.fhir`).
- ``GET /trust/liste-blanche.xml`` (``application/xml``) and ``GET /trust/bundle.p7b`` (``application/pkcs7-mime;
  smime-type=certs-only``, RFC 8551 §3.2): our trust-space publication (:mod:`carnet.directory.trustspace`).

Errors are problem details (RFC 9457, ``application/problem+json``) with ``type`` URNs
``urn:carnet:problem:<name>``: ``unknown-address`` and ``no-certificate`` (404), ``bad-query`` (400),
``query-too-long`` (414), ``not-acceptable`` (406). Query strings longer than :data:`MAX_QUERY` are refused before
any parsing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from carnet.config import Settings
from carnet.db import Database
from carnet.directory.addresses import AddressError, is_local_domain, normalise_address
from carnet.directory.certificates import LookupStatus, local_certificates
from carnet.directory.fhir import fhir_router
from carnet.directory.records import MailboxKind, SearchQuery
from carnet.directory.search import DEFAULT_LIMIT, MAX_LIMIT, QueryError, search
from carnet.directory.trustspace import export_bundle, export_whitelist

MAX_QUERY = 1000
PROBLEM_JSON = "application/problem+json"
PEM_TYPES = ("application/pem-certificate-chain", "application/x-pem-file")
DER_TYPE = "application/pkix-cert"
JSON_TYPE = "application/json"
_SEARCH_PARAMS = {
    "q",
    "name",
    "profession",
    "specialty",
    "organisation",
    "city",
    "rpps",
    "finess",
    "kind",
    "page",
    "per_page",
}
_TITLES = {
    "unknown-address": "Unknown address",
    "no-certificate": "No valid certificate",
    "bad-query": "Bad query",
    "query-too-long": "Query too long",
    "not-acceptable": "Not acceptable",
}


def problem(status: int, name: str, detail: str, instance: str | None = None, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem details response."""
    body: dict[str, Any] = {
        "type": f"urn:carnet:problem:{name}",
        "title": _TITLES.get(name, name),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def negotiate(accept: str | None) -> str | None:
    """The media type to answer with for an ``Accept`` header (highest q wins; ties go to JSON), or None."""
    if not accept:
        return JSON_TYPE
    offered = (JSON_TYPE, *PEM_TYPES, DER_TYPE)
    best: tuple[float, int, str] | None = None
    for index, item in enumerate(accept.split(",")[:20]):
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if q <= 0:
            continue
        if media in ("*/*", "application/*"):
            candidate = JSON_TYPE
        elif media in offered:
            candidate = media
        else:
            continue
        rank = (q, -index, candidate)
        if best is None or rank[:2] > best[:2]:
            best = rank
    return best[2] if best else None


def directory_router(
    db: Database,
    settings: Settings,
    *,
    public_url: str | None = None,
    relay_endpoints: list[str] | None = None,
    operator_name: str | None = None,
) -> APIRouter:
    """The directory's routes (certificates, search, FHIR view) and the trust-space publication.

    ``public_url`` is where this server is reached from outside (default ``https://DOMAIN``): the whitelist
    announces ``<public_url>/directory`` as our directory, with ``relay_endpoints`` (default ``DOMAIN:25``).
    """
    router = APIRouter()
    directory_url = f"{(public_url or f'https://{settings.domain}').rstrip('/')}/directory"

    @router.get("/directory/certificates/{address}")
    async def certificate(address: str, request: Request) -> Response:
        media = negotiate(request.headers.get("accept"))
        if media is None:
            return problem(
                406,
                "not-acceptable",
                f"this resource is available as {JSON_TYPE}, {', '.join(PEM_TYPES)} or {DER_TYPE}",
            )
        try:
            normalised = normalise_address(address)
        except AddressError as exc:
            return problem(404, "unknown-address", str(exc))
        if not is_local_domain(normalised.rpartition("@")[2], settings.domain):
            return problem(404, "unknown-address", f"{normalised} is not an address of {settings.domain}")
        lookup = await local_certificates(db, normalised)
        if lookup.status is LookupStatus.UNKNOWN_ADDRESS:
            return problem(404, "unknown-address", f"no mailbox {normalised}")
        if not lookup.found:
            return problem(404, "no-certificate", f"{normalised} has no valid certificate ({lookup.detail})")
        leaf = lookup.certificates[0]
        if media == DER_TYPE:
            return Response(leaf.public_bytes(serialization.Encoding.DER), media_type=DER_TYPE)
        pem_chain = [c.public_bytes(serialization.Encoding.PEM).decode() for c in (leaf, *lookup.chain)]
        if media in PEM_TYPES:
            return Response("".join(pem_chain), media_type=media)
        return JSONResponse(
            {
                "address": normalised,
                "status": "found",
                "certificates": [
                    {
                        "serial": format(leaf.serial_number, "x"),
                        "subject": leaf.subject.rfc4514_string(),
                        "issuer": leaf.issuer.rfc4514_string(),
                        "not_before": leaf.not_valid_before_utc.isoformat(),
                        "not_after": leaf.not_valid_after_utc.isoformat(),
                        "pem": pem_chain[0],
                    }
                ],
                "chain": pem_chain[1:],
            }
        )

    @router.get("/directory/search")
    async def directory_search(request: Request) -> Response:
        if len(request.url.query) > MAX_QUERY:
            return problem(414, "query-too-long", f"the query string is longer than {MAX_QUERY} characters")
        params = request.query_params
        unknown = sorted(set(params) - _SEARCH_PARAMS)
        if unknown:
            return problem(400, "bad-query", f"unknown parameter {unknown[0]!r}")
        if any(len(params.getlist(name)) > 1 for name in params):
            return problem(400, "bad-query", "a parameter is repeated")
        try:
            page = int(params.get("page", "1"))
            per_page = int(params.get("per_page", str(DEFAULT_LIMIT)))
        except ValueError:
            return problem(400, "bad-query", "page and per_page must be integers")
        if page < 1 or not 1 <= per_page <= MAX_LIMIT:
            return problem(400, "bad-query", f"page starts at 1 and per_page is between 1 and {MAX_LIMIT}")
        kind = params.get("kind")
        if kind and kind.upper() not in MailboxKind.__members__:
            return problem(400, "bad-query", f"kind must be one of {', '.join(k.value for k in MailboxKind)}")
        query = SearchQuery(
            text=params.get("q"),
            name=params.get("name"),
            profession=params.get("profession"),
            specialty=params.get("specialty"),
            organisation=params.get("organisation"),
            city=params.get("city"),
            rpps=params.get("rpps"),
            finess=params.get("finess"),
            kind=MailboxKind(kind.upper()) if kind else None,
        )
        try:
            result = await search(db, query, offset=(page - 1) * per_page, limit=per_page)
        except QueryError as exc:
            return problem(400, "bad-query", str(exc))
        return JSONResponse(
            {
                "total": result.total,
                "page": page,
                "per_page": per_page,
                "results": [dataclasses.asdict(hit) for hit in result.hits],
            }
        )

    @router.get("/trust/liste-blanche.xml")
    async def whitelist() -> Response:
        document = await export_whitelist(
            db, settings, name=operator_name, directory_url=directory_url, relay_endpoints=relay_endpoints
        )
        return Response(document, media_type="application/xml")

    @router.get("/trust/bundle.p7b")
    async def bundle() -> Response:
        return Response(await export_bundle(db), media_type="application/pkcs7-mime; smime-type=certs-only")

    router.include_router(fhir_router(db, settings), prefix="/directory")
    return router
