"""The PKI's HTTP endpoints under ``/pki/``: OCSP, CRLs, CA certificates and the CA bundle.

=====================================  ============================================================================
``GET  /pki/ocsp/{request}``           OCSP, the DER request base64-encoded then URL-encoded (RFC 6960 Appendix A.1)
``POST /pki/ocsp``                     OCSP, body ``application/ocsp-request`` (RFC 6960 Appendix A.1)
``GET  /pki/crl/{ca}.crl``             current CRL of a CA, DER, ``application/pkix-crl`` (RFC 5280 §4.2.1.13,
                                       RFC 2585 §4.2)
``GET  /pki/ca/{ca}.crt``              a CA certificate, DER, ``application/pkix-cert`` (RFC 5280 §4.2.2.1,
                                       RFC 2585 §4.1)
``GET  /pki/ca-bundle.pem``            root and issuing CAs, PEM, ``application/pem-certificate-chain`` (RFC 8555
                                       §9.1): the file a mail client must trust
=====================================  ============================================================================

OCSP answers are always ``200 application/ocsp-response`` — errors are OCSP statuses (malformedRequest,
unauthorized…); anything else that goes wrong is a problem document (RFC 9457), never a traceback. Requests are
bounded: an OCSP body larger than :data:`carnet.pki.ocsp.MAX_REQUEST_BYTES` is refused with 413 before it is read
in full, a GET request path longer than :data:`MAX_GET_REQUEST_CHARS` with 414.

:func:`pki_router` builds the router for any FastAPI application (``carnet serve`` mounts it); :func:`create_app`
and :func:`serve` run it alone (``carnet pki serve-http``, ``carnet demo``).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Final
from urllib.parse import unquote

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from carnet.config import Settings
from carnet.db import Database
from carnet.pki import authority, revocation
from carnet.pki.ocsp import MAX_REQUEST_BYTES, OcspAnswer, OcspResponder
from carnet.pki.profiles import AUTHORITY_NAMES

log = logging.getLogger(__name__)

#: A single-certificate request is about 100 bytes of DER (RFC 5019 §5 keeps GET requests under 255 bytes); anything
#: this long belongs in a POST, and stays within the URL limits of common proxies.
MAX_GET_REQUEST_CHARS: Final = 8192
OCSP_REQUEST_TYPE: Final = "application/ocsp-request"
OCSP_RESPONSE_TYPE: Final = "application/ocsp-response"
#: How long HTTP caches may keep a GET OCSP answer, a CRL or a CA certificate (RFC 5019 §6.2 allows up to
#: nextUpdate; carnet keeps it short so that a revocation is seen within minutes).
CACHE_SECONDS: Final = 300


def problem(status: int, detail: str) -> JSONResponse:
    """An RFC 9457 problem document."""
    return JSONResponse(
        {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


class ProblemRoute(APIRoute):
    """A route whose failures become problem documents: validation 400, not initialised 503, else 500."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError:
                return problem(400, "invalid request")
            except StarletteHTTPException as exc:
                return problem(exc.status_code, str(exc.detail))
            except authority.NotInitialised:
                return problem(503, "the certificate authority is not initialised (run `carnet init`)")
            except (SQLAlchemyError, OSError) as exc:
                log.warning("PKI HTTP: storage unavailable (%s)", type(exc).__name__)
                return problem(503, "storage unavailable, try again later")
            except Exception:
                log.exception("PKI HTTP: internal error on %s", request.url.path)
                return problem(500, "internal error")

        return guarded


def _ocsp_response(answer: OcspAnswer, *, cacheable: bool) -> Response:
    headers = {"Cache-Control": f"max-age={CACHE_SECONDS}, public, no-transform, must-revalidate"}
    if not cacheable or answer.response_status != "successful":
        headers = {"Cache-Control": "no-store"}
    return Response(answer.der, media_type=OCSP_RESPONSE_TYPE, headers=headers)


def decode_get_request(encoded: str) -> bytes | None:
    """The DER of a GET OCSP request path segment: URL-decoded, then base64 (standard or URL-safe alphabet)."""
    text = unquote(encoded).strip().replace(" ", "+")  # some clients leave '+' decoded as a space
    text += "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text.encode("ascii"))
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        return None


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def pki_router(db: Database, settings: Settings) -> APIRouter:
    """The ``/pki`` router over ``db``: OCSP (GET and POST), CRLs, CA certificates, the CA bundle."""
    router = APIRouter(prefix="/pki", route_class=ProblemRoute)
    responder = OcspResponder(db, settings)

    @router.post("/ocsp")
    async def ocsp_post(request: Request) -> Response:
        """RFC 6960 Appendix A.1: the DER OCSPRequest as the body."""
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != OCSP_REQUEST_TYPE:
            return problem(415, f"an OCSP request is sent as {OCSP_REQUEST_TYPE}")
        body = await _read_limited(request, MAX_REQUEST_BYTES)
        if body is None:
            return problem(413, f"OCSP requests are limited to {MAX_REQUEST_BYTES} bytes")
        return _ocsp_response(await responder.respond(body), cacheable=False)

    @router.get("/ocsp/{encoded:path}")
    async def ocsp_get(encoded: str) -> Response:
        """RFC 6960 Appendix A.1: ``GET {url}/{url-encoding of base-64 encoding of the DER OCSPRequest}``."""
        if len(encoded) > MAX_GET_REQUEST_CHARS:
            return problem(414, "OCSP request too long for GET; use POST")
        der = decode_get_request(encoded)
        return _ocsp_response(await responder.respond(der if der is not None else b""), cacheable=True)

    @router.api_route("/crl/{name}.crl", methods=["GET", "HEAD"])
    async def crl(name: str) -> Response:
        """The current CRL of a CA (a fresh one is issued when the latest is stale)."""
        if name not in AUTHORITY_NAMES:
            return problem(404, f"no certificate authority named {name!r}")
        der = await revocation.current_crl(db, settings, name)
        return Response(der, media_type="application/pkix-crl", headers={"Cache-Control": f"max-age={CACHE_SECONDS}"})

    @router.api_route("/ca/{name}.crt", methods=["GET", "HEAD"])
    async def ca_certificate(name: str) -> Response:
        """A CA certificate in DER (the caIssuers access method, RFC 5280 §4.2.2.1)."""
        certificates = await authority.authority_certificates(db)
        if name not in certificates:
            return problem(404, f"no certificate authority named {name!r}")
        der = certificates[name].public_bytes(serialization.Encoding.DER)
        return Response(der, media_type="application/pkix-cert", headers={"Cache-Control": "max-age=86400"})

    @router.api_route("/ca-bundle.pem", methods=["GET", "HEAD"])
    async def ca_bundle() -> Response:
        """The root and issuing CAs, PEM: what S/MIME clients import as trusted."""
        certificates = await authority.authority_certificates(db)
        return Response(
            authority.pem(*certificates.values()),
            media_type="application/pem-certificate-chain",
            headers={"Content-Disposition": 'attachment; filename="ca-bundle.pem"', "Cache-Control": "max-age=3600"},
        )

    return router


def create_app(settings: Settings) -> FastAPI:
    """A FastAPI application serving only ``/pki/`` (its database is closed when the application stops)."""
    db = Database(settings.sqlalchemy_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await db.close()

    app = FastAPI(title="carnet PKI", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(pki_router(db, settings))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        return problem(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, _exc: RequestValidationError) -> Response:
        return problem(400, "invalid request")

    return app


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve ``/pki/`` over HTTP with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, server_header=False, log_level="info")
