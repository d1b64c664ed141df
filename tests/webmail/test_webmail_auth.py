"""Signing in and out over real HTTP: cookies, security headers, CSRF, throttling, app passwords (refused here,
managed here), password change, TOTP enrolment and sign-in, language."""

from __future__ import annotations

import asyncio
import imaplib
import re
import time
from contextlib import suppress

import pyotp
from mta.mtahelp import PASSWORD, Platform
from webhelp import csrf_of, web_client

from carnet.directory import auth
from carnet.webmail.security import PAGE_CSP


def imap_login(platform: Platform, login: str, password: str) -> str:
    client = imaplib.IMAP4("127.0.0.1", platform.ports["imap"], timeout=30)
    try:
        client.host = platform.settings.domain  # the name the server certificate carries
        client.starttls(ssl_context=platform.client_context())
        typ, _ = client.login(login, password)
        return str(typ)
    except imaplib.IMAP4.error:
        return "NO"
    finally:
        with suppress(OSError):
            client.shutdown()


async def test_sign_in_cookies_headers_and_sign_out(platform: Platform) -> None:
    camille = platform.people.camille
    async with web_client(platform) as web:
        page = await web.get("/webmail/login")
        assert page.status_code == 200 and '<html lang="fr">' in page.text
        for name, value in {
            "content-security-policy": PAGE_CSP,
            "x-frame-options": "DENY",
            "referrer-policy": "no-referrer",
            "x-content-type-options": "nosniff",
            "cache-control": "no-store",
        }.items():
            assert page.headers[name] == value, name
        assert "frame-ancestors 'none'" in PAGE_CSP and "'unsafe-inline'" not in PAGE_CSP
        assert "strict-transport-security" not in page.headers  # plain HTTP: no HSTS
        assert "<script" not in page.text
        assert (await web.get("/webmail/")).headers["location"] == "/webmail/login"
        assert (await web.get("/")).headers["location"] == "/webmail/"

        signed_in = await web.login(camille.address)
        cookie = signed_in.headers["set-cookie"]
        assert cookie.startswith("carnet_session=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback
        inbox = await web.inbox_id()
        listing = await web.get(f"/webmail/f/{inbox}")
        assert listing.status_code == 200 and listing.headers["content-security-policy"] == PAGE_CSP
        assert "Camille" in listing.text

        stolen = web.http.cookies.get("carnet_session")
        out = await web.post("/webmail/logout")
        assert out.status_code == 303 and out.headers["location"] == "/webmail/login"
        web.http.cookies.set("carnet_session", stolen or "")
        assert (await web.get(f"/webmail/f/{inbox}")).headers["location"] == "/webmail/login"  # the row is gone


async def test_https_cookies_and_hsts(settings: object) -> None:
    from mta.mtahelp import running_platform

    async with running_platform(settings, http_tls=True) as platform:  # type: ignore[arg-type]
        import ssl

        import httpx

        context = ssl.create_default_context(cafile=str(platform.ca_file))
        base = f"https://127.0.0.1:{platform.ports['http']}"
        async with httpx.AsyncClient(base_url=base, verify=context, follow_redirects=False) as client:
            sni = {"sni_hostname": platform.settings.domain}
            page = await client.get("/webmail/login", extensions=sni)
            assert page.headers["strict-transport-security"].startswith("max-age=31536000")
            assert page.headers["set-cookie"].startswith("__Host-carnet_prelogin=")
            assert "Secure" in page.headers["set-cookie"]
            response = await client.post(
                "/webmail/login",
                extensions=sni,
                data={"login": platform.people.camille.address, "password": PASSWORD, "csrf": csrf_of(page.text)},
            )
            assert response.status_code == 303, response.text[:500]
            cookie = response.headers.get_list("set-cookie")
            session = next(c for c in cookie if c.startswith("__Host-carnet_session="))
            assert "Secure" in session and "HttpOnly" in session


async def test_csrf_is_required(platform: Platform) -> None:
    camille = platform.people.camille
    async with web_client(platform) as web:
        page = await web.get("/webmail/login")
        token = csrf_of(page.text)
        refused = await web.http.post(
            "/webmail/login", data={"login": camille.address, "password": PASSWORD, "csrf": "forged"}
        )
        assert refused.status_code == 403 and "carnet_session" not in refused.headers.get("set-cookie", "")
        cross = await web.http.post(
            "/webmail/login",
            headers={"Origin": "https://evil.example"},
            data={"login": camille.address, "password": PASSWORD, "csrf": token},
        )
        assert cross.status_code == 403
        await web.login(camille.address)
        assert (await web.http.post("/webmail/account/language", data={"language": "en"})).status_code == 403
        assert (
            await web.http.post("/webmail/account/language", data={"language": "en", "csrf": "x"})
        ).status_code == 403
        assert (
            await web.http.post(
                "/webmail/account/language",
                headers={"Sec-Fetch-Site": "cross-site"},
                data={"language": "en", "csrf": web.csrf},
            )
        ).status_code == 403
        assert (await web.get("/webmail/account")).text.count('lang="fr"') >= 1
        # browsers send "Origin: null" under our Referrer-Policy: no-referrer; the token and Fetch metadata decide
        null_origin = await web.http.post("/webmail/account/language", headers={
            "Origin": "null", "Sec-Fetch-Site": "same-origin"}, data={"language": "fr", "csrf": web.csrf})
        assert null_origin.status_code == 303
        assert (await web.post("/webmail/account/language", {"language": "en"})).status_code == 303
        assert '<html lang="en">' in (await web.get("/webmail/account")).text


async def test_wrong_passwords_are_throttled(platform: Platform) -> None:
    camille = platform.people.camille
    async with web_client(platform) as web:
        statuses = []
        for _ in range(12):
            page = await web.get("/webmail/login")
            response = await web.http.post(
                "/webmail/login",
                data={"login": camille.address, "password": "wrong password!", "csrf": csrf_of(page.text)},
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                assert "Trop de tentatives" in response.text
                break
        assert statuses[0] == 401 and statuses[-1] == 429, statuses
        assert (await web.get("/webmail/login")).status_code == 200  # still serving


async def test_app_passwords_are_for_mail_clients(platform: Platform) -> None:
    camille = platform.people.camille
    async with web_client(platform, camille.address) as web:
        created = await web.post("/webmail/account/app-passwords", {"label": "Thunderbird maison"})
        assert created.status_code == 200
        secret = re.search(r'<code class="secret">([^<]+)</code>', created.text).group(1)  # type: ignore[union-attr]
        assert "Thunderbird maison" in created.text
        assert await asyncio.to_thread(imap_login, platform, camille.address, secret) == "OK"
        async with web_client(platform) as other:
            await other.login(camille.address, secret, expect=401)  # not for the webmail
        [info] = await auth.list_app_passwords(platform.db, camille.address)
        revoked = await web.post(f"/webmail/account/app-passwords/{info.id}/revoke")
        assert revoked.status_code == 303
        assert await asyncio.to_thread(imap_login, platform, camille.address, secret) == "NO"
        assert (await web.post(f"/webmail/account/app-passwords/{info.id + 1000}/revoke")).status_code == 404
    anne = platform.people.anne
    await auth.create_app_password(platform.db, anne.address, "mutt")
    [anne_info] = await auth.list_app_passwords(platform.db, anne.address)
    async with web_client(platform, camille.address) as web:  # Camille cannot revoke Anne's
        assert (await web.post(f"/webmail/account/app-passwords/{anne_info.id}/revoke")).status_code == 404
    assert len(await auth.list_app_passwords(platform.db, anne.address)) == 1


async def test_password_change_signs_out_other_sessions(platform: Platform) -> None:
    camille = platform.people.camille
    async with web_client(platform, camille.address) as first, web_client(platform, camille.address) as second:
        mismatch = await first.post(
            "/webmail/account/password",
            {"current_password": PASSWORD, "new_password": "a new long passphrase", "confirm": "another one"},
        )
        assert mismatch.status_code == 400
        wrong = await first.post(
            "/webmail/account/password",
            {"current_password": "not it", "new_password": "a new long passphrase", "confirm": "a new long passphrase"},
        )
        assert wrong.status_code == 400
        changed = await first.post(
            "/webmail/account/password",
            {"current_password": PASSWORD, "new_password": "a new long passphrase", "confirm": "a new long passphrase"},
        )
        assert changed.status_code == 303
        assert (await first.get("/webmail/account")).status_code == 200
        assert (await second.get("/webmail/account")).headers["location"] == "/webmail/login"
    async with web_client(platform) as web:
        await web.login(camille.address, "a new long passphrase")


async def test_totp_enrolment_and_sign_in(platform: Platform) -> None:
    camille = platform.people.camille
    async with web_client(platform, camille.address) as web:
        started = await web.post("/webmail/account/totp/start")
        assert started.status_code == 200 and 'src="/webmail/account/totp/qr.svg"' in started.text
        secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', started.text).group(1)  # type: ignore[union-attr]
        qr = await web.get("/webmail/account/totp/qr.svg")
        assert qr.headers["content-type"].startswith("image/svg+xml") and b"<script" not in qr.content
        assert (await web.post("/webmail/account/totp/confirm", {"code": "000000"})).status_code == 400
        code = pyotp.TOTP(secret).now()
        assert (await web.post("/webmail/account/totp/confirm", {"code": code})).status_code == 303
        assert (await web.get("/webmail/account/totp/qr.svg")).status_code == 404  # never shown once enabled
    async with web_client(platform) as web:
        pending = await web.login(camille.address)
        assert pending.headers["location"] == "/webmail/login/totp"
        assert (await web.get("/webmail/")).headers["location"] == "/webmail/login/totp"  # nothing before the code
        form = await web.get("/webmail/login/totp")
        token = csrf_of(form.text)
        replay = await web.http.post("/webmail/login/totp", data={"code": code, "csrf": token})
        assert replay.status_code == 401  # the enrolment code was used
        fresh = pyotp.TOTP(secret).at(time.time() + 30)  # the next step (±1 step of drift is accepted)
        accepted = await web.http.post("/webmail/login/totp", data={"code": fresh, "csrf": token})
        assert accepted.status_code == 303 and accepted.headers["location"] == "/webmail/"
        assert (await web.get("/webmail/account")).status_code == 200


async def test_totp_guessing_ends_the_pending_sign_in(platform: Platform) -> None:
    camille = platform.people.camille
    async with web_client(platform, camille.address) as web:
        started = await web.post("/webmail/account/totp/start")
        secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', started.text).group(1)  # type: ignore[union-attr]
        assert (await web.post("/webmail/account/totp/confirm", {"code": pyotp.TOTP(secret).now()})).status_code == 303
    async with web_client(platform) as web:
        await web.login(camille.address)
        token = csrf_of((await web.get("/webmail/login/totp")).text)
        good = pyotp.TOTP(secret).at(time.time() + 30)
        wrong = f"{(int(good) + 500_000) % 1_000_000:06d}"
        statuses = [(await web.http.post("/webmail/login/totp", data={"code": wrong, "csrf": token})).status_code
                    for _ in range(5)]
        assert statuses == [401] * 5
        late = await web.http.post("/webmail/login/totp", data={"code": good, "csrf": token})
        assert late.status_code == 303 and late.headers["location"] == "/webmail/login"  # the pending session ended
        assert (await web.get("/webmail/")).headers["location"] == "/webmail/login"
