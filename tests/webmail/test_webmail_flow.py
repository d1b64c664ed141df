"""The webmail over real HTTP against ``carnet serve``: a professional writes over SMTP, the patient signs in, sees
the verified badge, reads, downloads, replies with an attachment; the professional reads the signed reply over
IMAP. Also read receipts, the patients' reply rules, and the Sent copy."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

from mta.mtahelp import Platform, header, imap_fetch_all, openssl_verify, text_message
from webhelp import send_smtp, web_client

from carnet.webmail.security import BODY_CSP

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def pdf_message(sender: str, to: str, subject: str, extra_headers: dict[str, str] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Dr Anne Martin <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content("Bonjour,\nVoici vos résultats : https://example.org/aide\n<script>alert(1)</script>\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="résultats.pdf")
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


async def test_patient_reads_and_replies(platform: Platform, tmp_path: Path) -> None:
    anne, camille = platform.people.anne, platform.people.camille
    await send_smtp(
        platform,
        anne.address,
        anne.address,
        camille.address,
        pdf_message(anne.address, camille.address, "Vos résultats"),
    )
    await platform.wait_inbox(camille, 1)
    async with web_client(platform, camille.ins) as web:  # patients sign in with their INS
        inbox = await web.inbox_id()
        listing = await web.get(f"/webmail/f/{inbox}")
        assert listing.status_code == 200
        assert "Vos résultats" in listing.text and "badge-verified" in listing.text
        assert re.search(r"Signé et vérifié : [^<]*Anne Martin — médecin généraliste — RPPS \d{11}", listing.text)
        assert 'class="unread"' in listing.text
        uid = int(re.search(rf"/webmail/f/{inbox}/m/(\d+)", listing.text).group(1))  # type: ignore[union-attr]

        page = await web.get(f"/webmail/f/{inbox}/m/{uid}")
        assert page.status_code == 200
        assert 'class="signature signature-verified"' in page.text
        assert (
            f'sandbox="allow-popups allow-popups-to-escape-sandbox" src="/webmail/f/{inbox}/m/{uid}/body"' in page.text
        )
        assert "allow-scripts" not in page.text and "allow-same-origin" not in page.text
        body = await web.get(f"/webmail/f/{inbox}/m/{uid}/body")
        assert body.headers["content-security-policy"] == BODY_CSP
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body.text and "<script>" not in body.text
        assert 'href="https://example.org/aide"' in body.text and 'rel="noopener noreferrer"' in body.text
        listing = await web.get(f"/webmail/f/{inbox}")
        assert 'class="unread"' not in listing.text  # reading marked it \Seen

        part = re.search(rf'href="(/webmail/f/{inbox}/m/{uid}/part/[\d.]+)"', page.text)
        assert part, page.text
        download = await web.get(part.group(1))
        assert download.status_code == 200 and download.content == PDF
        assert download.headers["content-type"] == "application/pdf"
        assert download.headers["content-disposition"].startswith("attachment;")
        assert "filename*=UTF-8''r%C3%A9sultats.pdf" in download.headers["content-disposition"]
        assert download.headers["x-content-type-options"] == "nosniff"

        form = await web.get(f"/webmail/f/{inbox}/m/{uid}/reply")
        assert form.status_code == 200 and "Re: Vos résultats" in form.text
        sent = await web.http.post(
            f"/webmail/f/{inbox}/m/{uid}/reply",
            data={
                "csrf": web.csrf,
                "subject": "Re: Vos résultats",
                "body": "Merci docteur, bien reçu.",
                "to": "someone-else@carnet.test",
            },  # ignored: a reply goes to the author
            files=[("files", ("ordonnance.pdf", PDF, "application/pdf"))],
        )
        assert sent.status_code == 303, sent.text[:3000]
        assert sent.headers["location"].endswith("notice=reply_sent")
        listing = await web.get(f"/webmail/f/{inbox}")
        assert "répondu" in listing.text  # \Answered

    replies = await asyncio.to_thread(imap_fetch_all, platform, anne.address)
    assert len(replies) == 1
    reply = replies[0]
    parsed = email.message_from_bytes(reply, policy=email.policy.default)
    assert camille.address in parsed["From"] and parsed["Subject"] == "Re: Vos résultats"
    assert parsed["In-Reply-To"] and parsed["X-MSS-NIL"] == "3"
    assert (header(reply, "Carnet-Signature") or "").startswith("valid")
    assert openssl_verify(reply, platform.ca_file, tmp_path).returncode == 0  # signed by the gateway for Camille
    assert b"ordonnance.pdf" in reply

    store = platform.store
    sent_folder = await store.get_folder(camille.id, "Sent")
    [copy] = await store.page(sent_folder.id)
    assert copy.subject == "Re: Vos résultats" and "\\Seen" in copy.flags


async def test_patient_reply_rules(platform: Platform) -> None:
    anne, bob, camille = platform.people.anne, platform.people.bob, platform.people.camille
    await send_smtp(
        platform,
        anne.address,
        anne.address,
        camille.address,
        text_message(anne.address, camille.address, "Fin de suivi", extra="X-MSS-MES: FIN\r\n"),
    )
    await platform.wait_inbox(camille, 1)
    async with web_client(platform, camille.address) as web:
        inbox = await web.inbox_id()
        page = await web.get(f"/webmail/f/{inbox}/m/1")
        assert "l’expéditeur a clos cet échange" in page.text
        assert f"/webmail/f/{inbox}/m/1/reply" not in page.text
        assert (await web.get(f"/webmail/f/{inbox}/m/1/reply")).status_code == 403
        refused = await web.http.post(
            f"/webmail/f/{inbox}/m/1/reply",
            data={"csrf": web.csrf, "body": "Pourquoi ?"},
            files=[("files", ("", b"", "application/octet-stream"))],
        )
        assert refused.status_code == 403
        assert await asyncio.to_thread(imap_fetch_all, platform, anne.address) == []
        # a patient never starts a thread
        assert (await web.get("/webmail/compose")).status_code == 403
        # a new message from Bob reopens nothing for Anne, but Bob is now a correspondent
        await send_smtp(
            platform,
            bob.address,
            bob.address,
            camille.address,
            text_message(bob.address, camille.address, "Rendez-vous"),
        )
        await platform.wait_inbox(camille, 2)
        page = await web.get(f"/webmail/f/{inbox}/m/2")
        assert f"/webmail/f/{inbox}/m/2/reply" in page.text


async def test_read_receipt_needs_consent(platform: Platform) -> None:
    anne, camille = platform.people.anne, platform.people.camille
    await send_smtp(
        platform,
        anne.address,
        anne.address,
        camille.address,
        text_message(
            anne.address,
            camille.address,
            "Merci de confirmer",
            extra=f"Disposition-Notification-To: <{anne.address}>\r\n",
        ),
    )
    await platform.wait_inbox(camille, 1)
    before = len(await asyncio.to_thread(imap_fetch_all, platform, anne.address))  # the automatic "processed" MDN
    async with web_client(platform, camille.address) as web:
        inbox = await web.inbox_id()
        page = await web.get(f"/webmail/f/{inbox}/m/1")
        assert "accusé de lecture" in page.text
        await asyncio.sleep(0.5)
        assert len(await asyncio.to_thread(imap_fetch_all, platform, anne.address)) == before  # nothing without consent
        sent = await web.post(f"/webmail/f/{inbox}/m/1/receipt")
        assert sent.status_code == 303
        again = await web.post(f"/webmail/f/{inbox}/m/1/receipt")
        assert again.status_code == 409  # $MDNSent: once
        page = await web.get(f"/webmail/f/{inbox}/m/1")
        assert "Envoyer l’accusé de lecture" not in page.text
    messages = await asyncio.to_thread(imap_fetch_all, platform, anne.address)
    mdns = [m for m in messages if b"manual-action/MDN-sent-manually; displayed" in m]
    assert len(mdns) == 1
    assert (header(mdns[0], "Carnet-Signature") or "").startswith("valid")
