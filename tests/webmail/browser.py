"""Real-browser harness for the webmail tests: Debian's Chromium driven by Playwright, a network guard, axe-core.

- :func:`launch` starts ``/usr/bin/chromium`` headless with the project's flags (no ``playwright install``: the
  browser is Debian's). A missing Chromium raises :class:`ChromiumMissing`, so a test fails, never skips.
- :func:`new_context` opens a browser context with the webmail's defaults (French locale, Paris time, service
  workers blocked so that every request goes through the routes).
- :class:`Guard` watches a context (or one page): every request to an origin outside the allowed set is aborted and
  recorded, as is every dialog (dismissed), console message, uncaught page error, popup and download.
  :meth:`Guard.assert_clean` fails with all of it. Content Security Policy reports and sandbox refusals are console
  errors in Chromium but are the *desired* outcome when a hostile message tries something, so they are kept apart
  (:attr:`Guard.csp_violations`, :attr:`Guard.sandbox_blocks`) and do not fail :meth:`Guard.assert_clean`.
- :func:`axe_violations` runs axe-core (fetched by ``deps/fetch-axe-core``) on a page and returns its violations.

How axe gets into a page under a strict CSP (``script-src 'self'``, no inline script): ``page.add_script_tag(
content=...)`` inserts an inline ``<script>`` and Chromium refuses it ("Executing inline script violates the
following Content Security Policy directive"). ``Frame.evaluate(source)`` works: it runs through the DevTools
protocol (``Runtime.evaluate``), which the page's CSP does not govern (checked by ``test_browser_harness.py``, which
audits a page served with ``default-src 'none'; script-src 'self'``). So the page keeps its real policy while it
is audited; ``bypass_csp=True`` on the context would work too but would audit a page that
is not the one users get. Frames whose scripts are disabled (``<iframe sandbox>`` without ``allow-scripts``, or
a CSP ``sandbox`` directive, as for the message body) still accept ``evaluate`` and run promises, but never fire
timers, on which axe depends: there, before the audit, the timer functions are replaced by microtask-based ones
(``setTimeout(f)`` runs ``f`` at the next microtask). Frames are audited one by one with ``axe.runPartial`` and
the results merged with ``axe.finishRun`` (the approach of ``@axe-core/playwright``), as axe's own cross-frame
messaging (``postMessage``) gets no answer from a frame without scripts. In such a frame axe's asset preloading
(CSSOM, used by a few rules such as ``css-orientation-lock``) is turned off: its timeout would fire at once.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Download,
    Frame,
    Page,
    Request,
    Route,
    WebSocketRoute,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

REPO_ROOT = Path(__file__).resolve().parents[2]
FETCH_AXE = REPO_ROOT / "deps" / "fetch-axe-core"

#: Console texts of Chromium's Content Security Policy reports (older releases say "Refused to …", as do other
#: refusals filed with them: a meta refresh to ``javascript:``, a frame forbidden by ``X-Frame-Options``).
CSP_MARKERS = ("Content Security Policy", "Refused to ")
#: Console texts of Chromium's sandbox refusals ("Blocked script execution in '…' because the document's frame is
#: sandboxed and the 'allow-scripts' permission is not set.", likewise for forms, modals, popups).
SANDBOX_MARKERS = ("frame is sandboxed", "document is sandboxed")
#: Console text of Chromium for each request the guard aborts: already in :attr:`Guard.blocked_requests`.
GUARD_ECHO = "net::ERR_BLOCKED_BY_CLIENT"

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_WEB_SCHEME = {"ws": "http", "wss": "https"}


class ChromiumMissing(RuntimeError):
    """Debian's Chromium is not installed where the harness expects it."""


def require_chromium() -> None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise ChromiumMissing(
            f"Debian's Chromium is not at {CHROMIUM}: the webmail browser tests need it "
            "(install it with `apt-get install chromium`; do not run `playwright install`)"
        )


@asynccontextmanager
async def launch() -> AsyncIterator[Browser]:
    """``async with launch() as browser``: Debian's Chromium, headless, with the project's flags."""
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def new_context(
    browser: Browser,
    *,
    base_url: str,
    locale: str = "fr-FR",
    timezone_id: str = "Europe/Paris",
    ignore_https_errors: bool = False,
    bypass_csp: bool = False,
    **options: Any,
) -> BrowserContext:
    """A context with the webmail's defaults; ``options`` go to :meth:`Browser.new_context` unchanged.

    Service workers are blocked (a worker's requests would not all go through the context's routes), and
    downloads are refused unless ``accept_downloads=True`` is passed.
    """
    options.setdefault("service_workers", "block")
    options.setdefault("accept_downloads", False)
    return await browser.new_context(
        base_url=base_url,
        locale=locale,
        timezone_id=timezone_id,
        ignore_https_errors=ignore_https_errors,
        bypass_csp=bypass_csp,
        **options,
    )


