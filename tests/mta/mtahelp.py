"""Builders and clients for the MTA tests: a demo-like platform served in the test's event loop, SMTP and IMAP
clients run in threads (they block), and OpenSSL checks of what was stored."""

from __future__ import annotations

import asyncio
import email
import imaplib
import smtplib
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from carnet.config import Listeners, Settings
from carnet.db import Database
from carnet.directory import auth, mailboxes, trustspace
from carnet.directory.identifiers import synthetic_finess as finess
from carnet.directory.identifiers import synthetic_nir as nir
from carnet.directory.identifiers import synthetic_rpps as rpps
from carnet.directory.records import MailboxInfo, OrganisationInput, PatientInput, ProfessionalInput
from carnet.pki import authority
from carnet.serve import Running, serve

PASSWORD = "correct horse battery staple"


@dataclass
class People:
    anne: MailboxInfo
    bob: MailboxInfo
    lab: MailboxInfo
    camille: MailboxInfo
    extra: dict[str, MailboxInfo] = field(default_factory=dict)


async def populate(db: Database, settings: Settings, n: int = 1) -> People:
    """Two professionals, an organisation with its lab mailbox (the trusted network's), a patient; passwords."""
    anne = await mailboxes.add_professional(
        db, settings, ProfessionalInput("RPPS", rpps(n), "Anne", "Martin", "10", "SM26", [])
    )
    bob = await mailboxes.add_professional(
        db, settings, ProfessionalInput("RPPS", rpps(n + 1), "Bob", "Durand", "10", None, [])
    )
    org = OrganisationInput("FINESS", finess(n), "Clinique des Tests", "1 rue de la Paix", "42000", "Saint-Etienne")
    await mailboxes.add_organisation(db, settings, org)
    lab = await mailboxes.add_service(db, settings, "1" + finess(n), "Laboratoire", local_part="laboratoire")
    camille = await mailboxes.add_patient(
        db,
        settings,
        PatientInput(
            ins=nir(n),
            birth_name="Durand",
            first_names="Camille",
            birth_date=date(1985, 5, 17),
            sex="F",
            birthplace_code="75056",
        ),
    )
    for info in (anne, bob, camille):
        await auth.set_password(db, info.address, PASSWORD)
    return People(anne, bob, lab, camille)


def fixed_listeners(ports: dict[str, int]) -> Listeners:
    """The listeners of a previous run, to restart an instance where its peers expect it."""

    def at(name: str) -> str:
        return f"127.0.0.1:{ports[name]}"

    return Listeners(
        http=at("http"),
        smtp_relay=at("relay"),
        smtp_submission=at("submission"),
        smtp_submissions=at("submissions"),
        smtp_trusted=at("trusted"),
        imap=at("imap"),
        imaps=at("imaps"),
    )


@dataclass
class Platform:
    settings: Settings
    db: Database
    running: Running
    people: People

    @property
    def ports(self) -> dict[str, int]:
        return self.running.ports

    @property
    def ca_file(self) -> Path:
        return authority.ca_bundle_path(self.settings)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def store(self) -> Any:
        return self.running.store

    async def inbox(self, mailbox: MailboxInfo) -> list[bytes]:
        """The raw messages of a mailbox's INBOX, in UID order (through the store API)."""
        store = self.store
        await store.ensure_account(mailbox.id)
        folder = await store.get_folder(mailbox.id, "INBOX")
        states = await store.snapshot(folder.id)
        summaries = await store.summaries(folder.id, [s.uid for s in states])
        return [await store.raw(s.blob_id) for s in summaries]

    async def wait_inbox(self, mailbox: MailboxInfo, count: int, within: float = 20.0) -> list[bytes]:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            messages = await self.inbox(mailbox)
            if len(messages) >= count or asyncio.get_running_loop().time() > deadline:
                return messages
            await asyncio.sleep(0.1)


