"""Helpers of the IMAP tests: the running server and its mailbox, clients that check carnet's certificate, sample
messages and a small line-level client for transcripts."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import re
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aioimaplib

from carnet.config import Settings
from carnet.db import Database
from carnet.directory import auth, mailboxes
from carnet.directory.identifiers import synthetic_rpps as rpps
from carnet.directory.records import ProfessionalInput
from carnet.mailbox.imap import ImapLimits, ImapServer, start_imap
from carnet.mailbox.store import MailStore
from carnet.pki import authority

PASSWORD = "correct horse battery staple"


def professional(n: int, first: str = "Anne", last: str = "Martin") -> ProfessionalInput:
    return ProfessionalInput("RPPS", rpps(n), first, last, "10", "SM26", [])


@dataclass
class ImapEnv:
    settings: Settings
    db: Database
    store: MailStore
    server: ImapServer
    address: str
    password: str
    mailbox_id: int
    others: dict[str, int] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.settings.domain

    @property
    def ca_bundle(self) -> Path:
        return self.settings.data_dir / "pki" / "ca-bundle.pem"

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def tls_port(self) -> int:
        return self.server.tls_port

    def context(self) -> ssl.SSLContext:
        """A client TLS context trusting this instance's CA bundle only (host name checked)."""
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    # imaplib (blocking: run it in a thread with asyncio.to_thread)

    def client(self, *, tls: str = "starttls", login: bool = True, user: str | None = None,
               password: str | None = None, timeout: float = 30) -> imaplib.IMAP4:
        if tls == "implicit":
            client: imaplib.IMAP4 = ImplicitTLSClient(self.domain, self.tls_port, self.context(), timeout)
        else:
            client = StartTLSClient(self.domain, self.port, timeout)
            if tls == "starttls":
                client.starttls(self.context())
        if login:
            client.login(user or self.address, password or self.password)
        return client

    async def add_user(self, n: int, first: str, last: str) -> tuple[str, int]:
        """Another directory mailbox with the same password: (address, mailbox id)."""
        info = await mailboxes.add_professional(self.db, self.settings, professional(n, first, last))
        await auth.set_password(self.db, info.address, PASSWORD)
        await self.store.ensure_account(info.id)
        self.others[info.address] = info.id
        return info.address, info.id

    async def folder(self, name: str = "INBOX") -> Any:
        return await self.store.get_folder(self.mailbox_id, name)

    async def states(self, name: str = "INBOX") -> list[Any]:
        return await self.store.snapshot((await self.folder(name)).id)

    async def fill(self, count: int, folder: str = "INBOX", *, flags: tuple[str, ...] = ()) -> None:
        for i in range(count):
            await self.store.append(self.mailbox_id, folder, sample(i), flags)


class StartTLSClient(imaplib.IMAP4):
    """imaplib connecting to 127.0.0.1 while checking the certificate for ``host`` (the instance's domain)."""

    def __init__(self, host: str, port: int, timeout: float = 30) -> None:
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout)


