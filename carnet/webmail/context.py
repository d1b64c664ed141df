"""What every webmail request works with: the shared services (:class:`Web`) and, once signed in, the request's
:class:`Ctx` (who is signed in, whose space they are in, the language, the CSRF token)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from carnet.config import Settings
from carnet.db import Database
from carnet.directory import auth
from carnet.directory import store as directory_store
from carnet.directory.mailboxes import mailbox_info
from carnet.directory.records import MailboxInfo, MailboxKind
from carnet.webmail import i18n, security
from carnet.webmail import store as web_store

HERE = Path(__file__).parent


@dataclass
class Web:
    """The services every webmail request shares (one per process)."""

    db: Database
    settings: Settings
    store: Any  # carnet.mailbox.store.MailStore
    router: Any  # carnet.mta.router.Router
    templates: Jinja2Templates = field(init=False)

    def __post_init__(self) -> None:
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals["t"] = i18n.translate
        self.templates.env.globals["folder_label"] = i18n.folder_label
        self.templates.env.globals["LANGUAGES"] = i18n.LANGUAGES
        self.templates.env.globals["IFRAME_SANDBOX"] = security.IFRAME_SANDBOX
        self.templates.env.filters["datetime"] = i18n.format_datetime
        self.templates.env.filters["size"] = i18n.format_size

    def page(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        *,
        status_code: int = 200,
        lang: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        ctx: Ctx | None = context.get("ctx")
        language = lang or (ctx.lang if ctx else i18n.negotiate(request.headers.get("accept-language")))
        data = {
            "lang": language,
            "ctx": ctx,
            "csrf": ctx.session.csrf_token if ctx else context.get("csrf", ""),
            "section": _SECTIONS.get(name, "mail"),
            "folders": None,
            "folder": None,
            **context,
        }
        return self.templates.TemplateResponse(request, name, data, status_code=status_code, headers=headers)


_SECTIONS = {"account.html": "account", "history.html": "history"}


@dataclass
class Ctx:
    """A signed-in request."""

    request: Request
    web: Web
    token: str
    session: web_store.SessionData
    user: MailboxInfo  # who signed in
    space: MailboxInfo  # whose mailbox is being looked at: the user's own or a represented patient's
    spaces: list[MailboxInfo]  # every space the user may switch to, their own first
    lang: str
    folders: list[Any] | None = None  # the space's folders, once read in this request (pages_mail.folders_of)

    @property
    def client_ip(self) -> str:
        return self.request.client.host if self.request.client else ""

    @property
    def acting_for_other(self) -> bool:
        return self.space.id != self.user.id

    @property
    def is_patient_space(self) -> bool:
        return self.space.kind is MailboxKind.PAT

    async def audit(self, action: str, target: str = "") -> None:
        await web_store.audit(
            self.web.db,
            space_id=self.space.id,
            actor_id=self.user.id,
            action=action,
            target=target,
            client_ip=self.client_ip,
        )


class Redirect(Exception):
    """Raised by dependencies to answer with a redirect (e.g. to the sign-in page)."""

    def __init__(self, location: str) -> None:
        self.location = location


class PageError(Exception):
    """An error page with a status code: ``key`` is an i18n message key."""

    def __init__(self, status: int, key: str, **params: object) -> None:
        self.status, self.key, self.params = status, key, params


async def mailbox_by_id(db: Database, mailbox_id: int) -> MailboxInfo | None:
    async with db.session() as session:
        row = await directory_store.mailbox_by_id(session, mailbox_id)
        return await mailbox_info(session, row) if row is not None else None


async def spaces_of(web: Web, user: MailboxInfo) -> list[MailboxInfo]:
    """The user's own mailbox, then each patient mailbox they currently represent (the directory decides)."""
    if user.kind is not MailboxKind.PAT:
        return [user]
    principal = auth.Principal(
        user.id, user.address, user.kind, user.display_name, user.national_id, user.ins, "webmail", "password"
    )
    spaces = [user]
    for address in await auth.send_as_addresses(web.db, principal):
        if address != user.address:
            info = await _lookup(web.db, address)
            if info is not None and info.kind is MailboxKind.PAT and info.active:
                spaces.append(info)
    return spaces


async def _lookup(db: Database, address: str) -> MailboxInfo | None:
    from carnet.directory.mailboxes import lookup_mailbox

    return await lookup_mailbox(db, address)


async def current(request: Request) -> Ctx:
    """The signed-in context of ``request``, or :class:`Redirect` to the sign-in page."""
    web: Web = request.app.state.webmail
    token = security.read_cookie(request, security.SESSION_COOKIE)
    session = await web_store.load_session(web.db, token)
    if session is None or token is None:
        raise Redirect("/webmail/login")
    if session.pending_totp:
        raise Redirect("/webmail/login/totp")
    user = await mailbox_by_id(web.db, session.mailbox_id)
    if user is None or not user.active:
        await web_store.destroy_session(web.db, token)
        raise Redirect("/webmail/login")
    spaces = await spaces_of(web, user)
    space = next((s for s in spaces if s.id == session.acting_for), None)
    if space is None:  # the representation ended meanwhile: back to one's own space
        await web_store.set_acting_for(web.db, token, user.id)
        space = user
    settings = await web_store.user_settings(web.db, user.id)
    lang = settings.language or i18n.negotiate(request.headers.get("accept-language"))
    return Ctx(request, web, token, session, user, space, spaces, lang)


async def check_csrf(ctx: Ctx, given: str | None) -> None:
    if not security.same_origin(ctx.request) or not security.tokens_match(ctx.session.csrf_token, given):
        raise PageError(403, "error_csrf")


def redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=303)
