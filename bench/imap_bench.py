"""Benchmark of carnet's IMAP server with the standard library's imaplib (and a raw TLS socket for big FETCHes).

It starts its own server on a temporary data directory with SQLite (default) or on a scratch PostgreSQL database
(``--database-url postgresql://postgres@127.0.0.1:5432/``: a database is created there and dropped at the end), then:

- APPENDs 5,000 mixed messages (plain, multipart/alternative, with an attachment) over one connection;
- times SELECT, FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE), UID SEARCH SUBJECT / FROM /
  BODY, FETCH of 500 full bodies, STORE on all messages, and 20 concurrent clients (login, select, fetch, logout);
- fills a folder with 100,000 messages through the store API (append 1,000 then COPY doublings) and compares SELECT
  on it with SELECT on 1,000 messages.

    .venv/bin/python bench/imap_bench.py [--messages 5000] [--big 100000] [--database-url URL] [--nodelay]

The clients run in a separate process (spawned), so that they do not compete with the server for the GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import logging
import multiprocessing
import re
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit import scratch_postgres

from carnet.config import Settings, load_settings
from carnet.db import Database, upgrade
from carnet.directory import auth, mailboxes
from carnet.directory.identifiers import synthetic_rpps
from carnet.directory.records import ProfessionalInput
from carnet.mailbox.imap import ImapLimits, ImapServer, start_imap
from carnet.mailbox.store import MailStore
from carnet.pki import authority

PASSWORD = "benchmark password 2024"
NODELAY = "--nodelay" in sys.argv
SUMMARY = "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)"


def message(i: int) -> bytes:
    date = f"Mon, {1 + i % 28:02d} Apr 2024 {i % 24:02d}:{i % 60:02d}:00 +0200"
    head = (f"From: Expéditeur {i % 97} <sender{i % 97}@hopital-{i % 13}.carnet.test>\r\n"
            f"To: Anne Martin <anne.martin@bench.carnet.test>\r\nCc: secretariat@bench.carnet.test\r\n"
            f"Subject: Compte rendu {i} patient {i % 500}\r\nDate: {date}\r\n"
            f"Message-ID: <bench-{i}@carnet.test>\r\nMIME-Version: 1.0\r\n")
    text = (f"Bonjour,\r\n\r\nVeuillez trouver le compte rendu de consultation {i}.\r\n"
            + "Examen clinique sans particularité. " * 8 + f"\r\nmarqueur{i}\r\n\r\nCordialement\r\n")
    kind = i % 3
    if kind == 0:
        return (head + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                + text).encode()
    if kind == 1:
        return (head + f'Content-Type: multipart/alternative; boundary="alt{i}"\r\n\r\n'
                f"--alt{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
                f"--alt{i}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{text}</p></body></html>\r\n"
                f"--alt{i}--\r\n").encode()
    attachment = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoK\r\n" * 40
    return (head + f'Content-Type: multipart/mixed; boundary="mix{i}"\r\n\r\n'
            f"--mix{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
            f'--mix{i}\r\nContent-Type: application/pdf; name="cr-{i}.pdf"\r\n'
            f'Content-Disposition: attachment; filename="cr-{i}.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            f"{attachment}--mix{i}--\r\n").encode()


class Client(imaplib.IMAP4_SSL):
    """imaplib over implicit TLS to 127.0.0.1, checking the certificate for the instance's domain."""

    def __init__(self, domain: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(domain, port, ssl_context=context, timeout=600)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout)
        if NODELAY:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class RawClient:
    """A minimal client for timing big responses without imaplib's per-line parsing."""

    def __init__(self, domain: str, port: int, context: ssl.SSLContext) -> None:
        sock = socket.create_connection(("127.0.0.1", port), 600)
        self.sock = context.wrap_socket(sock, server_hostname=domain)
        self.file = self.sock.makefile("rb", buffering=1 << 20)
        self.file.readline()
        self.n = 0

    def command(self, text: str) -> int:
        """Send a command, read the whole answer; returns the number of octets received."""
        self.n += 1
        tag = f"R{self.n}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        total = 0
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("closed")
            total += len(line)
            literal = re.search(rb"\{(\d+)\}\r\n$", line)
            if literal:
                total += len(self.file.read(int(literal.group(1))))
                continue
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line.decode(errors="replace"))
                return total

    def close(self) -> None:
        self.command("LOGOUT")
        self.sock.close()


