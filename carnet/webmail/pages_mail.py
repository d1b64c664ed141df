"""Folders, the message list, reading, downloading, read receipts, replying and (professionals) writing.

Authorization is structural: every URL names a folder by id and a message by UID, and both are looked up in the
folders of the space the session is in (``ctx.space``), never by blob id; a folder id of another mailbox is "not
found", exactly like one that does not exist. Sending goes through the MTA's router and gateway, as SMTP
submission does: the gateway signs on the sender's behalf, the router applies the patients' rules.
"""

from __future__ import annotations

import contextlib
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from starlette.datastructures import UploadFile
from starlette.responses import HTMLResponse, Response

from carnet.directory.records import MailboxKind
from carnet.mailbox.api import FolderInfo, MessageSummary, SearchKey, SpecialUse, StoreError
from carnet.mta import headers
from carnet.mta.gateway import GatewayRefusal
from carnet.mta.router import Envelope, Recipient, RecipientRefused
from carnet.mta.store import correspondent_state
from carnet.webmail import badge as badges
from carnet.webmail import compose, i18n, render, security
from carnet.webmail.context import Ctx, PageError, check_csrf, current, redirect

router = APIRouter()

PAGE_SIZE = 50
MAX_WITHIN = 5  # nesting of message/rfc822 parts one may open
MAX_QUERY = 200
SEARCH_SCOPES = ("all", "subject", "from", "body")
#: Downloads keep their declared type only when it is one of these; anything else is application/octet-stream.
SAFE_DOWNLOAD_TYPES = {"application/pdf", "image/png", "image/jpeg", "image/gif", "text/plain", "text/calendar"}
#: Upper bound of a reply request (the attachments' limit plus the form fields), checked before parsing it.
MAX_REQUEST = compose.MAX_TOTAL * 4 // 3 + 2 * 1024 * 1024  # base64-free multipart, but leave room for overhead


# Lookups (the authorization boundary) -------------------------------------------------------------------------------


async def folders_of(ctx: Ctx) -> list[FolderInfo]:
    """The space's folders, read once per request (the first read of a new mailbox creates its folders)."""
    if ctx.folders is None:
        folders: list[FolderInfo] = await ctx.web.store.list_folders(ctx.space.id)
        if not folders:
            await ctx.web.store.ensure_account(ctx.space.id)
            folders = await ctx.web.store.list_folders(ctx.space.id)
        ctx.folders = folders
    return ctx.folders


async def folder_of(ctx: Ctx, folder_id: int) -> FolderInfo:
    for folder in await folders_of(ctx):
        if folder.id == folder_id:
            return folder
    raise PageError(404, "error_no_folder")


async def message_of(ctx: Ctx, folder_id: int, uid: int) -> tuple[FolderInfo, MessageSummary]:
    folder = await folder_of(ctx, folder_id)
    found = await ctx.web.store.summaries(folder.id, [uid])
    if not found:
        raise PageError(404, "error_no_message")
    return folder, found[0]


def parse_within(within: str) -> list[str]:
    sections = [s for s in within.split(",") if s] if within else []
    if len(sections) > MAX_WITHIN or any(not all(p.isdigit() and p != "0" for p in s.split(".")) for s in sections):
        raise PageError(404, "error_no_message")
    return sections


async def raw_of(ctx: Ctx, summary: MessageSummary, within: list[str]) -> bytes:
    raw: bytes = await ctx.web.store.raw(summary.blob_id)
    for section in within:
        try:
            raw = render.embedded_raw(raw, section)
        except KeyError:
            raise PageError(404, "error_no_message") from None
    return raw


def message_url(folder_id: int, uid: int, within: list[str] | None = None, suffix: str = "") -> str:
    url = f"/webmail/f/{folder_id}/m/{uid}{suffix}"
    return f"{url}?within={','.join(within)}" if within else url


# The message list ---------------------------------------------------------------------------------------------------


@router.get("/")
async def home(ctx: Annotated[Ctx, Depends(current)]) -> Response:
    inbox = next((f for f in await folders_of(ctx) if f.name == "INBOX"), None)
    if inbox is None:
        raise PageError(404, "error_no_folder")
    return redirect(f"/webmail/f/{inbox.id}")