def origin_of(url: str) -> str:
    """``scheme://host:port`` with the default port spelled out (``ws``/``wss`` count as ``http``/``https``)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return f"{scheme}:"
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{_WEB_SCHEME.get(scheme, scheme)}://{host}:{parts.port or _DEFAULT_PORTS[scheme]}"


class Guard:
    """Network and behaviour guard for a browser context (or a single page).

    ``await guard.attach(context)`` before opening pages. Every request whose origin is not one of
    ``allowed_origins`` (``scheme://host[:port]``, any path ignored) is aborted and its URL recorded, whatever its
    scheme (Playwright does not route ``data:`` URLs, which stay in the page and are allowed; ``blob:`` URLs are
    judged by the origin they embed); WebSocket connections likewise. Dialogs are recorded (``"alert: 1"``) and
    dismissed; console messages (``"log: HOSTILE (url:line)"``), uncaught errors (``"Error: boom"``), popups and
    downloads (their URL) are recorded too, and child frames (their URL when attached, then on each navigation:
    information only).

    Console messages are sorted: CSP reports go to :attr:`csp_violations`, sandbox refusals to
    :attr:`sandbox_blocks`, Chromium's own ``verbose`` advice to :attr:`hints` (none of which fail
    :meth:`assert_clean`); the "net::ERR_BLOCKED_BY_CLIENT" error Chromium logs for each request the guard aborts
    is dropped (the request is in :attr:`blocked_requests`); everything else is in :attr:`console` and fails.

    Playwright tries routes last-registered first: attach the guard after any route of the test's own, so that it
    sees every request first. Events arrive asynchronously: call :meth:`settle` before reading the lists.
    """

    def __init__(self, allowed_origins: Iterable[str]) -> None:
        self.allowed_origins = frozenset(origin_of(origin) for origin in allowed_origins)
        self.blocked_requests: list[str] = []
        self.dialogs: list[str] = []
        self.console: list[str] = []
        self.csp_violations: list[str] = []
        self.sandbox_blocks: list[str] = []
        self.hints: list[str] = []
        self.page_errors: list[str] = []
        self.popups: list[str] = []
        self.downloads: list[str] = []
        self.frames: list[str] = []
        self.pages: list[Page] = []
        self._page_mode = False

    # -- wiring ------------------------------------------------------------------------------------------------

    async def attach(self, target: BrowserContext | Page) -> None:
        """Guard a whole context (its current and future pages, popups included) or a single page."""
        if isinstance(target, Page):
            self._page_mode = True
            await target.route("**/*", self._on_route)
            await target.route_web_socket(lambda _url: True, self._on_web_socket)
            self._watch(target)
            return
        await target.route("**/*", self._on_route)
        await target.route_web_socket(lambda _url: True, self._on_web_socket)
        target.on("page", self._watch)
        for page in target.pages:
            self._watch(page)

    def allows(self, url: str) -> bool:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "data":
            return True
        if scheme == "blob":
            return origin_of(url[len("blob:") :]) in self.allowed_origins
        return origin_of(url) in self.allowed_origins

    def _watch(self, page: Page) -> None:
        if page in self.pages:
            return
        self.pages.append(page)
        page.on("console", self._on_console)
        page.on("dialog", self._on_dialog)
        page.on("pageerror", self._on_page_error)
        page.on("popup", self._on_popup)
        page.on("download", self._on_download)
        page.on("frameattached", self._on_frame_attached)
        page.on("framenavigated", self._on_frame_navigated)

    # -- handlers ----------------------------------------------------------------------------------------------

    async def _on_route(self, route: Route, request: Request) -> None:
        if self.allows(request.url):
            await route.fallback()
            return
        self.blocked_requests.append(request.url)
        with suppress(PlaywrightError):
            await route.abort("blockedbyclient")

    async def _on_web_socket(self, ws: WebSocketRoute) -> None:
        if self.allows(ws.url):
            ws.connect_to_server()
            return
        self.blocked_requests.append(ws.url)
        with suppress(PlaywrightError):
            await ws.close(code=1008, reason="blocked by the test guard")

    def _on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        location = message.location or {}
        where = location.get("url") or ""
        if where and location.get("lineNumber") is not None:
            where = f"{where}:{location['lineNumber'] + 1}"
        if GUARD_ECHO in text:
            return
        entry = f"{message.type}: {text}" + (f" ({where})" if where else "")
        if message.type == "verbose":  # Chromium's own advice ("[DOM] Input elements should have autocomplete…")
            self.hints.append(entry)
        elif any(marker in text for marker in CSP_MARKERS):
            self.csp_violations.append(entry)
        elif any(marker in text for marker in SANDBOX_MARKERS):
            self.sandbox_blocks.append(entry)
        else:
            self.console.append(entry)

    async def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        with suppress(PlaywrightError):
            await dialog.dismiss()

    def _on_page_error(self, error: PlaywrightError) -> None:
        name = getattr(error, "name", None) or "Error"
        self.page_errors.append(f"{name}: {error.message}")

    def _on_popup(self, popup: Page) -> None:
        self.popups.append(popup.url)
        self._watch(popup)
        if self._page_mode:  # a context guard routes popups already; a page guard only its own page
            asyncio.get_running_loop().create_task(self._route_popup(popup))

    async def _route_popup(self, popup: Page) -> None:
        with suppress(PlaywrightError):
            await popup.route("**/*", self._on_route)

    async def _on_download(self, download: Download) -> None:
        self.downloads.append(download.url)
        with suppress(PlaywrightError):
            await download.cancel()

    def _on_frame_attached(self, frame: Frame) -> None:
        self.frames.append(frame.url or "about:blank")

    def _on_frame_navigated(self, frame: Frame) -> None:
        if frame.parent_frame is not None:
            self.frames.append(frame.url)

    # -- results -----------------------------------------------------------------------------------------------

    async def settle(self, page: Page, *, ms: int = 250) -> None:
        """Let the page finish loading and its pending events reach the guard."""
        try:
            await page.wait_for_load_state("load")
            await page.wait_for_timeout(ms)
            await page.evaluate("0")  # one round trip: the events sent before it have been dispatched
        except PlaywrightError:
            pass  # the page was closed or navigated away: nothing more will come from it

    def reset(self) -> None:
        """Forget everything recorded so far (the guard stays attached), e.g. between two documents on a page."""
        for entries in (
            self.blocked_requests,
            self.dialogs,
            self.console,
            self.csp_violations,
            self.sandbox_blocks,
            self.hints,
            self.page_errors,
            self.popups,
            self.downloads,
            self.frames,
        ):
            entries.clear()

    @property
    def failures(self) -> dict[str, list[str]]:
        """What makes :meth:`assert_clean` fail, by kind (empty kinds left out)."""
        kinds = {
            "blocked requests": self.blocked_requests,
            "dialogs": self.dialogs,
            "console messages": self.console,
            "page errors": self.page_errors,
            "popups": self.popups,
            "downloads": self.downloads,
        }
        return {kind: list(entries) for kind, entries in kinds.items() if entries}

    def report(self) -> str:
        lines: list[str] = []
        for kind, entries in self.failures.items():
            lines.append(f"{kind}:")
            lines.extend(f"  - {entry}" for entry in entries)
        for kind, entries in (
            ("CSP violations (not failures)", self.csp_violations),
            ("sandbox refusals (not failures)", self.sandbox_blocks),
            ("browser hints (not failures)", self.hints),
        ):
            if entries:
                lines.append(f"{kind}:")
                lines.extend(f"  - {entry}" for entry in entries)
        return "\n".join(lines) if lines else "nothing recorded"

    def assert_clean(self) -> None:
        if self.failures:
            raise AssertionError("the browser guard recorded:\n" + self.report())


# -- axe-core ------------------------------------------------------------------------------------------------------


@functools.cache
def axe_source() -> str:
    """axe.min.js, fetched (once, then cached under ``.cache/``) by ``deps/fetch-axe-core``."""
    result = subprocess.run(
        [sys.executable, str(FETCH_AXE)], capture_output=True, text=True, timeout=180, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{FETCH_AXE} failed ({result.returncode}): {result.stderr.strip()}")
    return Path(result.stdout.strip()).read_text(encoding="utf-8")


_TIMER_PROBE_START = """() => {
  window.__carnetTimerProbe = false;
  setTimeout(() => { window.__carnetTimerProbe = true; }, 0);
}"""
_TIMER_PROBE_READ = "() => window.__carnetTimerProbe === true"
_MICROTASK_TIMERS = """() => {
  const soon = (fn, ...args) => {
    Promise.resolve().then(() => { if (typeof fn === 'function') fn(...args); });
    return 0;
  };
  window.setTimeout = soon;
  window.setInterval = () => 0;
  window.clearTimeout = window.clearInterval = window.cancelAnimationFrame = window.cancelIdleCallback = () => {};
  window.requestAnimationFrame = (fn) => soon(fn, performance.now());
  window.requestIdleCallback = (fn) => soon(fn, { didTimeout: false, timeRemaining: () => 50 });
  window.__carnetMicrotaskTimers = true;
}"""


async def _timers_work(frame: Frame, *, wait_ms: int = 250) -> bool:
    await frame.evaluate(_TIMER_PROBE_START)
    for _ in range(max(1, wait_ms // 25)):
        await asyncio.sleep(0.025)
        if await frame.evaluate(_TIMER_PROBE_READ):
            return True
    return False


async def _inject_axe(frame: Frame) -> bool:
    """Load axe into ``frame`` (once); True when the frame runs no timers and got the microtask ones."""
    state = await frame.evaluate(
        "() => [typeof window.axe === 'object' && typeof window.axe.runPartial === 'function',"
        " window.__carnetMicrotaskTimers === true]"
    )
    if state[0]:
        return state[1]
    microtask_timers = not await _timers_work(frame)
    if microtask_timers:
        await frame.evaluate(_MICROTASK_TIMERS)
    # A statement list, not a function: Playwright evaluates it as an expression through Runtime.evaluate.
    loaded = await frame.evaluate(axe_source() + "\n;typeof window.axe")
    if loaded != "object":
        raise RuntimeError(f"axe-core did not load in frame {frame.url!r} (typeof axe: {loaded!r})")
    return microtask_timers


async def _run_partial(frame: Frame, context: Any, options: Mapping[str, Any], iframes: bool) -> list[Any]:
    """axe.runPartial in ``frame`` then in its child frames, depth first, as ``axe.finishRun`` expects them."""
    if await _inject_axe(frame):
        # axe's asset preloading (the CSSOM) races a timeout, which microtask timers would end at once.
        options = {**options, "preload": False}
    frame_contexts = (
        await frame.evaluate("(c) => axe.utils.getFrameContexts(c ?? document)", context) if iframes else []
    )
    partials: list[Any] = [
        await frame.evaluate("([c, o]) => axe.runPartial(c ?? document, o)", [context, dict(options)])
    ]
    for frame_context in frame_contexts:
        child: Frame | None = None
        try:
            handle = await frame.evaluate_handle("(s) => axe.utils.shadowSelect(s)", frame_context["frameSelector"])
            element = handle.as_element()
            child = await element.content_frame() if element is not None else None
        except PlaywrightError:
            child = None
        if child is None:
            partials.append(None)
            continue
        try:
            partials.extend(await _run_partial(child, frame_context["frameContext"], options, iframes))
        except PlaywrightError:
            partials.append(None)  # axe reports the frame as not analysed
    return partials


def _target(target: Sequence[Any]) -> str:
    """axe's node target (one selector per frame level, a list for shadow DOM) as one string."""
    levels = [" >> ".join(level) if isinstance(level, list) else str(level) for level in target]
    return " >>> ".join(levels)


