"""The account: language, password, app passwords for mail clients, the TOTP second factor; switching to a
represented patient's space; the access history of a space.

Security settings always belong to the person signed in (``ctx.user``), never to the space they look at: a
representative cannot change the represented patient's password or second factor.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query
from starlette.responses import Response

from carnet.directory import auth
from carnet.directory.records import DirectoryError
from carnet.pki.keys import KeyVault
from carnet.webmail import i18n, totp
from carnet.webmail import store as web_store
from carnet.webmail.context import Ctx, PageError, check_csrf, current, mailbox_by_id, redirect
from carnet.webmail.pages_mail import folders_of

router = APIRouter()

MAX_PASSWORD_FIELD = 1024
MAX_LABEL = 60


async def _account_page(
    ctx: Ctx,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
    new_app_password: str | None = None,
    enrol: dict[str, str] | None = None,
) -> Response:
    settings = await web_store.user_settings(ctx.web.db, ctx.user.id)
    app_passwords = await auth.list_app_passwords(ctx.web.db, ctx.user.address)
    return ctx.web.page(
        ctx.request,
        "account.html",
        {
            "ctx": ctx,
            "folders": await folders_of(ctx),
            "settings": settings,
            "app_passwords": app_passwords,
            "error": error,
            "notice": notice,
            "new_app_password": new_app_password,
            "enrol": enrol,
        },
        status_code=status,
    )


async def _recheck_password(ctx: Ctx, password: str) -> Response | None:
    """A security change asks for the current password again (the directory's check and throttling; app passwords
    do not count); the account page with the error when it is refused, None when it is right."""
    try:
        principal = await auth.authenticate(ctx.web.db, ctx.user.address, password, client_ip=ctx.client_ip,
                                            protocol="webmail")
    except auth.Throttled:
        return await _account_page(ctx, error="error_throttled", status=429)
    except auth.AuthError:
        return await _account_page(ctx, error="error_current_password", status=400)
    if principal.method != "password":
        return await _account_page(ctx, error="error_current_password", status=400)
    return None


@router.get("/account")
async def account(ctx: Annotated[Ctx, Depends(current)], notice: str = "") -> Response:
    return await _account_page(ctx, notice=notice if notice in i18n.NOTICES else None)


@router.post("/account/language")
async def set_language(
    ctx: Annotated[Ctx, Depends(current)],
    language: Annotated[str, Form(max_length=8)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    await check_csrf(ctx, csrf)
    if language not in i18n.LANGUAGES:
        raise PageError(400, "error_language")
    await web_store.update_user(ctx.web.db, ctx.user.id, language=language)
    return redirect("/webmail/account?notice=language_saved")


@router.post("/account/password")
async def change_password(
    ctx: Annotated[Ctx, Depends(current)],
    current_password: Annotated[str, Form(max_length=MAX_PASSWORD_FIELD)] = "",
    new_password: Annotated[str, Form(max_length=MAX_PASSWORD_FIELD)] = "",
    confirm: Annotated[str, Form(max_length=MAX_PASSWORD_FIELD)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    await check_csrf(ctx, csrf)
    refused = await _recheck_password(ctx, current_password)
    if refused is not None:
        return refused
    if new_password != confirm:
        return await _account_page(ctx, error="error_password_confirm", status=400)
    try:
        await auth.set_password(ctx.web.db, ctx.user.address, new_password)
    except DirectoryError as exc:
        return await _account_page(ctx, error="error_password_policy:" + str(exc), status=400)
    signed_out = await web_store.destroy_sessions_of(ctx.web.db, ctx.user.id, keep_token=ctx.token)
    await ctx.audit("password_changed", f"{signed_out} other session(s) closed")
    return redirect("/webmail/account?notice=password_changed")


@router.post("/account/app-passwords")
async def create_app_password(
    ctx: Annotated[Ctx, Depends(current)],
    label: Annotated[str, Form(max_length=MAX_LABEL)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    await check_csrf(ctx, csrf)
    label = " ".join(label.split())
    if not label:
        return await _account_page(ctx, error="error_label", status=400)
    try:
        _info, secret = await auth.create_app_password(ctx.web.db, ctx.user.address, label)
    except DirectoryError as exc:
        return await _account_page(ctx, error="error_password_policy:" + str(exc), status=400)
    await ctx.audit("app_password_created", label)
    return await _account_page(ctx, new_app_password=secret, notice="app_password_created")


@router.post("/account/app-passwords/{password_id}/revoke")
async def revoke_app_password(
    ctx: Annotated[Ctx, Depends(current)], password_id: int, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    await check_csrf(ctx, csrf)
    owned = {p.id for p in await auth.list_app_passwords(ctx.web.db, ctx.user.address)}
    if password_id not in owned:  # someone else's id, or an unknown one: the same answer
        raise PageError(404, "error_no_app_password")
    await auth.revoke_app_password(ctx.web.db, ctx.user.address, password_id)
    await ctx.audit("app_password_revoked", str(password_id))
    return redirect("/webmail/account?notice=app_password_revoked")


# TOTP (RFC 6238) ----------------------------------------------------------------------------------------------------


@router.post("/account/totp/start")
async def totp_start(
    ctx: Annotated[Ctx, Depends(current)], csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """Draw a new secret, kept sealed but not yet enabled, and show its QR code and the confirmation form."""
    await check_csrf(ctx, csrf)
    settings = await web_store.user_settings(ctx.web.db, ctx.user.id)
    if settings.totp_enabled:
        raise PageError(409, "error_totp_enabled")
    secret = totp.new_secret()
    sealed = totp.seal(KeyVault.from_settings(ctx.web.settings), secret, ctx.user.id)
    await web_store.update_user(ctx.web.db, ctx.user.id, totp_sealed=sealed, totp_enabled=False, totp_last_step=None)
    return await _account_page(ctx, enrol={"secret": secret})


@router.get("/account/totp/qr.svg")
async def totp_qr(ctx: Annotated[Ctx, Depends(current)]) -> Response:
    """The QR code of the secret being enrolled (only while not yet enabled: an enabled secret is never shown)."""
    settings = await web_store.user_settings(ctx.web.db, ctx.user.id)
    if settings.totp_enabled or settings.totp_sealed is None:
        raise PageError(404, "error_no_totp")
    secret = totp.open_(KeyVault.from_settings(ctx.web.settings), settings.totp_sealed, ctx.user.id)
    uri = totp.provisioning_uri(secret, ctx.user.address, f"carnet {ctx.web.settings.domain}")
    return Response(
        totp.qr_svg(uri, title=i18n.translate(ctx.lang, "totp_qr_title")),
        media_type="image/svg+xml",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )


@router.post("/account/totp/confirm")
async def totp_confirm(
    ctx: Annotated[Ctx, Depends(current)],
    code: Annotated[str, Form(max_length=20)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    await check_csrf(ctx, csrf)
    settings = await web_store.user_settings(ctx.web.db, ctx.user.id)
    if settings.totp_enabled or settings.totp_sealed is None:
        raise PageError(409, "error_no_totp")
    secret = totp.open_(KeyVault.from_settings(ctx.web.settings), settings.totp_sealed, ctx.user.id)
    step = totp.verify(secret, code, last_step=settings.totp_last_step)
    if step is None:
        return await _account_page(ctx, error="error_totp", enrol={"secret": secret}, status=400)
    await web_store.update_user(ctx.web.db, ctx.user.id, totp_enabled=True, totp_last_step=step)
    await web_store.destroy_sessions_of(ctx.web.db, ctx.user.id, keep_token=ctx.token)
    await ctx.audit("totp_enabled")
    return redirect("/webmail/account?notice=totp_enabled")


@router.post("/account/totp/disable")
async def totp_disable(
    ctx: Annotated[Ctx, Depends(current)],
    current_password: Annotated[str, Form(max_length=MAX_PASSWORD_FIELD)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    await check_csrf(ctx, csrf)
    refused = await _recheck_password(ctx, current_password)
    if refused is not None:
        return refused
    await web_store.update_user(ctx.web.db, ctx.user.id, totp_enabled=False, totp_sealed=None, totp_last_step=None)
    await ctx.audit("totp_disabled")
    return redirect("/webmail/account?notice=totp_disabled")


# Spaces and history -------------------------------------------------------------------------------------------------


@router.post("/space")
async def switch_space(
    ctx: Annotated[Ctx, Depends(current)],
    mailbox: Annotated[int, Form()] = 0,
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """A representative switches to the space of a person they represent (or back to their own)."""
    await check_csrf(ctx, csrf)
    target = next((s for s in ctx.spaces if s.id == mailbox), None)
    if target is None:
        raise PageError(403, "error_forbidden")
    await web_store.set_acting_for(ctx.web.db, ctx.token, target.id)
    await web_store.audit(
        ctx.web.db,
        space_id=target.id,
        actor_id=ctx.user.id,
        action="enter_space",
        target=target.address,
        client_ip=ctx.client_ip,
    )
    return redirect("/webmail/")


@router.get("/history")
async def history(ctx: Annotated[Ctx, Depends(current)], before: Annotated[int | None, Query(ge=1)] = None) -> Response:
    entries = await web_store.history(ctx.web.db, ctx.space.id, before_id=before, limit=51)
    more = len(entries) > 50
    entries = entries[:50]
    names: dict[int, str] = {}
    for entry in entries:
        if entry.actor_id not in names:
            actor = await mailbox_by_id(ctx.web.db, entry.actor_id)
            names[entry.actor_id] = actor.display_name if actor else "?"
    return ctx.web.page(
        ctx.request,
        "history.html",
        {
            "ctx": ctx,
            "folders": await folders_of(ctx),
            "entries": entries,
            "names": names,
            "next_before": entries[-1].id if more and entries else None,
        },
    )
