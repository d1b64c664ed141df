"""Authorization: a user never reads, searches, downloads, answers or acknowledges another mailbox's message by
changing ids in URLs or forms — every route is tried with another patient's folder ids and UIDs."""

from __future__ import annotations

import asyncio
from datetime import date

from mta.mtahelp import PASSWORD, Platform, imap_fetch_all, nir, text_message
from test_webmail_flow import pdf_message
from webhelp import send_smtp, web_client

from carnet.directory import auth, mailboxes
from carnet.directory.records import PatientInput


async def other_patient(platform: Platform) -> str:
    info = await mailboxes.add_patient(
        platform.db,
        platform.settings,
        PatientInput(
            ins=nir(2),
            birth_name="Petit",
            first_names="Dominique",
            birth_date=date(1990, 1, 2),
            sex="M",
            birthplace_code="69123",
        ),
    )
    await auth.set_password(platform.db, info.address, PASSWORD)
    return info.address


async def test_no_route_reaches_another_mailbox(platform: Platform) -> None:
    anne, camille = platform.people.anne, platform.people.camille
    extra = {"Disposition-Notification-To": f"<{anne.address}>"}
    await send_smtp(
        platform,
        anne.address,
        anne.address,
        camille.address,
        pdf_message(anne.address, camille.address, "Confidentiel", extra),
    )
    await platform.wait_inbox(camille, 1)
    store = platform.store
    camille_inbox = await store.get_folder(camille.id, "INBOX")
    camille_folders = [f.id for f in await store.list_folders(camille.id)]
    before_mail = len(await asyncio.to_thread(imap_fetch_all, platform, anne.address))
    dominique = await other_patient(platform)
    fid, uid = camille_inbox.id, 1
    async with web_client(platform, dominique) as web:
        own_inbox = await web.inbox_id()
        assert own_inbox not in camille_folders
        gets = [
            *(f"/webmail/f/{folder}" for folder in camille_folders),
            f"/webmail/f/{fid}?q=Confidentiel",
            f"/webmail/f/{fid}?before=2",
            f"/webmail/f/{fid}/m/{uid}",
            f"/webmail/f/{fid}/m/{uid}/body",
            f"/webmail/f/{fid}/m/{uid}/part/1",
            f"/webmail/f/{fid}/m/{uid}/part/2",
            f"/webmail/f/{fid}/m/{uid}?within=2",
            f"/webmail/f/{fid}/m/{uid}/reply",
            f"/webmail/f/{own_inbox}/m/{uid}",  # Camille's UID in one's own folder
            f"/webmail/f/{own_inbox}/m/{uid}/part/2",
        ]
        for url in gets:
            response = await web.get(url)
            assert response.status_code == 404, url
            assert "Confidentiel" not in response.text and "résultats" not in response.text, url
        posts = [f"/webmail/f/{fid}/m/{uid}/{action}" for action in ("receipt", "unread", "delete")]
        posts += [f"/webmail/f/{own_inbox}/m/{uid}/{action}" for action in ("receipt", "unread", "delete")]
        for url in posts:
            assert (await web.post(url)).status_code == 404, url
        reply = await web.http.post(
            f"/webmail/f/{fid}/m/{uid}/reply",
            data={"csrf": web.csrf, "body": "Intrus"},
            files=[("files", ("", b"", "application/octet-stream"))],
        )
        assert reply.status_code == 404
        switch = await web.post("/webmail/space", {"mailbox": str(camille.id)})
        assert switch.status_code == 403
        search = await web.get(f"/webmail/f/{own_inbox}?q=Confidentiel")
        assert search.status_code == 200 and "0 message(s) trouvé(s)" in search.text
        assert "Confidentiel</a>" not in search.text
        history = await web.get("/webmail/history")
        assert camille.display_name not in history.text
    # nothing happened in Camille's mailbox: still unseen, not answered, no receipt, nothing sent to Anne
    [summary] = await store.summaries(fid, [uid])
    assert summary.flags == frozenset()
    assert (await store.get_folder(camille.id, "Trash")).messages == 0
    assert len(await asyncio.to_thread(imap_fetch_all, platform, anne.address)) == before_mail
    # a professional is held to the same rule
    async with web_client(platform, anne.address) as web:
        assert (await web.get(f"/webmail/f/{fid}/m/{uid}")).status_code == 404
        assert (await web.get(f"/webmail/f/{fid}")).status_code == 404


async def test_bad_ids_are_clear_errors(platform: Platform) -> None:
    camille = platform.people.camille
    await send_smtp(
        platform,
        platform.people.anne.address,
        platform.people.anne.address,
        camille.address,
        text_message(platform.people.anne.address, camille.address, "Bonjour"),
    )
    await platform.wait_inbox(camille, 1)
    async with web_client(platform, camille.address) as web:
        inbox = await web.inbox_id()
        for url, status in [
            ("/webmail/f/abc", 400),
            (f"/webmail/f/{inbox}/m/xyz", 400),
            (f"/webmail/f/{inbox}/m/999", 404),
            (f"/webmail/f/{inbox}?before=0", 400),
            (f"/webmail/f/{inbox}/m/1/part/9", 404),
            (f"/webmail/f/{inbox}/m/1/part/..%2F..", 404),
            (f"/webmail/f/{inbox}/m/1?within=1,2,3,4,5,6", 404),
            (f"/webmail/f/{inbox}/m/1?within=x", 404),
            (f"/webmail/f/{inbox}?q=" + "x" * 500, 400),
            ("/webmail/no-such-page", 404),
        ]:
            response = await web.get(url)
            assert response.status_code == status, (url, response.status_code)
            assert "Traceback" not in response.text and response.headers["content-type"].startswith("text/html")
        malformed = await web.http.post(f"/webmail/f/{inbox}/m/1/reply", content=b"--x\r\nnot a part header\r\n",
                                        headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert malformed.status_code == 400 and malformed.headers["content-type"].startswith("text/html")
        # a 64 MiB upload is refused from its Content-Length, before any of it is read
        reader, writer = await asyncio.open_connection("127.0.0.1", platform.ports["http"])
        cookie = "; ".join(f"{name}={value}" for name, value in web.http.cookies.items())
        writer.write(
            (
                f"POST /webmail/f/{inbox}/m/1/reply HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {64 * 1024 * 1024}\r\n"
                "\r\n"
            ).encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
        assert (await web.get(f"/webmail/f/{inbox}/m/1")).status_code == 200  # still serving