@asynccontextmanager
async def running_platform(
    settings: Settings,
    *,
    people: People | None = None,
    http_tls: bool = False,
    populate_with: int = 1,
    listen: Listeners | None = None,
    **mta: Any,
) -> AsyncIterator[Platform]:
    """Initialise (CA, directory) and serve ``settings`` on loopback ephemeral ports in this event loop."""
    settings = settings.model_copy(update={"listen": listen or Listeners.loopback_any_port()})
    if mta:
        settings = settings.model_copy(update={"mta": settings.mta.model_copy(update=mta)})
    db = Database(settings.sqlalchemy_url)
    await authority.init_hierarchy(db, settings)
    if people is None:
        people = await populate(db, settings, populate_with)
    running = Running()
    task = asyncio.create_task(serve(settings, running=running, install_signals=False, http_tls=http_tls))
    waiter = asyncio.create_task(running.ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert running.ready.is_set(), "carnet serve did not start"
    try:
        yield Platform(settings, db, running, people)
    finally:
        running.stop.set()
        await asyncio.wait_for(task, 30)
        await db.close()


async def publication(platform: Platform) -> tuple[bytes, bytes]:
    """The whitelist and trust bundle of an instance, fetched over HTTPS with its CA pinned (the out-of-band step)."""
    url = f"https://127.0.0.1:{platform.ports['http']}"
    context = ssl.create_default_context(cafile=str(platform.ca_file))
    async with httpx.AsyncClient(base_url=url, verify=context) as client:
        sni = {"sni_hostname": platform.settings.domain}
        xml = await client.get("/trust/liste-blanche.xml", extensions=sni)
        bundle = await client.get("/trust/bundle.p7b", extensions=sni)
    assert xml.status_code == bundle.status_code == 200
    return xml.content, bundle.content


async def trust(importer: Platform, peer: Platform, **changes: Any) -> trustspace.OperatorInfo:
    """``importer`` trusts ``peer`` from its publication; ``changes`` then amend the operator entry (e.g.
    ``relay_endpoints=()`` to route by DNS MX, ``legacy_crypto=True``)."""
    xml, bundle = await publication(peer)
    await trustspace.import_peer(importer.db, importer.settings, xml, bundle)
    operator = await trustspace.operator_for(importer.db, peer.settings.domain)
    assert operator is not None
    if changes:
        values: dict[str, Any] = {
            "name": operator.name,
            "ca_bundle": operator.ca_bundle_pem,
            "relay_endpoints": operator.relay_endpoints,
            "directory_url": operator.directory_url,
            "legacy_crypto": operator.legacy_crypto,
        }
        operator = await trustspace.add_operator(
            importer.db, importer.settings, domain=operator.domain, source=operator.source, **{**values, **changes}
        )
    await importer.running.smtp.refresh_trust()
    await importer.running.gateway.trust_changed()
    return operator


def text_message(
    sender: str,
    to: str,
    subject: str = "Compte rendu",
    body: str = "Bonjour,\r\nVoici le compte rendu.\r\n",
    extra: str = "",
) -> bytes:
    return (
        f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


def submit(
    platform: Platform, login: str, sender: str, recipients: list[str], message: bytes, *, password: str = PASSWORD
) -> dict[str, Any]:
    """smtplib: STARTTLS, AUTH, send (run it in a thread)."""
    with smtplib.SMTP("127.0.0.1", platform.ports["submission"], timeout=30) as client:
        client._host = platform.settings.domain  # the name the server certificate carries (SNI + check)
        client.starttls(context=platform.client_context())
        client.login(login, password)
        return client.sendmail(sender, recipients, message)


def openssl_verify(raw: bytes, ca_file: Path, tmp: Path) -> subprocess.CompletedProcess[bytes]:
    """``openssl cms -verify`` of a stored message (the signer must chain to ``ca_file``)."""
    path = tmp / f"msg-{abs(hash(raw))}.eml"
    path.write_bytes(raw)
    return subprocess.run(
        ["openssl", "cms", "-verify", "-in", str(path), "-CAfile", str(ca_file), "-out", "/dev/null"],
        capture_output=True,
        timeout=30,
        check=False,
    )


def imap_fetch_all(platform: Platform, login: str, password: str = PASSWORD) -> list[bytes]:
    """IMAP STARTTLS + LOGIN, SELECT INBOX, FETCH every message (run it in a thread)."""
    client = imaplib.IMAP4("127.0.0.1", platform.ports["imap"], timeout=30)
    try:
        client.host = platform.settings.domain  # the name the server certificate carries
        client.starttls(ssl_context=platform.client_context())
        client.login(login, password)
        status, data = client.select("INBOX")
        assert status == "OK", data
        status, data = client.uid("SEARCH", "ALL")
        uids = data[0].split() if data and data[0] else []
        out = []
        for uid in uids:
            status, fetched = client.uid("FETCH", uid, "(BODY.PEEK[])")
            assert status == "OK", fetched
            out.append(fetched[0][1])
        client.logout()
        return out
    finally:
        with suppress(OSError):
            client.shutdown()


def header(raw: bytes, name: str) -> str | None:
    return email.message_from_bytes(raw).get(name)
