"""Sign-in (address or INS and password, then the TOTP code when enrolled) and sign-out.

Passwords are checked by the directory's authentication service (argon2id, throttling per account and per client
address); app passwords are for mail clients and are refused here. A second factor, once enrolled, is asked on a
separate step bound to a short-lived pending session; codes are single-use (RFC 6238 §5.2).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from carnet.directory import auth
from carnet.pki.keys import KeyVault
from carnet.webmail import i18n, security, totp
from carnet.webmail import store as web_store
from carnet.webmail.context import Web, redirect

router = APIRouter()

MAX_LOGIN = 320
MAX_PASSWORD_FIELD = 1024
#: Wrong TOTP codes allowed per pending sign-in: then the pending session ends and the password is asked again.
MAX_TOTP_FAILURES = 5


def _web(request: Request) -> Web:
    web: Web = request.app.state.webmail
    return web


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _login_page(
    request: Request,
    *,
    error: str | None = None,
    login: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    web = _web(request)
    token = security.read_cookie(request, security.PRELOGIN_COOKIE) or security.new_token()
    response = web.page(
        request, "login.html", {"csrf": token, "error": error, "login": login}, status_code=status, headers=headers
    )
    security.set_cookie(response, request, security.PRELOGIN_COOKIE, token)
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
async def login(
    request: Request,
    login: Annotated[str, Form(max_length=MAX_LOGIN)] = "",
    password: Annotated[str, Form(max_length=MAX_PASSWORD_FIELD)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    web = _web(request)
    if not security.same_origin(request) or not security.tokens_match(
        security.read_cookie(request, security.PRELOGIN_COOKIE), csrf
    ):
        return _login_page(request, error="error_csrf", login=login, status=403)
    if not login.strip() or not password:
        return _login_page(request, error="error_login_missing", login=login, status=400)
    try:
        principal = await auth.authenticate(
            web.db, login.strip(), password, client_ip=_client_ip(request), protocol="webmail"
        )
    except auth.Throttled as exc:
        return _login_page(
            request, error="error_throttled", login=login, status=429, headers={"Retry-After": str(exc.retry_after)}
        )
    except auth.Disabled:
        return _login_page(request, error="error_disabled", login=login, status=403)
    except auth.BadCredentials:
        return _login_page(request, error="error_bad_credentials", login=login, status=401)
    if principal.method != "password":  # an app password: for mail clients only
        return _login_page(request, error="error_app_password", login=login, status=401)
    settings = await web_store.user_settings(web.db, principal.mailbox_id)
    token = await web_store.create_session(
        web.db, principal.mailbox_id, _client_ip(request), pending_totp=settings.totp_enabled
    )
    if not settings.totp_enabled:
        await web_store.audit(
            web.db,
            space_id=principal.mailbox_id,
            actor_id=principal.mailbox_id,
            action="sign_in",
            client_ip=_client_ip(request),
        )
    response = redirect("/webmail/login/totp" if settings.totp_enabled else "/webmail/")
    security.set_cookie(response, request, security.SESSION_COOKIE, token)
    security.clear_cookie(response, request, security.PRELOGIN_COOKIE)
    return response


async def _pending(request: Request) -> tuple[str, web_store.SessionData] | None:
    token = security.read_cookie(request, security.SESSION_COOKIE)
    session = await web_store.load_session(_web(request).db, token)
    if token is None or session is None or not session.pending_totp:
        return None
    return token, session


@router.get("/login/totp")
async def totp_form(request: Request) -> Response:
    pending = await _pending(request)
    if pending is None:
        return redirect("/webmail/login")
    web = _web(request)
    lang = i18n.negotiate(request.headers.get("accept-language"))
    return web.page(request, "totp.html", {"csrf": pending[1].csrf_token, "error": None}, lang=lang)


@router.post("/login/totp")
async def totp_check(
    request: Request,
    code: Annotated[str, Form(max_length=20)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    pending = await _pending(request)
    if pending is None:
        return redirect("/webmail/login")
    token, session = pending
    web = _web(request)
    lang = i18n.negotiate(request.headers.get("accept-language"))
    if not security.same_origin(request) or not security.tokens_match(session.csrf_token, csrf):
        return web.page(
            request, "totp.html", {"csrf": session.csrf_token, "error": "error_csrf"}, status_code=403, lang=lang
        )
    settings = await web_store.user_settings(web.db, session.mailbox_id)
    step = None
    if settings.totp_sealed is not None:
        secret = totp.open_(KeyVault.from_settings(web.settings), settings.totp_sealed, session.mailbox_id)
        step = totp.verify(secret, code, last_step=settings.totp_last_step)
    if step is None or not await web_store.use_totp_step(web.db, session.mailbox_id, step):
        await auth_failure(web, request, session.mailbox_id)
        failures = await web_store.count_actions(web.db, session.mailbox_id, "totp_failed", session.created_at)
        if failures >= MAX_TOTP_FAILURES:  # no guessing the code: the password is asked again (and throttled)
            await web_store.destroy_session(web.db, token)
            response = _login_page(request, error="error_totp_locked", status=401)
            security.clear_cookie(response, request, security.SESSION_COOKIE)
            return response
        return web.page(
            request, "totp.html", {"csrf": session.csrf_token, "error": "error_totp"}, status_code=401, lang=lang
        )
    new_token = await web_store.promote_session(web.db, token, _client_ip(request))
    if new_token is None:
        return redirect("/webmail/login")
    await web_store.audit(
        web.db,
        space_id=session.mailbox_id,
        actor_id=session.mailbox_id,
        action="sign_in",
        target="totp",
        client_ip=_client_ip(request),
    )
    response = redirect("/webmail/")
    security.set_cookie(response, request, security.SESSION_COOKIE, new_token)
    return response


async def auth_failure(web: Web, request: Request, mailbox_id: int) -> None:
    """A wrong TOTP code, recorded in the audit trail (which also counts them, :data:`MAX_TOTP_FAILURES`)."""
    await web_store.audit(
        web.db, space_id=mailbox_id, actor_id=mailbox_id, action="totp_failed", client_ip=_client_ip(request)
    )


@router.post("/logout")
async def logout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    web = _web(request)
    token = security.read_cookie(request, security.SESSION_COOKIE)
    session = await web_store.load_session(web.db, token)
    if token is not None and session is not None:
        if not security.same_origin(request) or not security.tokens_match(session.csrf_token, csrf):
            return web.page(request, "error.html", {"status": 403, "message": "error_csrf"}, status_code=403)
        await web_store.audit(
            web.db,
            space_id=session.acting_for,
            actor_id=session.mailbox_id,
            action="sign_out",
            client_ip=_client_ip(request),
        )
        await web_store.destroy_session(web.db, token)
    response = redirect("/webmail/login")
    security.clear_cookie(response, request, security.SESSION_COOKIE)
    return response
