"""Representatives switch to the space of the person they represent (and every action is recorded as theirs);
the message list pages by keyset and searches through the store; embedded messages open as their own message;
French by default, English on request; every text key exists in both languages."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

from mta.mtahelp import Platform, text_message
from test_webmail_authz import other_patient
from webhelp import send_smtp, web_client

from carnet.directory import mailboxes
from carnet.webmail import i18n


async def test_representative_acts_in_the_patients_space(platform: Platform) -> None:
    anne, camille = platform.people.anne, platform.people.camille
    parent_address = await other_patient(platform)
    parent = await mailboxes.require_mailbox(platform.db, parent_address)
    await mailboxes.add_representative(platform.db, platform.settings, camille.ins or "", parent.ins or "", "parent")
    await send_smtp(platform, anne.address, anne.address, camille.address,
                    text_message(anne.address, camille.address, "Vaccins de Camille"))
    await platform.wait_inbox(camille, 1)
    async with web_client(platform, parent_address) as web:
        own = await web.get(f"/webmail/f/{await web.inbox_id()}")
        assert "Vaccins de Camille" not in own.text and 'id="space-select"' in own.text
        switched = await web.post("/webmail/space", {"mailbox": str(camille.id)})
        assert switched.status_code == 303
        inbox = await web.inbox_id()
        listing = await web.get(f"/webmail/f/{inbox}")
        assert "Vaccins de Camille" in listing.text and "pour le compte de" in listing.text
        assert (await web.get(f"/webmail/f/{inbox}/m/1")).status_code == 200
        sent = await web.http.post(f"/webmail/f/{inbox}/m/1/reply", data={"csrf": web.csrf, "body": "Merci."},
                                   files=[("files", ("", b"", "application/octet-stream"))])
        assert sent.status_code == 303, sent.text[:2000]
        history = await web.get("/webmail/history")
        assert history.status_code == 200
        by_representative = (r"<tr><td>[^<]*</td><td>([^<]*)<span class=\"small\">\(représentant·e\)</span></td>"
                             r"<td>([^<]*)")
        rows = re.findall(by_representative, history.text)
        actions = {action for _who, action in rows}
        assert {"entrée dans l’espace", "lecture d’un message", "réponse envoyée"} <= actions, history.text
        assert all(parent.display_name in who for who, _action in rows)
        # the security settings stay the representative's own
        account = await web.get("/webmail/account")
        assert "Ces réglages sont ceux de votre propre compte" in account.text
    reply = (await platform.wait_inbox(anne, 1))[0]
    assert camille.address.encode() in reply.split(b"\r\n\r\n", 1)[0]  # sent from Camille's address, signed for her
    async with web_client(platform, camille.address) as web:  # Camille sees who acted in her space
        history = await web.get("/webmail/history")
        assert parent.display_name in history.text and "représentant·e" in history.text


async def test_keyset_pages_and_search(platform: Platform) -> None:
    camille = platform.people.camille
    store = platform.store
    await store.ensure_account(camille.id)
    for n in range(1, 121):
        subject = f"Résultat {n:03d}" + (" urgent" if n % 40 == 0 else "")
        raw = text_message("labo@example.org", camille.address, subject, body=f"Analyse numéro {n}\r\n")
        await store.append(camille.id, "INBOX", raw, signature={"status": "unsigned"})
    async with web_client(platform, camille.address) as web:
        inbox = await web.inbox_id()
        first = await web.get(f"/webmail/f/{inbox}")
        subjects = re.findall(r"Résultat (\d{3})", first.text)
        assert subjects[:2] == ["120", "119"] and len(subjects) == 50
        older = re.search(r'href="(/webmail/f/\d+\?before=(\d+))" rel="next"', first.text)
        assert older and older.group(2) == "71"
        second = await web.get(older.group(1))
        assert re.findall(r"Résultat (\d{3})", second.text)[0] == "070"
        third = await web.get(f"/webmail/f/{inbox}?before=21")
        assert len(re.findall(r"Résultat (\d{3})", third.text)) == 20 and 'rel="next"' not in third.text
        found = await web.get(f"/webmail/f/{inbox}", params={"q": "urgent", "scope": "subject"})
        assert re.findall(r"Résultat (\d{3})", found.text) == ["120", "080", "040"]
        assert "3 message(s) trouvé(s)" in found.text
        body = await web.get(f"/webmail/f/{inbox}", params={"q": "numéro 7", "scope": "body"})
        assert sorted(re.findall(r"Résultat (\d{3})", body.text)) == ["007", *(f"{n:03d}" for n in range(70, 80))]
        sender = await web.get(f"/webmail/f/{inbox}", params={"q": "labo@example", "scope": "from"})
        assert "120 message(s) trouvé(s)" in sender.text and 'rel="next"' in sender.text
        none = await web.get(f"/webmail/f/{inbox}", params={"q": "introuvable"})
        assert "Aucun message ne correspond" in none.text
        unsigned = await web.get(f"/webmail/f/{inbox}")
        assert "badge-unsigned" in unsigned.text and "Non signé" in unsigned.text


async def test_embedded_message_opens_as_its_own(platform: Platform, tmp_path: Path) -> None:
    camille = platform.people.camille
    inner = EmailMessage()
    inner["From"] = "Centre de radiologie <radio@example.org>"
    inner["To"] = "anne.martin@carnet.test"
    inner["Subject"] = "Compte rendu IRM"
    inner.set_content("IRM normale.")
    inner.add_attachment(b"%PDF-1.4\n%%EOF\n", maintype="application", subtype="pdf", filename="irm.pdf")
    outer = EmailMessage()
    outer["From"] = "Dr Anne Martin <anne.martin@carnet.test>"
    outer["To"] = camille.address
    outer["Subject"] = "TR: Compte rendu IRM"
    outer.set_content("Je vous transmets le compte rendu.")
    outer.add_attachment(inner)
    await platform.store.ensure_account(camille.id)
    await platform.store.append(camille.id, "INBOX", outer.as_bytes(), signature=None)
    async with web_client(platform, camille.address) as web:
        inbox = await web.inbox_id()
        page = await web.get(f"/webmail/f/{inbox}/m/1")
        link = re.search(r'href="(/webmail/f/\d+/m/1\?within=[\d.]+)"', page.text)
        assert link, page.text
        embedded = await web.get(link.group(1))
        assert embedded.status_code == 200 and "Compte rendu IRM" in embedded.text
        assert "sa signature n’est pas vérifiée" in embedded.text
        assert "Répondre</a>" not in embedded.text
        part = re.search(r'href="(/webmail/f/\d+/m/1/part/[\d.]+\?within=[\d.]+)"', embedded.text)
        assert part, embedded.text
        download = await web.get(part.group(1))
        assert download.content == b"%PDF-1.4\n%%EOF\n" and "irm.pdf" in download.headers["content-disposition"]
        body_url = re.search(r'src="(/webmail/f/\d+/m/1/body\?within=[\d.]+)"', embedded.text)
        assert body_url and "IRM normale." in (await web.get(body_url.group(1))).text


async def test_language_negotiation_and_choice(platform: Platform) -> None:
    async with web_client(platform) as web:
        english = await web.get("/webmail/login", headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"})
        assert '<html lang="en">' in english.text and "Sign in" in english.text
        french = await web.get("/webmail/login", headers={"Accept-Language": "de-DE, fr;q=0.4"})
        assert '<html lang="fr">' in french.text and "Se connecter" in french.text


def test_both_languages_have_every_key() -> None:
    french, english = i18n.MESSAGES["fr"], i18n.MESSAGES["en"]
    assert french.keys() == english.keys()
    placeholders = re.compile(r"\{(\w+)\}")
    for key in french:
        assert set(placeholders.findall(french[key])) == set(placeholders.findall(english[key])), key
    templates = Path(i18n.__file__).parent / "templates"
    used = set()
    for path in templates.glob("*.html"):
        used |= set(re.findall(r"""t\((?:lang|code), ["']([a-z_]*[a-z])["']""", path.read_text()))
    assert used - french.keys() == set()
    prefixed = {k for k in french if k.startswith(("action_", "notice_", "scope_", "error_", "reply_", "compose_"))}
    assert prefixed, "dynamic keys exist"
    for notice in i18n.NOTICES:
        assert f"notice_{notice}" in french


async def test_unread_trash_and_delete(platform: Platform) -> None:
    camille = platform.people.camille
    store = platform.store
    await store.ensure_account(camille.id)
    for n in (1, 2):
        await store.append(camille.id, "INBOX", text_message("labo@example.org", camille.address, f"Analyse {n}"))
    async with web_client(platform, camille.address) as web:
        inbox = await web.inbox_id()
        assert (await web.get(f"/webmail/f/{inbox}/m/1")).status_code == 200
        assert "\\Seen" in (await store.summaries(inbox, [1]))[0].flags
        unread = await web.post(f"/webmail/f/{inbox}/m/1/unread")
        assert unread.status_code == 303
        assert "\\Seen" not in (await store.summaries(inbox, [1]))[0].flags
        trashed = await web.post(f"/webmail/f/{inbox}/m/1/delete")
        assert trashed.headers["location"].endswith("notice=trashed")
        assert "a été mis à la corbeille" in (await web.get(trashed.headers["location"])).text
        trash = await store.get_folder(camille.id, "Trash")
        assert trash.messages == 1 and [s.uid for s in await store.page(inbox)] == [2]
        [moved] = await store.page(trash.id)
        page = await web.get(f"/webmail/f/{trash.id}/m/{moved.uid}")
        assert "Supprimer définitivement" in page.text
        gone = await web.post(f"/webmail/f/{trash.id}/m/{moved.uid}/delete")
        assert gone.headers["location"].endswith("notice=deleted")
        assert (await store.get_folder(camille.id, "Trash")).messages == 0
        assert (await web.get(f"/webmail/f/{trash.id}/m/{moved.uid}")).status_code == 404
        bogus = await web.get(f"/webmail/f/{inbox}/m/2?notice=<b>injected</b>")
        assert "injected" not in bogus.text
        history = await web.get("/webmail/history")
        assert "message mis à la corbeille" in history.text and "message supprimé définitivement" in history.text