async def axe_violations(
    page: Page,
    *,
    impacts: Iterable[str] = ("serious", "critical"),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    iframes: bool = True,
    options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """axe-core's violations on ``page`` (its frames included unless ``iframes=False``) of the given impacts.

    ``include``/``exclude`` are CSS selectors limiting the audit; ``options`` are axe run options (``runOnly``,
    ``rules``…). Each violation: ``{"id", "impact", "help", "help_url", "targets": [...], "nodes": [{"target",
    "html", "summary"}]}``; a target inside a frame reads ``"iframe >>> img"``.
    """
    wanted = set(impacts)
    run_options: dict[str, Any] = {**(options or {}), "resultTypes": ["violations"], "iframes": iframes}
    context: dict[str, Any] | None = None
    if include or exclude:
        context = {"exclude": [[selector] for selector in exclude]}
        if include:
            context["include"] = [[selector] for selector in include]
    partials = await _run_partial(page.main_frame, context, run_options, iframes)
    results = await page.main_frame.evaluate("([p, o]) => axe.finishRun(p, o)", [partials, run_options])
    violations = []
    for violation in results["violations"]:
        if violation.get("impact") not in wanted:
            continue
        nodes = [
            {"target": _target(node["target"]), "html": node.get("html", ""), "summary": node.get("failureSummary")}
            for node in violation["nodes"]
        ]
        violations.append(
            {
                "id": violation["id"],
                "impact": violation["impact"],
                "help": violation["help"],
                "help_url": violation.get("helpUrl", ""),
                "targets": [node["target"] for node in nodes],
                "nodes": nodes,
            }
        )
    return violations


def format_violations(violations: Sequence[Mapping[str, Any]]) -> str:
    """Readable lines for an assertion message."""
    if not violations:
        return "no accessibility violations"
    lines = [f"{len(violations)} accessibility violation(s):"]
    for violation in violations:
        lines.append(f"- [{violation['impact']}] {violation['id']}: {violation['help']} ({violation['help_url']})")
        for node in violation.get("nodes", ()):
            html = " ".join(node["html"].split())
            if len(html) > 160:
                html = html[:157] + "..."
            lines.append(f"    {node['target']}  {html}")
    return "\n".join(lines)