def timed(label: str, function: Callable[[], Any], results: dict[str, float], *, repeat: int = 1) -> Any:
    durations = []
    value = None
    for _ in range(repeat):
        started = time.perf_counter()
        value = function()
        durations.append(time.perf_counter() - started)
    results[label] = statistics.median(durations)
    print(f"  {label:<58} {results[label] * 1000:10.1f} ms" + (f"  (median of {repeat})" if repeat > 1 else ""))
    sys.stdout.flush()
    return value


@dataclass(frozen=True)
class Target:
    domain: str
    port: int
    cafile: str
    address: str
    messages: int
    nodelay: bool


def client_phase(target: Target) -> dict[str, float]:
    """APPEND, SELECT, FETCH, SEARCH, STORE and concurrent clients, from a separate process."""
    global NODELAY
    NODELAY = target.nodelay
    context = ssl.create_default_context(cafile=target.cafile)
    domain, port, address = target.domain, target.port, target.address
    results: dict[str, float] = {}
    client = Client(domain, port, context)
    client.login(address, PASSWORD)
    messages = [message(i) for i in range(target.messages)]
    started = time.perf_counter()
    for raw_message in messages:
        typ, _ = client.append("INBOX", None, None, raw_message)
        assert typ == "OK"
    elapsed = time.perf_counter() - started
    results["APPEND"] = elapsed
    print(f"  {'APPEND ' + str(target.messages) + ' messages (imaplib, one connection)':<58} "
          f"{elapsed * 1000:10.1f} ms  = {target.messages / elapsed:.0f} messages/s")
    timed("SELECT INBOX", lambda: client.select("INBOX"), results, repeat=5)
    client.logout()

    raw = RawClient(domain, port, context)
    raw.command(f'LOGIN "{address}" "{PASSWORD}"')
    raw.command("SELECT INBOX")
    octets = timed(f"FETCH 1:* {SUMMARY}", lambda: raw.command(f"FETCH 1:* {SUMMARY}"), results, repeat=3)
    print(f"    ({octets / 1e6:.1f} MB answered)")
    for key, value in (("SUBJECT", '"patient 42"'), ("FROM", "sender7@"), ("BODY", "marqueur4242")):
        timed(f"UID SEARCH {key} {value}", lambda k=key, v=value: raw.command(f"UID SEARCH {k} {v}"),
              results, repeat=3)
    timed("FETCH 1:500 BODY.PEEK[] (500 full bodies)", lambda: raw.command("FETCH 1:500 BODY.PEEK[]"),
          results, repeat=3)
    timed("STORE 1:* +FLAGS (\\Flagged)", lambda: raw.command("STORE 1:* +FLAGS (\\Flagged)"), results)
    timed("STORE 1:* -FLAGS.SILENT (\\Flagged)", lambda: raw.command("STORE 1:* -FLAGS.SILENT (\\Flagged)"),
          results)
    raw.close()

    clients: list[RawClient] = []
    lock = threading.Lock()

    def login(_: int) -> None:
        c = RawClient(domain, port, context)
        c.command(f'LOGIN "{address}" "{PASSWORD}"')
        with lock:
            clients.append(c)

    def work(c: RawClient) -> None:
        c.command("EXAMINE INBOX")
        c.command(f"UID FETCH 1:* {SUMMARY}")
        c.command("UID SEARCH SUBJECT patient")
        c.command("FETCH 1:20 BODY.PEEK[]")

    with ThreadPoolExecutor(max_workers=20) as pool:
        timed("20 concurrent LOGINs (argon2id, RFC 9106 parameters)", lambda: list(pool.map(login, range(20))),
              results)
        timed("20 concurrent clients: EXAMINE, UID FETCH 1:*, SEARCH, 20 bodies",
              lambda: list(pool.map(work, clients)), results)
    for c in clients:
        c.close()
    return results


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="carnet-imap-bench-"))
    drop = None
    database_url = ""
    if args.database_url:
        database_url, drop = await scratch_postgres(args.database_url, "carnet_bench")
    settings: Settings = load_settings(domain="bench.carnet.test", data_dir=workdir / "var", database_url=database_url,
                                       key_secret="bench", test_mode=True,
                                       listen={"imap": "127.0.0.1:0", "imaps": "127.0.0.1:0"})
    await upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    store = MailStore(db)
    server: ImapServer | None = None
    try:
        print(f"carnet IMAP benchmark — {'PostgreSQL' if database_url else 'SQLite'}, data in {workdir}")
        await authority.init_hierarchy(db, settings)
        person = ProfessionalInput("RPPS", synthetic_rpps(1), "Anne", "Martin", "10", "SM26", [])
        info = await mailboxes.add_professional(db, settings, person)
        await auth.set_password(db, info.address, PASSWORD)
        await store.ensure_account(info.id)
        limits = ImapLimits(max_connections_per_account=64)
        server = await start_imap(settings, db, store, limits=limits)
        context = ssl.create_default_context(cafile=str(settings.data_dir / "pki" / "ca-bundle.pem"))
        domain, port = settings.domain, server.tls_port
        results: dict[str, float] = {}
        target = Target(domain, port, str(settings.data_dir / "pki" / "ca-bundle.pem"), info.address, args.messages,
                        NODELAY)
        # The clients run in another process: in this one they would compete with the server for the GIL.
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            results.update(await asyncio.get_running_loop().run_in_executor(pool, client_phase, target))

        # SELECT on 100,000 messages vs 1,000 --------------------------------------------------------------------
        print(f"  filling folders of 1,000 and {args.big:,} messages through the store API …")
        sys.stdout.flush()
        await store.create_folder(info.id, "Small")
        await store.create_folder(info.id, "Big")
        started = time.perf_counter()
        for i in range(1000):
            await store.append(info.id, "Small", message(i))
        small = await store.get_folder(info.id, "Small")
        big = await store.get_folder(info.id, "Big")
        await store.copy(small.id, list(range(1, 1001)), big.id)
        count = 1000
        while count < args.big:
            take = min(count, args.big - count)
            uids = [s.uid for s in (await store.snapshot(big.id))[:take]]
            await store.copy(big.id, uids, big.id)
            count += take
        print(f"    filled in {time.perf_counter() - started:.1f} s")

        def select_bench() -> None:
            c = RawClient(domain, port, context)
            c.command(f'LOGIN "{info.address}" "{PASSWORD}"')
            timed("SELECT Small (1,000 messages)", lambda: c.command("SELECT Small"), results, repeat=7)
            timed(f"SELECT Big ({args.big:,} messages)", lambda: c.command("SELECT Big"), results, repeat=7)

            def first_fetch() -> None:
                c.command("SELECT Big")
                c.command(f"FETCH {args.big} (UID FLAGS)")

            timed(f"SELECT Big + first FETCH (loads the {args.big:,}-UID map)", first_fetch, results, repeat=3)
            c.close()

        await asyncio.to_thread(select_bench)
        ratio = results[f"SELECT Big ({args.big:,} messages)"] / results["SELECT Small (1,000 messages)"]
        print(f"  SELECT {args.big:,} / SELECT 1,000 = {ratio:.2f}×")
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
        await store.close()
        await db.close()
        if drop is not None:
            await drop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--nodelay", action="store_true", help="TCP_NODELAY on imaplib's socket")
    parser.add_argument("--database-url", default="", help="a PostgreSQL server URL (a scratch database is made)")
    asyncio.run(main(parser.parse_args()))
