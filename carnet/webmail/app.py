"""Assembling the webmail into carnet's HTTP application (``carnet serve`` calls :func:`install`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from carnet.config import Settings
from carnet.db import Database
from carnet.webmail import i18n, pages_account, pages_auth, pages_mail, security
from carnet.webmail.context import HERE, PageError, Redirect, Web

PREFIX = "/webmail"


def install(app: FastAPI, db: Database, settings: Settings, *, store: Any, router: Any) -> Web:
    """Mount the webmail on ``app`` under ``/webmail`` (``/`` redirects there) with its security headers."""
    web = Web(db, settings, store, router)
    app.state.webmail = web
    app.include_router(pages_auth.router, prefix=PREFIX)
    app.include_router(pages_mail.router, prefix=PREFIX)
    app.include_router(pages_account.router, prefix=PREFIX)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="webmail-static")
    app.middleware("http")(security.security_middleware((PREFIX,)))

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=303)

    @app.exception_handler(Redirect)
    async def on_redirect(request: Request, exc: Redirect) -> Response:
        return RedirectResponse(exc.location, status_code=303)

    @app.exception_handler(PageError)
    async def on_page_error(request: Request, exc: PageError) -> Response:
        return _error_page(request, exc.status, exc.key)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith(PREFIX):
            return _error_page(request, 400, "error_bad_request")
        from fastapi.exception_handlers import request_validation_exception_handler

        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith(PREFIX):  # an error page, not JSON (e.g. a malformed multipart body: 400)
            key = {404: "error_not_found", 413: "error_too_large"}.get(exc.status_code, "error_bad_request")
            return _error_page(request, exc.status_code, key)
        from fastapi.exception_handlers import http_exception_handler

        return await http_exception_handler(request, exc)

    return web


def _error_page(request: Request, status: int, key: str) -> Response:
    web: Web = request.app.state.webmail
    lang = i18n.negotiate(request.headers.get("accept-language"))
    return web.page(request, "error.html", {"status": status, "message": key}, status_code=status, lang=lang)