def search_key(query: str, scope: str) -> SearchKey:
    """The store's search (RFC 9051 §6.4.4 keys): SUBJECT, FROM, BODY, or any of the three."""
    keys = {name: SearchKey(name, value=query) for name in ("subject", "from", "body")}
    if scope in keys:
        return keys[scope]
    return SearchKey("or", children=(keys["subject"], SearchKey("or", children=(keys["from"], keys["body"]))))


@router.get("/f/{folder_id}")
async def folder_page(
    ctx: Annotated[Ctx, Depends(current)],
    folder_id: int,
    before: Annotated[int | None, Query(ge=1)] = None,
    q: Annotated[str, Query(max_length=MAX_QUERY)] = "",
    scope: str = "all",
    notice: str = "",
) -> Response:
    folder = await folder_of(ctx, folder_id)
    store = ctx.web.store
    query = q.strip()
    if scope not in SEARCH_SCOPES:
        scope = "all"
    if query:
        uids = [u for u in await store.search(folder.id, search_key(query, scope)) if before is None or u < before]
        chosen = uids[-(PAGE_SIZE + 1) :]
        summaries = list(reversed(await store.summaries(folder.id, chosen)))
        matches: int | None = len(uids)
    else:
        summaries = await store.page(folder.id, before_uid=before, limit=PAGE_SIZE + 1)
        matches = None
    more = len(summaries) > PAGE_SIZE
    summaries = summaries[:PAGE_SIZE]
    described = await badges.describe(ctx.web.db, [badges.badge_for(s.signature) for s in summaries])
    rows = list(zip(summaries, described, strict=True))
    next_before = summaries[-1].uid if more and summaries else None
    return ctx.web.page(
        ctx.request,
        "folder.html",
        {
            "ctx": ctx,
            "folders": await folders_of(ctx),
            "folder": folder,
            "rows": rows,
            "query": query,
            "scope": scope,
            "matches": matches,
            "next_before": next_before,
            "first_page": before is None,
            "notice": notice if notice in ("trashed", "deleted", "sent") else None,
        },
    )


# Reading ------------------------------------------------------------------------------------------------------------


async def reply_state(ctx: Ctx, rendered: render.RenderedMessage) -> str:
    """``ok`` or why the space may not answer this message (an i18n key)."""
    if rendered.is_report or rendered.auto_submitted:
        return "reply_no_notification"
    if not rendered.from_address:
        return "reply_no_sender"
    if not ctx.is_patient_space:
        return "ok"
    if rendered.closes_thread:
        return "reply_closed"
    async with ctx.web.db.session() as session:
        state = await correspondent_state(session, ctx.space.id, rendered.from_address)
    return {"open": "ok", "closed": "reply_closed"}.get(state, "reply_not_correspondent")


@router.get("/f/{folder_id}/m/{uid}")
async def message_page(
    ctx: Annotated[Ctx, Depends(current)], folder_id: int, uid: int, within: str = "", notice: str = ""
) -> Response:
    sections = parse_within(within)
    folder, summary = await message_of(ctx, folder_id, uid)
    raw = await raw_of(ctx, summary, sections)
    rendered = render.render_message(raw)
    if not sections and "\\Seen" not in summary.flags:
        await ctx.web.store.store_flags(folder.id, [uid], "add", ["\\Seen"])
        ctx.folders = None  # the unseen counts changed
    await ctx.audit("read", f"{folder.name}/{uid}" + (f"#{within}" if sections else ""))
    badge = None if sections else (await badges.describe(ctx.web.db, [badges.badge_for(summary.signature)]))[0]
    state = await reply_state(ctx, rendered) if not sections else "reply_embedded"
    receipt = (
        not sections
        and bool(rendered.read_receipt_to)
        and "$MDNSent" not in summary.flags
        and not rendered.auto_submitted
        and not rendered.is_report
    )
    return ctx.web.page(
        ctx.request,
        "message.html",
        {
            "ctx": ctx,
            "folders": await folders_of(ctx),
            "folder": folder,
            "summary": summary,
            "msg": rendered,
            "badge": badge,
            "embedded": bool(sections),
            "within": sections,
            "reply_state": state,
            "receipt": receipt,
            "notice": notice if notice in i18n.NOTICES else "",
            "body_url": message_url(folder.id, uid, sections, "/body"),
            "part_url": lambda section: message_url(folder.id, uid, sections, f"/part/{section}"),
            "embedded_url": lambda section: message_url(folder.id, uid, [*sections, section]),
        },
    )


