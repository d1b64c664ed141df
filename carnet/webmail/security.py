"""HTTP security of the webmail: response headers, cookies and CSRF protection.

- Every page: a strict Content Security Policy without inline scripts (CSP Level 3), ``frame-ancestors 'none'``,
  ``Referrer-Policy: no-referrer``, ``X-Content-Type-Options: nosniff``, ``Cross-Origin-Opener-Policy``,
  ``Permissions-Policy``, ``Cache-Control: no-store`` (mail must not linger in shared caches), and HSTS
  (RFC 6797) when the request came over TLS.
- The message body document (shown in a sandboxed iframe) gets its own policy: ``default-src 'none'; img-src cid:
  data:; style-src 'unsafe-inline'`` plus the CSP ``sandbox`` directive, so even opened outside the iframe it
  runs no script, and ``frame-ancestors 'self'`` so only carnet's own page may frame it.
- Cookies: ``HttpOnly``, ``SameSite=Strict``, ``Path=/``; under TLS ``Secure`` and the ``__Host-`` name prefix
  (RFC 6265bis §4.1.3.2), which browsers only accept from a secure origin without a Domain attribute.
- CSRF (OWASP synchroniser token): every form carries the session's token, compared in constant time; before
  sign-in, a double-submit token in its own cookie. Any request whose ``Origin`` (or, lacking it, ``Referer``)
  names another origin is refused whatever the token (Fetch metadata ``Sec-Fetch-Site: cross-site`` as well).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: The policy of the message body document (the issue's policy, plus the sandbox and framing directives).
BODY_CSP = (
    "default-src 'none'; img-src cid: data:; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox"
)
#: The iframe's own sandbox attribute: no allow-scripts, no allow-same-origin (links may open a new tab).
IFRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"

SESSION_COOKIE = "carnet_session"
PRELOGIN_COOKIE = "carnet_prelogin"


def is_tls(request: Request) -> bool:
    return request.url.scheme == "https"


def cookie_name(request: Request, base: str) -> str:
    return f"__Host-{base}" if is_tls(request) else base


def set_cookie(response: Response, request: Request, base: str, value: str, *, max_age: int | None = None) -> None:
    response.set_cookie(
        cookie_name(request, base),
        value,
        max_age=max_age,
        path="/",
        secure=is_tls(request),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request, base: str) -> None:
    response.delete_cookie(
        cookie_name(request, base), path="/", secure=is_tls(request), httponly=True, samesite="strict"
    )


def read_cookie(request: Request, base: str) -> str | None:
    return request.cookies.get(cookie_name(request, base))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (Origin, Referer, Sec-Fetch-Site)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    expected = f"{request.url.scheme}://{request.url.netloc}".lower()
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":  # "null": our own Referrer-Policy: no-referrer hides it
        return origin.lower() == expected
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() == expected
    return True  # neither header: not a browser's cross-site form post (those carry Origin); the token decides


def apply_headers(request: Request, response: Response) -> None:
    """The security headers of every webmail response (the body document keeps the CSP it set itself)."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", PAGE_CSP)
    if "frame-ancestors 'self'" in headers["Content-Security-Policy"]:
        headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    else:
        headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
    if not request.url.path.startswith("/webmail/static/"):
        headers.setdefault("Cache-Control", "no-store")
    if is_tls(request):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def security_middleware(
    prefixes: tuple[str, ...],
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """An HTTP middleware adding :func:`apply_headers` to responses under ``prefixes`` (and ``/``)."""

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        path = request.url.path
        if path == "/" or path.startswith(prefixes):
            apply_headers(request, response)
        return response

    return middleware
