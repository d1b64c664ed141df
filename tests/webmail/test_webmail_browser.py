"""The webmail in a real browser: Debian's Chromium driven by Playwright against ``carnet serve``.

- End to end: a professional sends over SMTP, the patient signs in, sees the verified badge, opens the message,
  replies with an attachment; the professional reads the signed reply over IMAP. Every page on the way (and the
  account, history, TOTP enrolment and error pages) is audited with axe-core: no serious or critical violation.
- Hostile mail: every message of ``hostile.HOSTILE`` is opened with a guard on the context: no script runs (no
  dialog, no console output from the message, no page error), no request leaves for another host, and the spoofed
  badge stays inside the iframe while the real signature panel says "unsigned".

Rendering does not depend on the storage backend: these run on SQLite only (the HTTP tests cover both).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from pathlib import Path

import pytest
from browser import Guard, axe_violations, format_violations, launch, new_context
from hostile import HOSTILE, hostile_message
from mta.mtahelp import PASSWORD, Platform, header, imap_fetch_all, openssl_verify
from playwright.async_api import Page, expect
from test_webmail_flow import PDF, pdf_message
from webhelp import send_smtp

pytestmark = pytest.mark.backends("sqlite")


async def audit(page: Page, name: str) -> None:
    violations = await axe_violations(page)
    assert violations == [], f"{name}: {format_violations(violations)}"


def expected_error(guard: Guard, status: str) -> None:
    """The page just answered ``status`` on purpose: Chromium logs it; anything else recorded is a failure."""
    assert all(f"status of {status}" in line for line in guard.console), guard.report()
    guard.console.clear()
    guard.assert_clean()


async def sign_in(page: Page, login: str) -> None:
    await page.goto("/webmail/login")
    await page.get_by_label("Adresse de messagerie ou matricule INS").fill(login)
    await page.get_by_label("Mot de passe").fill(PASSWORD)
    await page.get_by_role("button", name="Se connecter").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Boîte de réception")


async def test_patient_end_to_end_in_chromium(platform: Platform, tmp_path: Path) -> None:
    anne, camille = platform.people.anne, platform.people.camille
    await send_smtp(platform, anne.address, anne.address, camille.address,
                    pdf_message(anne.address, camille.address, "Vos résultats d’analyse",
                                {"Disposition-Notification-To": f"<{anne.address}>"}))
    await platform.wait_inbox(camille, 1)
    base = f"http://127.0.0.1:{platform.ports['http']}"
    async with launch() as browser:
        context = await new_context(browser, base_url=base)
        guard = Guard({base})
        await guard.attach(context)
        page = await context.new_page()

        await page.goto("/webmail/login")
        await audit(page, "sign-in page")
        await page.get_by_label("Adresse de messagerie ou matricule INS").fill(camille.ins or "")
        await page.get_by_label("Mot de passe").fill("not the password")
        await page.get_by_role("button", name="Se connecter").click()
        await expect(page.get_by_role("alert")).to_contain_text("Identifiant ou mot de passe incorrect")
        await audit(page, "sign-in error")
        expected_error(guard, "401")
        await guard.settle(page)
        await sign_in(page, camille.ins or "")
        await audit(page, "inbox")

        row = page.get_by_role("row").filter(has_text="Vos résultats d’analyse")
        await expect(row.locator(".badge-verified")).to_contain_text("Vérifié")
        await row.get_by_role("link").click()
        panel = page.get_by_role("region", name="Signature du message")
        await expect(panel).to_contain_text(re.compile(r"Signé et vérifié : .*Anne Martin — médecin généraliste — "
                                                       r"RPPS \d{11}"))
        body = page.frame_locator("iframe.body")
        await expect(body.get_by_text("Voici vos résultats")).to_be_visible()
        await audit(page, "message page")
        await page.keyboard.press("Tab")  # the skip link comes first and is visible when focused
        await expect(page.get_by_role("link", name="Aller au contenu")).to_be_focused()

        await page.get_by_role("button", name="Envoyer l’accusé de lecture").click()
        await expect(page.get_by_role("status").filter(has_text="accusé de lecture a été envoyé")).to_be_visible()

        await page.get_by_role("link", name="Répondre").click()
        await expect(page.get_by_label("Objet")).to_have_value("Re: Vos résultats d’analyse")
        await audit(page, "reply form")
        await page.get_by_label("Message").fill("Merci docteur, voici mon ordonnance.")
        pdf = tmp_path / "ordonnance.pdf"
        pdf.write_bytes(PDF)
        await page.get_by_label("Pièces jointes", exact=True).set_input_files(str(pdf))
        await page.get_by_role("button", name="Envoyer").click()
        await expect(page.get_by_role("status").filter(has_text="réponse a été signée et envoyée")).to_be_visible()

        for url, name in [("/webmail/account", "account"), ("/webmail/history", "history"),
                          ("/webmail/f/999999", "error page")]:
            await page.goto(url)
            await audit(page, name)
        await guard.settle(page)
        expected_error(guard, "404")
        await page.goto("/webmail/account")
        await page.get_by_role("button", name="Activer la double authentification").click()
        await expect(page.get_by_role("img", name="QR code de la double authentification")).to_be_visible()
        await audit(page, "TOTP enrolment")
        await page.get_by_role("button", name="Se déconnecter").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Se connecter")
        await guard.settle(page)
        guard.assert_clean()

    messages = await asyncio.to_thread(imap_fetch_all, platform, anne.address)
    replies = [m for m in messages if b"voici mon ordonnance" in m.replace(b"=\r\n", b"")]
    assert len(replies) == 1, [header(m, "Subject") for m in messages]
    reply = replies[0]
    parsed = email.message_from_bytes(reply, policy=email.policy.default)
    assert parsed["Subject"] == "Re: Vos résultats d’analyse" and camille.address in str(parsed["From"])
    assert (header(reply, "Carnet-Signature") or "").startswith("valid")
    assert openssl_verify(reply, platform.ca_file, tmp_path).returncode == 0
    assert any(b"MDN-sent-manually; displayed" in m for m in messages)


async def test_hostile_mail_cannot_run_or_leak(platform: Platform) -> None:
    camille = platform.people.camille
    store = platform.store
    await store.ensure_account(camille.id)
    for name, html in HOSTILE:
        raw = hostile_message(name, html, sender="Expediteur <pirate@evil.example>", to=camille.address)
        await store.append(camille.id, "INBOX", raw, signature={"status": "unsigned"})
    base = f"http://127.0.0.1:{platform.ports['http']}"
    async with launch() as browser:
        context = await new_context(browser, base_url=base)
        guard = Guard({base})
        await guard.attach(context)
        page = await context.new_page()
        await sign_in(page, camille.address)
        guard.reset()
        inbox = int(page.url.rsplit("/", 1)[1])
        failures: dict[str, str] = {}
        for uid, (name, _html) in enumerate(HOSTILE, start=1):
            await page.goto(f"/webmail/f/{inbox}/m/{uid}")
            await expect(page.get_by_role("heading", level=1)).to_contain_text(name)
            frame = page.frame_locator("iframe.body")
            await frame.locator("body").wait_for(state="attached")
            await guard.settle(page, ms=300)
            # the real panel, outside the iframe, is the only badge of the page and says "unsigned"
            assert await page.locator(".signature").count() == 1
            await expect(page.locator(".signature")).to_have_class(re.compile("signature-unsigned"))
            assert await page.locator(".badge-verified, .signature-verified").count() == 0
            assert "Dr Faux" not in await page.locator("body").inner_text()
            if guard.failures:
                failures[name] = guard.report()
                guard.reset()
        assert failures == {}, "\n".join(f"{name}: {report}" for name, report in failures.items())
