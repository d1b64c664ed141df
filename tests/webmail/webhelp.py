"""An HTTP client for the webmail tests (httpx, real requests to the served platform) and message builders."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from mta.mtahelp import PASSWORD, Platform, submit

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


class WebClient:
    """A browser-like session: cookies kept, redirects not followed (tests look at them)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.base = f"http://127.0.0.1:{platform.ports['http']}"
        self.http = httpx.AsyncClient(base_url=self.base, follow_redirects=False, timeout=30)
        self.csrf = ""

    async def close(self) -> None:
        await self.http.aclose()

    async def login(self, login: str, password: str = PASSWORD, *, expect: int = 303) -> httpx.Response:
        page = await self.http.get("/webmail/login")
        response = await self.http.post(
            "/webmail/login", data={"login": login, "password": password, "csrf": csrf_of(page.text)}
        )
        assert response.status_code == expect, response.text[:2000]
        if expect == 303 and response.headers["location"] == "/webmail/":
            await self.refresh_csrf()
        return response

    async def refresh_csrf(self) -> None:
        page = await self.http.get("/webmail/account")
        assert page.status_code == 200, page.status_code
        self.csrf = csrf_of(page.text)

    async def get(self, url: str, **kwargs: object) -> httpx.Response:
        return await self.http.get(url, **kwargs)  # type: ignore[arg-type]

    async def post(self, url: str, data: dict[str, str] | None = None, **kwargs: object) -> httpx.Response:
        fields = {"csrf": self.csrf, **(data or {})}
        return await self.http.post(url, data=fields, **kwargs)  # type: ignore[arg-type]

    async def inbox_id(self) -> int:
        response = await self.http.get("/webmail/")
        assert response.status_code == 303, response.status_code
        return int(response.headers["location"].rsplit("/", 1)[1])


@asynccontextmanager
async def web_client(platform: Platform, login: str | None = None) -> AsyncIterator[WebClient]:
    client = WebClient(platform)
    try:
        if login is not None:
            await client.login(login)
        yield client
    finally:
        await client.close()


async def send_smtp(platform: Platform, sender_login: str, sender: str, to: str, raw: bytes) -> None:
    await asyncio.to_thread(submit, platform, sender_login, sender, [to], raw)