class ImplicitTLSClient(imaplib.IMAP4_SSL):
    def __init__(self, host: str, port: int, context: ssl.SSLContext, timeout: float = 30) -> None:
        super().__init__(host, port, ssl_context=context, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


# aioimaplib -------------------------------------------------------------------------------------------------------


class AioStartTLS(aioimaplib.IMAP4):
    """aioimaplib has no STARTTLS: the cleartext greeting and STARTTLS exchange are done here on the socket, then the
    socket is handed to asyncio with TLS and the (cleartext) greeting fed to aioimaplib's protocol."""

    def __init__(self, domain: str, port: int, context: ssl.SSLContext, timeout: float = 30) -> None:
        self._domain = domain
        self._context = context
        super().__init__("127.0.0.1", port, timeout=timeout)

    def create_client(self, host: str, port: int, loop: Any, conn_lost_cb: Any = None,
                      ssl_context: Any = None) -> None:
        local_loop = asyncio.get_running_loop()
        self.protocol = aioimaplib.IMAP4ClientProtocol(local_loop, conn_lost_cb)

        async def connect() -> None:
            sock, greeting = await asyncio.to_thread(_starttls_prelude, host, port)
            await local_loop.create_connection(lambda: self.protocol, sock=sock, ssl=self._context,
                                               server_hostname=self._domain)
            self.protocol.data_received(greeting)

        self._client_task = local_loop.create_task(connect())


def _starttls_prelude(host: str, port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection((host, port), 10)
    reader = sock.makefile("rb")
    greeting = reader.readline()
    sock.sendall(b"S0 STARTTLS\r\n")
    answer = reader.readline()
    assert answer.startswith(b"S0 OK"), answer
    reader.close()
    sock.settimeout(None)
    sock.setblocking(False)
    return sock, greeting


async def aio_client(env: ImapEnv, *, tls: str = "implicit", login: bool = True) -> aioimaplib.IMAP4:
    if tls == "implicit":
        client = AioImplicit(env.domain, env.tls_port, env.context())
    else:
        client = AioStartTLS(env.domain, env.port, env.context())
    await client.wait_hello_from_server()
    if login:
        result = await client.login(env.address, env.password)
        assert result.result == "OK", result
    return client


class AioImplicit(aioimaplib.IMAP4_SSL):
    def __init__(self, domain: str, port: int, context: ssl.SSLContext, timeout: float = 30) -> None:
        self._domain = domain
        super().__init__("127.0.0.1", port, timeout=timeout, ssl_context=context)

    def create_client(self, host: str, port: int, loop: Any, conn_lost_cb: Any = None,
                      ssl_context: Any = None) -> None:
        local_loop = asyncio.get_running_loop()
        self.protocol = aioimaplib.IMAP4ClientProtocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(local_loop.create_connection(
            lambda: self.protocol, host, port, ssl=ssl_context, server_hostname=self._domain))


# The environment ---------------------------------------------------------------------------------------------------


def server_settings(settings: Settings) -> Settings:
    """The test settings listening on free loopback ports."""
    listen = settings.listen.model_copy(update={"imap": "127.0.0.1:0", "imaps": "127.0.0.1:0"})
    return settings.model_copy(update={"listen": listen})


@asynccontextmanager
async def start_env(db: Database, settings: Settings, *, limits: ImapLimits | None = None,
                    store: MailStore | None = None) -> AsyncIterator[ImapEnv]:
    await authority.init_hierarchy(db, settings)
    info = await mailboxes.add_professional(db, settings, professional(1))
    await auth.set_password(db, info.address, PASSWORD)
    own_store = store is None
    store = store or MailStore(db)
    await store.ensure_account(info.id)
    server = await start_imap(server_settings(settings), db, store, limits=limits or ImapLimits())
    env = ImapEnv(settings, db, store, server, info.address, PASSWORD, info.id)
    try:
        yield env
    finally:
        server.close()
        await server.wait_closed(grace=5)
        if own_store:
            await store.close()


@asynccontextmanager
async def second_server(env: ImapEnv, db: Database, *, limits: ImapLimits | None = None) -> AsyncIterator[ImapServer]:
    """Another IMAP server on the same database through its own Database and MailStore (another "node")."""
    store = MailStore(db)
    server = await start_imap(server_settings(env.settings), db, store, limits=limits)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed(grace=5)
        await store.close()


# Sample messages ---------------------------------------------------------------------------------------------------

_BASE = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def _date(i: int) -> str:
    return format_datetime(_BASE + timedelta(minutes=i))


def plain(i: int, *, subject: str | None = None, sender: str = "Paul Petit <paul.petit@carnet.test>",
          body: str | None = None) -> bytes:
    subject = subject or f"Compte rendu {i}"
    body = body or f"Bonjour,\r\nvoici le compte rendu numéro {i}.\r\nCordialement\r\n"
    return (
        f"From: {sender}\r\nTo: Anne Martin <anne.martin@carnet.test>\r\nSubject: {subject}\r\n"
        f"Date: {_date(i)}\r\nMessage-ID: <plain-{i}@carnet.test>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}"
    ).encode()


def alternative(i: int) -> bytes:
    return (
        f"From: Claire Durand <claire.durand@carnet.test>\r\nTo: anne.martin@carnet.test\r\n"
        f"Subject: Résultats {i}\r\nDate: {_date(i)}\r\nMessage-ID: <alt-{i}@carnet.test>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="b{i}"\r\n\r\n'
        f"--b{i}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nResultats du patient {i}\r\n"
        f"--b{i}\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<p>Resultats du patient <b>{i}</b></p>\r\n"
        f"--b{i}--\r\n"
    ).encode()


def with_attachment(i: int) -> bytes:
    payload = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoK"  # "%PDF-1.4…"
    return (
        f"From: Laboratoire <labo@carnet.test>\r\nTo: anne.martin@carnet.test\r\nSubject: Analyse {i}\r\n"
        f"Date: {_date(i)}\r\nMessage-ID: <att-{i}@carnet.test>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="m{i}"\r\n\r\n'
        f"--m{i}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        f"Ci-joint le r=C3=A9sultat {i}.\r\n"
        f"--m{i}\r\nContent-Type: application/pdf; name=\"resultat-{i}.pdf\"\r\n"
        f"Content-Disposition: attachment; filename=\"resultat-{i}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{payload}\r\n--m{i}--\r\n"
    ).encode()


def sample(i: int) -> bytes:
    """Plain, multipart/alternative and with an attachment, in turn."""
    return (plain, alternative, with_attachment)[i % 3](i)


# A line-level client for transcripts ---------------------------------------------------------------------------------


class RawClient:
    """Sends raw command lines and collects raw response lines (literals included), over TLS."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, env: ImapEnv, *, implicit: bool = True, login: bool = True) -> RawClient:
        if implicit:
            reader, writer = await asyncio.open_connection("127.0.0.1", env.tls_port, ssl=env.context(),
                                                          server_hostname=env.domain)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
        client = cls(reader, writer)
        client.greeting = await client.readline()
        if login:
            await client.command(f'L0 LOGIN "{env.address}" "{env.password}"', tag="L0")
        return client

    greeting: bytes = b""

    async def starttls(self, env: ImapEnv) -> None:
        await self.command("S0 STARTTLS", tag="S0")
        await self.writer.start_tls(env.context(), server_hostname=env.domain)

    async def readline(self, wait: float = 10) -> bytes:
        line = await asyncio.wait_for(self.reader.readline(), wait)
        if not line:
            raise ConnectionError("connection closed")
        match = re.search(rb"\{(\d+)\}\r\n$", line)
        if match:
            line += await asyncio.wait_for(self.reader.readexactly(int(match.group(1))), wait)
            line += await self.readline(wait)
        return line

    def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)

    async def command(self, line: str | bytes, *, tag: str | None = None, wait: float = 20) -> list[bytes]:
        """Send one command line (CRLF added) and read until its tagged response; returns every line received."""
        data = line.encode() if isinstance(line, str) else line
        tag = tag or data.split(b" ", 1)[0].decode()
        self.writer.write(data + b"\r\n")
        await self.writer.drain()
        return await self.until_tagged(tag, wait=wait)

    async def until_tagged(self, tag: str, wait: float = 20) -> list[bytes]:
        lines = []
        while True:
            line = await self.readline(wait)
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)


def tagged(lines: list[bytes]) -> bytes:
    return lines[-1]


def untagged(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines[:-1] if line.startswith(b"* ")]