@router.get("/f/{folder_id}/m/{uid}/body")
async def message_body(ctx: Annotated[Ctx, Depends(current)], folder_id: int, uid: int, within: str = "") -> Response:
    """The message's own content, as a document for the sandboxed iframe, under the body policy."""
    sections = parse_within(within)
    _folder, summary = await message_of(ctx, folder_id, uid)
    rendered = render.render_message(await raw_of(ctx, summary, sections))
    fragment = rendered.html if rendered.html is not None else (rendered.text_html or "")
    document = render.body_document(fragment, lang=ctx.lang)
    return HTMLResponse(document, headers={"Content-Security-Policy": security.BODY_CSP})


def content_disposition(filename: str) -> str:
    """RFC 6266 §4.3: an ASCII fallback and the UTF-8 name (RFC 8187)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename) or "piece-jointe"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get("/f/{folder_id}/m/{uid}/part/{section}")
async def message_part(
    ctx: Annotated[Ctx, Depends(current)], folder_id: int, uid: int, section: str, within: str = ""
) -> Response:
    sections = parse_within(within)
    folder, summary = await message_of(ctx, folder_id, uid)
    parse_within(section)  # the same syntax check
    try:
        content, content_type, filename = render.part_content(await raw_of(ctx, summary, sections), section)
    except KeyError:
        raise PageError(404, "error_no_part") from None
    await ctx.audit("download", f"{folder.name}/{uid}/{section}")
    media_type = content_type if content_type in SAFE_DOWNLOAD_TYPES else "application/octet-stream"
    extension = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg"}.get(content_type, ".bin")
    return Response(
        content,
        media_type=media_type,
        headers={
            "Content-Disposition": content_disposition(filename or f"piece-jointe-{section}{extension}"),
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


# Read receipts (RFC 8098) -------------------------------------------------------------------------------------------


@router.post("/f/{folder_id}/m/{uid}/receipt")
async def send_receipt(
    ctx: Annotated[Ctx, Depends(current)], folder_id: int, uid: int, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """The reader consents: send the "displayed" MDN (RFC 8098 §2.1 requires consent), signed by the gateway,
    and set ``$MDNSent`` (RFC 3503 §3.1) so that it is offered once."""
    await check_csrf(ctx, csrf)
    folder, summary = await message_of(ctx, folder_id, uid)
    raw = await raw_of(ctx, summary, [])
    rendered = render.render_message(raw)
    if not rendered.read_receipt_to or "$MDNSent" in summary.flags or rendered.auto_submitted or rendered.is_report:
        raise PageError(409, "error_receipt")
    header, _ = headers.split_message(raw)
    try:
        mdn = compose.build_displayed_mdn(reader=ctx.space.address, to=rendered.read_receipt_to, original_header=header)
    except compose.ComposeError:
        raise PageError(409, "error_receipt") from None
    router_ = ctx.web.router
    credential = await router_.gateway.credential(ctx.space.certificate_serial)
    plan = await router_.generated(
        mdn, ctx.space.address, credential, [rendered.read_receipt_to], origin="mdn", author_id=ctx.space.id
    )
    if plan is None:
        raise PageError(502, "error_receipt")
    await router_.commit(plan)
    await ctx.web.store.store_flags(folder.id, [uid], "add", ["$MDNSent"])
    await ctx.audit("receipt", f"{folder.name}/{uid}")
    return redirect(message_url(folder.id, uid) + "?notice=receipt_sent")


# Keeping order: unread, trash -----------------------------------------------------------------------------------


@router.post("/f/{folder_id}/m/{uid}/unread")
async def mark_unread(
    ctx: Annotated[Ctx, Depends(current)], folder_id: int, uid: int, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    await check_csrf(ctx, csrf)
    folder, _summary = await message_of(ctx, folder_id, uid)
    await ctx.web.store.store_flags(folder.id, [uid], "remove", ["\\Seen"])
    return redirect(f"/webmail/f/{folder.id}")


@router.post("/f/{folder_id}/m/{uid}/delete")
async def delete_message(
    ctx: Annotated[Ctx, Depends(current)], folder_id: int, uid: int, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """Move to the Trash (RFC 6154 \\Trash, RFC 6851 MOVE semantics); in the Trash, delete for good (\\Deleted and
    expunge of that UID only, RFC 4315 UID EXPUNGE)."""
    await check_csrf(ctx, csrf)
    folder, _summary = await message_of(ctx, folder_id, uid)
    store = ctx.web.store
    trash = next((f for f in await folders_of(ctx) if f.special_use is SpecialUse.TRASH), None)
    if trash is None or trash.id == folder.id:
        await store.store_flags(folder.id, [uid], "add", ["\\Deleted"])
        await store.expunge(folder.id, [uid])
        await ctx.audit("delete", f"{folder.name}/{uid}")
    else:
        await store.move(folder.id, [uid], trash.id)
        await ctx.audit("trash", f"{folder.name}/{uid}")
    return redirect(f"/webmail/f/{folder.id}?notice=" + ("deleted" if trash is None or trash.id == folder.id
                                                         else "trashed"))


# Replying and writing -----------------------------------------------------------------------------------------------


async def submit(ctx: Ctx, raw: bytes, recipients: list[str]) -> None:
    """Send ``raw`` from the space's address through the router, as an authenticated SMTP submission would:
    RCPT-time checks (patients' rules, trust space), then the gateway signs and the router commits."""
    envelope = Envelope(
        sender=ctx.space.address,
        recipients=[Recipient(a) for a in recipients],
        origin="submission",
        helo="webmail",
        peer=ctx.client_ip,
        protocol="HTTPS" if security.is_tls(ctx.request) else "HTTP",
        allowed_from=frozenset({ctx.space.address}),  # current() checked that the user may act in this space
    )
    router_ = ctx.web.router
    for address in recipients:
        await router_.check_recipient(envelope, address, ctx.space)
    await router_.accept(envelope, raw)


async def save_sent(ctx: Ctx, raw: bytes) -> None:
    """Keep the sender's copy in their Sent folder (RFC 6154 \\Sent), seen, as mail clients do."""
    sent = next((f for f in await folders_of(ctx) if f.special_use is SpecialUse.SENT), None)
    if sent is None:
        return
    with contextlib.suppress(StoreError):  # a full mailbox keeps the message sent; only the copy is missing
        await ctx.web.store.append(ctx.space.id, sent.name, raw, ["\\Seen"])


async def read_uploads(request: Request) -> tuple[dict[str, str], list[compose.Upload]]:
    """The reply form: refuse oversized requests before reading them (413), then the fields and the files."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise PageError(411, "error_length_required")
    if int(length) > MAX_REQUEST:
        raise PageError(413, "error_too_large")
    form = await request.form(max_files=compose.MAX_ATTACHMENTS + 1, max_fields=20)
    fields: dict[str, str] = {}
    uploads: list[compose.Upload] = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            if data:  # an empty file input sends an empty part
                uploads.append(compose.Upload(value.filename or "", value.content_type or "", data))
        else:
            fields[name] = value
    await form.close()
    return fields, uploads


async def _reply_context(ctx: Ctx, folder_id: int, uid: int) -> tuple[FolderInfo, render.RenderedMessage]:
    folder, summary = await message_of(ctx, folder_id, uid)
    rendered = render.render_message(await raw_of(ctx, summary, []))
    state = await reply_state(ctx, rendered)
    if state != "ok":
        raise PageError(403, state)
    return folder, rendered


async def _compose_page(
    ctx: Ctx,
    *,
    folder: FolderInfo | None = None,
    uid: int | None = None,
    original: render.RenderedMessage | None = None,
    to: str = "",
    subject: str = "",
    body: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    """The writing form: a reply to ``original`` (in ``folder``, ``uid``) or, without it, a new message."""
    action = "/webmail/compose" if folder is None or uid is None else message_url(folder.id, uid, None, "/reply")
    return ctx.web.page(ctx.request, "compose.html", {
        "ctx": ctx, "folders": await folders_of(ctx), "folder": folder, "uid": uid, "original": original, "to": to,
        "subject": subject, "body": body, "error": error, "action": action,
    }, status_code=status)


@router.get("/f/{folder_id}/m/{uid}/reply")
async def reply_form(ctx: Annotated[Ctx, Depends(current)], folder_id: int, uid: int) -> Response:
    folder, rendered = await _reply_context(ctx, folder_id, uid)
    return await _compose_page(ctx, folder=folder, uid=uid, original=rendered, to=rendered.from_address,
                               subject=compose.reply_subject(rendered.subject))


async def _send(
    ctx: Ctx, *, to: str, fields: dict[str, str], uploads: list[compose.Upload], original: render.RenderedMessage | None
) -> str | None:
    """Build and send; returns an i18n error key, or None once sent."""
    try:
        checked = [compose.check_upload(u) for u in uploads]
        raw = compose.build_message(
            from_address=ctx.space.address,
            from_name=ctx.space.display_name,
            to=to,
            subject=fields.get("subject", ""),
            body=fields.get("body", ""),
            in_reply_to=original.message_id if original else "",
            references=original.references if original else "",
            attachments=checked,
            lang=ctx.lang,
        )
    except compose.ComposeError as exc:
        return f"compose_{exc.code}"
    raw = headers.prepend(raw, [("Message-ID", headers.new_message_id(ctx.web.settings.domain))])
    try:
        await submit(ctx, raw, [to])
    except (RecipientRefused, GatewayRefusal) as exc:
        return "send_refused:" + exc.text
    await save_sent(ctx, raw)
    return None


@router.post("/f/{folder_id}/m/{uid}/reply")
async def reply(ctx: Annotated[Ctx, Depends(current)], folder_id: int, uid: int) -> Response:
    fields, uploads = await read_uploads(ctx.request)
    await check_csrf(ctx, fields.get("csrf"))
    folder, rendered = await _reply_context(ctx, folder_id, uid)
    to = rendered.from_address  # the reply goes to the author, never to an address typed in the form
    error = await _send(ctx, to=to, fields=fields, uploads=uploads, original=rendered)
    if error is not None:
        return await _compose_page(ctx, folder=folder, uid=uid, original=rendered, to=to, error=error, status=422,
                                   subject=fields.get("subject", ""), body=fields.get("body", ""))
    await ctx.web.store.store_flags(folder.id, [uid], "add", ["\\Answered"])
    await ctx.audit("reply", to)
    return redirect(message_url(folder.id, uid) + "?notice=reply_sent")


def _compose_allowed(ctx: Ctx) -> None:
    if ctx.space.kind is MailboxKind.PAT:  # patients answer; they never start a thread
        raise PageError(403, "compose_patients")


@router.get("/compose")
async def compose_form(ctx: Annotated[Ctx, Depends(current)]) -> Response:
    _compose_allowed(ctx)
    return await _compose_page(ctx)


@router.post("/compose")
async def compose_send(ctx: Annotated[Ctx, Depends(current)]) -> Response:
    _compose_allowed(ctx)
    fields, uploads = await read_uploads(ctx.request)
    await check_csrf(ctx, fields.get("csrf"))
    to = fields.get("to", "").strip()
    error = await _send(ctx, to=to, fields=fields, uploads=uploads, original=None) if to else "compose_no_recipient"
    if error is not None:
        return await _compose_page(ctx, to=to, error=error, status=422, subject=fields.get("subject", ""),
                                   body=fields.get("body", ""))
    await ctx.audit("send", to)
    inbox = await ctx.web.store.get_folder(ctx.space.id, "INBOX")
    return redirect(f"/webmail/f/{inbox.id}?notice=sent")
