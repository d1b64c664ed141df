"""The real-browser harness itself (``browser.py``, ``hostile.py``), against small pages served here.

Needs Debian's Chromium at /usr/bin/chromium: without it these tests fail (never skip).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import browser
import hostile
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page

#: The browser is launched once per module: the async tests share the module's event loop.
in_browser = pytest.mark.asyncio(loop_scope="module")

STRICT_CSP = "default-src 'none'; script-src 'self'; style-src 'self'"
#: The policy of carnet's message body documents (carnet.webmail.security.BODY_CSP at the time of writing).
BODY_CSP = (
    "default-src 'none'; img-src cid: data:; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox"
)
PIXEL = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


def document(body: str, *, title: str = "Carnet") -> str:
    head = f'<meta charset="utf-8"><title>{title}</title>'
    return f'<!doctype html><html lang="fr"><head>{head}</head><body>{body}</body></html>'


@dataclass
class Served:
    body: str
    headers: dict[str, str] = field(default_factory=dict)


PAGES: dict[str, Served] = {
    "/clean": Served(document("<main><h1>Boîte de réception</h1><p>Aucun message.</p></main>")),
    "/hostile": Served(
        document("<script>fetch('http://evil.example/x').catch(() => {}); alert(1); console.log('HOSTILE');</script>")
    ),
    "/misbehaving": Served(
        document(
            "<script>window.open('/clean'); new WebSocket('ws://evil.example/socket');"
            "throw new Error('boom');</script>"
        )
    ),
    # An inline script under the strict policy: Chromium refuses it and says so on the console.
    "/csp-refusal": Served(
        document("<main><h1>x</h1><script>alert(1)</script></main>"), {"Content-Security-Policy": STRICT_CSP}
    ),
    "/a11y-bad": Served(
        document('<main><h1>Messages</h1><img src="/pixel.gif"><button type="button"></button></main>'),
        {"Content-Security-Policy": STRICT_CSP},
    ),
    "/a11y-good": Served(
        document(
            '<main><h1>Messages</h1><img src="/pixel.gif" alt="Logo de Carnet">'
            '<button type="button">Envoyer</button></main>'
        ),
        {"Content-Security-Policy": STRICT_CSP},
    ),
    # The message body as the webmail shows it: a frame without scripts (attribute and CSP sandbox).
    "/a11y-frame": Served(
        document(
            '<main><h1>Message</h1><iframe title="Corps du message" sandbox="allow-popups" src="/a11y-body"></iframe>'
            "</main>"
        ),
        {"Content-Security-Policy": STRICT_CSP + "; frame-src 'self'"},
    ),
    "/a11y-body": Served(f'<p>Résultats</p><img src="{PIXEL}">', {"Content-Security-Policy": BODY_CSP}),
    "/frames-sandboxed": Served(document('<iframe title="Message" sandbox src="/frame-locked"></iframe>')),
    "/frames-scripts-csp": Served(
        document('<iframe title="Message" sandbox="allow-scripts allow-modals" src="/frame-locked"></iframe>')
    ),
    "/frame-locked": Served(
        "<p>Message</p><script>alert(1); console.log('HOSTILE')</script>",
        {"Content-Security-Policy": "default-src 'none'"},
    ),
    "/frames-open": Served(document('<iframe title="Message" src="/frame-open"></iframe>')),
    "/frame-open": Served("<p>Message</p><script>alert(1); console.log('HOSTILE')</script>"),
}
PAGES.update({f"/raw/{name}": Served(html) for name, html in hostile.HOSTILE})


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/pixel.gif":
            self._send(200, {"Content-Type": "image/gif"}, b"GIF89a")  # blocked by the CSP anyway
            return
        served = PAGES.get(path)
        if served is None:
            self._send(404, {"Content-Type": "text/plain"}, b"not found")
            return
        self._send(200, {"Content-Type": "text/html; charset=utf-8", **served.headers}, served.body.encode())

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Browser]:
    async with browser.launch() as launched:
        yield launched


@pytest_asyncio.fixture(loop_scope="module")
async def context(chromium: Browser, origin: str) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(chromium, base_url=origin)
    try:
        yield ctx
    finally:
        await ctx.close()


async def guarded_page(context: BrowserContext, origin: str, path: str) -> tuple[browser.Guard, Page]:
    guard = browser.Guard({origin})
    await guard.attach(context)
    page = await context.new_page()
    await page.goto(path)
    await guard.settle(page)
    return guard, page


def test_chromium_is_installed() -> None:
    browser.require_chromium()


@in_browser
async def test_missing_chromium_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(browser.ChromiumMissing, match=r"not at /nonexistent/chromium"):
        async with browser.launch():
            pass


def test_origin_of() -> None:
    assert browser.origin_of("http://127.0.0.1:8000/inbox?x=1") == "http://127.0.0.1:8000"
    assert browser.origin_of("https://Carnet.Example/") == "https://carnet.example:443"
    assert browser.origin_of("ws://127.0.0.1:8000/live") == "http://127.0.0.1:8000"
    assert browser.origin_of("http://[::1]:8080/") == "http://[::1]:8080"
    assert browser.origin_of("javascript:alert(1)") == "javascript:"
    guard = browser.Guard({"http://127.0.0.1:8000/"})
    assert guard.allows("http://127.0.0.1:8000/static/app.js")
    assert guard.allows("data:image/gif;base64,R0lGOD")
    assert guard.allows("blob:http://127.0.0.1:8000/0f9a")
    assert not guard.allows("blob:http://evil.example/0f9a")
    assert not guard.allows("http://127.0.0.1:8001/")
    assert not guard.allows("https://127.0.0.1:8000/")
    assert not guard.allows("file:///etc/passwd")


# -- (a), (b): the guard ----------------------------------------------------------------------------------------


@in_browser
async def test_guard_records_a_hostile_page(context: BrowserContext, origin: str) -> None:
    guard, _ = await guarded_page(context, origin, "/hostile")
    assert guard.blocked_requests == ["http://evil.example/x"]
    assert guard.dialogs == ["alert: 1"]
    assert [entry.split(" (")[0] for entry in guard.console] == ["log: HOSTILE"]
    with pytest.raises(AssertionError) as failure:
        guard.assert_clean()
    message = str(failure.value)
    assert "http://evil.example/x" in message
    assert "alert: 1" in message
    assert "HOSTILE" in message


@in_browser
async def test_guard_records_page_errors_popups_and_web_sockets(context: BrowserContext, origin: str) -> None:
    guard, _ = await guarded_page(context, origin, "/misbehaving")
    assert guard.page_errors == ["Error: boom"]
    assert guard.popups == [f"{origin}/clean"]
    assert guard.blocked_requests == ["ws://evil.example/socket"]
    with pytest.raises(AssertionError, match="popups"):
        guard.assert_clean()


@in_browser
async def test_guard_on_a_single_page(context: BrowserContext, origin: str) -> None:
    page = await context.new_page()
    guard = browser.Guard({origin})
    await guard.attach(page)
    await page.goto("/hostile")
    await guard.settle(page)
    assert guard.blocked_requests == ["http://evil.example/x"]
    assert guard.dialogs == ["alert: 1"]


@in_browser
async def test_guard_passes_a_clean_page(context: BrowserContext, origin: str) -> None:
    guard, _ = await guarded_page(context, origin, "/clean")
    guard.assert_clean()
    assert guard.report() == "nothing recorded"


@in_browser
async def test_csp_refusals_are_recorded_apart_and_do_not_fail(context: BrowserContext, origin: str) -> None:
    guard, _ = await guarded_page(context, origin, "/csp-refusal")
    guard.assert_clean()
    assert guard.dialogs == []
    assert len(guard.csp_violations) == 1
    assert "Content Security Policy" in guard.csp_violations[0]


# -- (c): axe-core under a strict CSP ---------------------------------------------------------------------------


@in_browser
async def test_add_script_tag_is_refused_by_the_strict_csp(context: BrowserContext, origin: str) -> None:
    """Why the harness injects axe with ``evaluate``: an inline script tag is refused by ``script-src 'self'``."""
    page = await context.new_page()
    await page.goto("/a11y-good")
    with pytest.raises(Exception, match="Content Security Policy"):
        await page.add_script_tag(content="window.injected = true")
    assert await page.evaluate("typeof window.injected") == "undefined"


@in_browser
async def test_axe_finds_violations_under_a_strict_csp(context: BrowserContext, origin: str) -> None:
    guard, page = await guarded_page(context, origin, "/a11y-bad")
    violations = await browser.axe_violations(page)
    by_id = {violation["id"]: violation for violation in violations}
    assert set(by_id) == {"image-alt", "button-name"}, browser.format_violations(violations)
    assert by_id["image-alt"]["impact"] == "critical"
    assert by_id["image-alt"]["targets"] == ["img"]
    assert by_id["image-alt"]["nodes"][0]["html"] == '<img src="/pixel.gif">'
    assert all(violation["impact"] in {"serious", "critical"} for violation in violations)
    assert any("Content Security Policy" in entry for entry in guard.csp_violations)  # the policy was in force
    text = browser.format_violations(violations)
    assert "[critical] image-alt" in text
    assert "button-name" in text


@in_browser
async def test_axe_passes_an_accessible_page(context: BrowserContext, origin: str) -> None:
    _, page = await guarded_page(context, origin, "/a11y-good")
    violations = await browser.axe_violations(page, impacts=("minor", "moderate", "serious", "critical"))
    assert violations == [], browser.format_violations(violations)
    assert browser.format_violations([]) == "no accessibility violations"


@in_browser
async def test_axe_audits_a_frame_without_scripts(context: BrowserContext, origin: str) -> None:
    """The message body frame runs no script (sandbox attribute and CSP): axe still audits it in place."""
    guard, page = await guarded_page(context, origin, "/a11y-frame")
    violations = await browser.axe_violations(page)
    assert [(v["id"], v["targets"]) for v in violations] == [("image-alt", ["iframe >>> img"])], (
        browser.format_violations(violations)
    )
    assert await browser.axe_violations(page, iframes=False) == []
    assert await browser.axe_violations(page, exclude=["iframe"]) == []
    guard.assert_clean()


# -- (d): events from frames --------------------------------------------------------------------------------------


@in_browser
async def test_sandboxed_frame_runs_no_script(context: BrowserContext, origin: str) -> None:
    guard, _ = await guarded_page(context, origin, "/frames-sandboxed")
    assert guard.dialogs == []
    assert guard.console == []
    assert guard.sandbox_blocks, guard.report()
    assert guard.frames == ["about:blank", f"{origin}/frame-locked"]
    guard.assert_clean()


@in_browser
async def test_frame_csp_stops_the_script_when_the_sandbox_allows_scripts(
    context: BrowserContext, origin: str
) -> None:
    guard, _ = await guarded_page(context, origin, "/frames-scripts-csp")
    assert guard.dialogs == []
    assert guard.csp_violations, guard.report()
    guard.assert_clean()


@in_browser
async def test_guard_sees_dialogs_and_console_of_an_open_frame(context: BrowserContext, origin: str) -> None:
    """The control case: the same script in a frame without sandbox nor CSP runs, and the guard sees it."""
    guard, _ = await guarded_page(context, origin, "/frames-open")
    assert guard.dialogs == ["alert: 1"]
    assert [entry.split(" (")[0] for entry in guard.console] == ["log: HOSTILE"]
    with pytest.raises(AssertionError, match="alert: 1"):
        guard.assert_clean()


# -- the hostile corpus -------------------------------------------------------------------------------------------


def test_hostile_corpus_shape() -> None:
    names = [name for name, _ in hostile.HOSTILE]
    assert len(names) == len(set(names))
    assert "spoofed-badge" in names
    assert set(names) >= hostile.SELF_FIRING
    assert hostile.EVIL_HOST == "evil.example"
    badge = dict(hostile.HOSTILE)["spoofed-badge"]
    assert 'class="badge badge-verified"' in badge
    assert "Signé et vérifié" in badge


def test_hostile_message() -> None:
    html = dict(hostile.HOSTILE)["javascript-link-whitespace"] + "<p>glycémie</p>"
    raw = hostile.hostile_message(
        "javascript-link-whitespace", html, sender="pirate@evil.example", to=["a@carnet.test", "b@carnet.test"]
    )
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"\r\n")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert message["X-Carnet-Hostile"] == "javascript-link-whitespace"
    assert message["To"] == "a@carnet.test, b@carnet.test"
    assert message["Subject"] == "Message piégé : javascript-link-whitespace"
    plain, rich = message.iter_parts()
    assert "MIME-Version" not in plain
    assert "MIME-Version" not in rich
    assert plain.get_content_type() == "text/plain"
    assert plain.get_content().strip() == "see HTML"
    assert rich.get_content_type() == "text/html"
    assert rich.get_content_charset() == "utf-8"
    # The message's line endings are CRLF: a lone CR or LF of the payload comes back as a line break.
    assert rich.get_content().replace("\r\n", "\n").rstrip("\n") == html.replace("\r\n", "\n").replace("\r", "\n")


@in_browser
async def test_self_firing_payloads_are_caught_when_unsanitised(context: BrowserContext, origin: str) -> None:
    """Rendered raw, without CSP, every payload of ``hostile.SELF_FIRING`` gets itself noticed by the guard.

    One fresh page per payload (a page reused for the next payload could still be busy with the last one: a meta
    refresh, say), four at a time, each with its own page guard.
    """
    limit = asyncio.Semaphore(4)

    async def fires(name: str) -> bool:
        async with limit:
            page = await context.new_page()
            try:
                guard = browser.Guard({origin})
                await guard.attach(page)
                await page.goto(f"/raw/{name}", wait_until="load")
                await guard.settle(page, ms=100)
                return bool(guard.failures)
            finally:
                await page.close()

    names = sorted(hostile.SELF_FIRING)
    results = await asyncio.gather(*(fires(name) for name in names))
    silent = [name for name, fired in zip(names, results, strict=True) if not fired]
    assert silent == [], f"payloads the guard did not catch: {silent}"
