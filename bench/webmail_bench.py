"""Benchmark of the webmail over real HTTP: the inbox page, a message page and search, at 1,000 and 100,000 messages.

    .venv/bin/python bench/webmail_bench.py [--sizes 1000,100000] [--requests 200] [--warmup 20]
                                            [--database-url postgresql://postgres@127.0.0.1:5432/]

It builds a platform on a temporary data directory — SQLite by default, or a scratch database created on the given
PostgreSQL server and dropped at the end — with a few professionals (the senders) and one patient per size, and runs
``carnet serve`` (SMTP, IMAP, HTTP with the webmail) in this process's event loop. For each size, the patient's INBOX
is filled through :meth:`MailStore.deliver_many` (the MTA's batch path: 1,000 deliveries per transaction) with
distinct, realistic messages: varied subjects, senders and sizes, a quarter with a PDF attachment, a third with an
HTML alternative, and the gateway's stored verification result (most valid, some revoked, a tenth unsigned).

A client in a separate, spawned process (httpx, one keep-alive connection as a browser keeps, or a new connection
per request with ``--fresh-connections``; in its own process so that its CPU does not count as server latency and
the GIL is not shared) signs in as the patient and, after a warm-up of ``--warmup`` requests of each kind,
times ``--requests`` requests of the inbox's first page and of a deep page (``?before=`` a UID in the middle of the
folder), half as many message pages and their body documents (the iframe's ``/body``) over different UIDs — the
first read of a message marks it \\Seen and writes an audit row, as a real first read does — and a quarter as many
searches per scope (subject: a rare word, from: one sender's name, body: a word in few messages, all: the rare word
in any of the three). It prints p50 / p95 / mean / min / max per kind of request, and the fill time. The issue's
goal is p95 < 50 ms for the inbox page at 100,000 messages; this script only reports figures.

On PostgreSQL the tables are ``ANALYZE``d after each fill (what autovacuum does within a minute of a bulk insert).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from benchkit import scratch_postgres
from sqlalchemy import text

from carnet.config import Listeners, Settings, load_settings
from carnet.db import Database, upgrade
from carnet.directory import auth, mailboxes
from carnet.directory.identifiers import synthetic_nir, synthetic_rpps
from carnet.directory.records import MailboxInfo, PatientInput, ProfessionalInput
from carnet.mailbox.api import Delivery
from carnet.pki import authority
from carnet.serve import Running, serve

PASSWORD = "benchmark password 2024"
BATCH = 1000
#: The search words: a rare word in subjects (1 message in 1,000), a sender's name (1 in 8) and a rare word in
#: bodies (1 in 500).
RARE_SUBJECT = "scintigraphie"
SENDER_NAME = "Lefebvre"
RARE_BODY = "bradycardie"
#: (first name, last name, profession, specialty) of the senders; Lefebvre is the from search.
SENDERS = (
    ("Anne", "Martin", "10", "SM26"),
    ("Bruno", "Lefebvre", "10", "SM04"),
    ("Chloé", "Moreau", "10", "SM44"),
    ("David", "Garnier", "21", None),
    ("Emma", "Rousseau", "60", None),
    ("Fabien", "Girard", "10", "SM40"),
    ("Gaëlle", "Bonnet", "10", "SM15"),
    ("Hugo", "Lambert", "50", None),
)
SUBJECTS = (
    "Compte rendu de consultation du {day}",
    "Résultats d'analyses biologiques n° {n}",
    "Ordonnance de renouvellement",
    "Courrier de sortie d'hospitalisation",
    "Rendez-vous de contrôle le {day}",
    "Compte rendu d'imagerie : IRM du genou",
    "Votre bilan sanguin — dossier {n}",
    "Suivi de traitement, point à {n} semaines",
    "Lettre de liaison pour votre médecin traitant",
    "Certificat médical",
    "Re: question sur le traitement",
    "Compte rendu opératoire",
)
SENTENCES = (
    "Je vous adresse le compte rendu de la consultation de ce jour.",
    "L'examen clinique est sans particularité, la tension artérielle est à 12/8.",
    "Les résultats biologiques sont dans les normes, en dehors d'une discrète anémie.",
    "Je vous propose de poursuivre le traitement actuel pendant trois mois.",
    "Un contrôle de la glycémie à jeun est à prévoir avant la prochaine consultation.",
    "N'hésitez pas à me recontacter en cas d'aggravation des symptômes.",
    "Vous trouverez ci-joint l'ordonnance et le compte rendu détaillé.",
    "Le patient ne signale pas d'effet indésirable depuis l'introduction du traitement.",
    "L'imagerie ne montre pas de lésion évolutive par rapport à l'examen précédent.",
    "Une kinésithérapie de rééducation, à raison de deux séances par semaine, est prescrite.",
)
PDF_LINE = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKMiAwIG9iago8PC9MZW5ndGggMz4+\r\n"


# Messages -----------------------------------------------------------------------------------------------------------


def sender_of(i: int) -> int:
    """Index of message ``i``'s sender: Lefebvre (1) one message in 8, the others spread unevenly."""
    if i % 8 == 3:
        return 1
    return (0, 0, 0, 2, 3, 4, 5, 6, 7, 0, 2, 5)[(i * 7) % 12]


def message(i: int, to: str, senders: list[MailboxInfo]) -> bytes:
    """Distinct message ``i``: varied subject, sender and size; a PDF in 1 of 4, an HTML alternative in 1 of 3."""
    sender = senders[sender_of(i)]
    day = f"{1 + i % 28:02d}/{1 + i // 28 % 12:02d}/2025"
    subject = SUBJECTS[(i * 5) % len(SUBJECTS)].format(day=day, n=i)
    if i % 1000 == 417:
        subject += f" — {RARE_SUBJECT} osseuse"
    sentences = [SENTENCES[(i + k * 3) % len(SENTENCES)] for k in range(2 + (i * 13) % 23)]
    if i % 500 == 123:
        sentences.insert(1, f"On note une {RARE_BODY} sinusale asymptomatique.")
    text_body = "Bonjour,\r\n\r\n" + "\r\n".join(sentences) + f"\r\n\r\nRéférence {i}.\r\n\r\nBien cordialement,\r\n" \
        f"{sender.display_name}\r\n"
    date_header = f"{('Mon', 'Tue', 'Wed', 'Thu', 'Fri')[i % 5]}, {1 + i % 28:02d} Mar 2025 {8 + i % 10:02d}:" \
        f"{i % 60:02d}:00 +0100"
    head = (f"From: {sender.display_name} <{sender.address}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Date: {date_header}\r\nMessage-ID: <webmail-bench-{i}-{len(to)}@bench.carnet.test>\r\n"
            "MIME-Version: 1.0\r\n")
    plain = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text_body
    if i % 3 == 1:
        paragraphs = "".join(f"<p>{s}</p>" for s in sentences)
        content = (f'Content-Type: multipart/alternative; boundary="alt{i}"\r\n\r\n--alt{i}\r\n{plain}\r\n'
                   f"--alt{i}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                   f"<html><body><p>Bonjour,</p>{paragraphs}<p>Bien cordialement,<br>{sender.display_name}</p>"
                   f"</body></html>\r\n--alt{i}--\r\n")
    else:
        content = plain
    if i % 4 == 2:
        pdf = PDF_LINE * (10 + (i * 37) % 300)  # ~1 to 28 kB
        inner = content if i % 3 == 1 else plain
        content = (f'Content-Type: multipart/mixed; boundary="mix{i}"\r\n\r\n--mix{i}\r\n{inner}\r\n'
                   f'--mix{i}\r\nContent-Type: application/pdf; name="compte-rendu-{i}.pdf"\r\n'
                   f'Content-Disposition: attachment; filename="compte-rendu-{i}.pdf"\r\n'
                   f"Content-Transfer-Encoding: base64\r\n\r\n{pdf}--mix{i}--\r\n")
    return (head + content).encode()


def signature(i: int, senders: list[MailboxInfo]) -> dict[str, object] | None:
    """The gateway's stored result: unsigned 1 in 10, revoked 1 in 50, valid otherwise."""
    if i % 10 == 9:
        return None
    sender = senders[sender_of(i)]
    status = "revoked" if i % 50 == 7 else "valid"
    first, last = sender.display_name.split(" ", 1)
    return {"status": status,
            "signer": {"common_name": f"Dr {first} {last}", "national_id": sender.national_id,
                       "emails": [sender.address], "chain_status": "ok",
                       "revocation": "revoked" if status == "revoked" else "good"},
            "from_address": sender.address}


async def fill(running: Running, patient: MailboxInfo, senders: list[MailboxInfo], count: int) -> float:
    """Deliver ``count`` messages to the patient's INBOX, 1,000 per transaction; returns the time taken."""
    store = running.store
    await store.ensure_account(patient.id)
    await store.set_quota(patient.id, 1 << 40)
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        batch = [Delivery(patient.id, message(i, patient.address, senders), f"bench-{patient.id}-{i}",
                          signature=signature(i, senders)) for i in range(start, min(count, start + BATCH))]
        async with store.db.transaction() as session:
            results = await store.deliver_many(session, batch)
        refused = [r for r in results if isinstance(r, Exception)]
        if refused:
            raise RuntimeError(f"delivery refused: {refused[0]}")
        done = min(count, start + BATCH)
        if done % 25_000 == 0:
            print(f"    {done:>7,} / {count:,} delivered ({time.perf_counter() - started:.0f} s)", flush=True)
    return time.perf_counter() - started


# The client (a separate process) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    port: int
    login: str
    messages: int
    requests: int
    warmup: int
    fresh_connections: bool


ROWS = ("inbox first page", "inbox deep page", "message page", "message body (/body)", "search subject",
        "search from", "search body", "search all")


def client_phase(target: Target) -> dict[str, Any]:
    """Sign in, warm up, time every kind of request; durations in seconds, with response sizes and match counts."""
    out: dict[str, Any] = {"durations": {}, "octets": {}, "notes": []}
    # Keep-alive (what a browser does) unless --fresh-connections: then a new TCP connection per request.
    limits = httpx.Limits(max_keepalive_connections=0) if target.fresh_connections else httpx.Limits()
    with httpx.Client(base_url=f"http://127.0.0.1:{target.port}", follow_redirects=False, timeout=600,
                      limits=limits) as http:
        page = http.get("/webmail/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        if csrf is None:
            raise RuntimeError("no CSRF field on the sign-in page")
        signed = http.post("/webmail/login", data={"login": target.login, "password": PASSWORD,
                                                   "csrf": csrf.group(1)})
        if signed.status_code != 303 or signed.headers["location"] != "/webmail/":
            raise RuntimeError(f"sign-in failed: {signed.status_code} {signed.text[:300]}")
        home = http.get("/webmail/")
        if home.status_code != 303:
            raise RuntimeError(f"/webmail/ answered {home.status_code}")
        folder = home.headers["location"]  # /webmail/f/<inbox id>
        n = target.messages

        def get(url: str) -> httpx.Response:
            response = http.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:300]}")
            return response

        def run(label: str, urls: Callable[[int], str], count: int, warm: int) -> None:
            for k in range(warm):
                get(urls(-1 - k))
            durations, octets = [], 0
            for k in range(count):
                url = urls(k)
                started = time.perf_counter()
                response = get(url)
                durations.append(time.perf_counter() - started)
                octets += len(response.content)
            out["durations"][label] = durations
            out["octets"][label] = octets / max(1, count)
            print(f"    {label:<22} {count:>4} requests done", flush=True)

        step = max(1, min(50, n // 50))

        def deep(k: int) -> str:  # ?before= one of 20 UIDs in the middle of the folder
            return f"{folder}?before={max(2, n // 2 - (k % 20) * step)}"

        def uid(k: int) -> int:  # different UIDs over the folder; warm-up ones (k < 0) apart from measured ones
            return 1 + (k * 7919 + (n // 3 if k < 0 else 0)) % n

        requests, warm = target.requests, target.warmup
        run("inbox first page", lambda _k: folder, requests, warm)
        run("inbox deep page", deep, requests, warm)
        reads = max(1, requests // 2)
        run("message page", lambda k: f"{folder}/m/{uid(k)}", reads, warm)
        run("message body (/body)", lambda k: f"{folder}/m/{uid(k)}/body", reads, warm)
        searches, warm_searches = max(1, requests // 4), max(1, warm // 4)
        for scope, query in (("subject", RARE_SUBJECT), ("from", SENDER_NAME), ("body", RARE_BODY),
                             ("all", RARE_SUBJECT)):
            url = f"{folder}?q={query}&scope={scope}"
            matches = re.search(r'<p role="status">([^<]*)</p>', get(url).text)
            out["notes"].append(f"search {scope}: q={query!r}" + (f" ({matches.group(1).strip()})" if matches else ""))
            run(f"search {scope}", lambda _k, url=url: url, searches, warm_searches)
    return out


# Reporting ----------------------------------------------------------------------------------------------------------


def table(size: int, backend: str, filled: float, result: dict[str, Any]) -> None:
    print(f"\n  {size:,} messages in one patient's INBOX ({backend}); filled in {filled:.1f} s "
          f"({size / filled:,.0f} messages/s)")
    print(f"  {'request':<22} {'n':>5} {'p50':>8} {'p95':>8} {'mean':>8} {'min':>8} {'max':>8}   (ms)  {'KB':>6}")
    for label in ROWS:
        durations = result["durations"].get(label)
        if not durations:
            continue
        ms = sorted(d * 1000 for d in durations)
        p50 = statistics.median(ms)
        p95 = statistics.quantiles(ms, n=100, method="inclusive")[94] if len(ms) > 1 else ms[0]
        print(f"  {label:<22} {len(ms):>5} {p50:8.1f} {p95:8.1f} {statistics.fmean(ms):8.1f} {ms[0]:8.1f} "
              f"{ms[-1]:8.1f}         {result['octets'][label] / 1024:6.1f}")
    for note in result["notes"]:
        print(f"    {note}")
    inbox = sorted(result["durations"].get("inbox first page", []))
    if size >= 100_000 and len(inbox) > 1:
        p95 = statistics.quantiles(inbox, n=100, method="inclusive")[94] * 1000
        print(f"    the issue's goal, inbox first page p95 < 50 ms at 100,000 messages: p95 here {p95:.1f} ms")
    sys.stdout.flush()


# Set-up -----------------------------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="carnet-webmail-bench-"))
    drop = None
    database_url = ""
    if args.database_url:
        database_url, drop = await scratch_postgres(args.database_url, "carnet_webmail_bench")
    settings: Settings = load_settings(domain="bench.carnet.test", data_dir=workdir / "var",
                                       database_url=database_url, key_secret="bench", test_mode=True,
                                       listen=Listeners.loopback_any_port())
    backend = "PostgreSQL" if database_url else "SQLite"
    running = Running()
    task: asyncio.Task[None] | None = None
    db: Database | None = None
    try:
        await upgrade(settings.sqlalchemy_url)
        db = Database(settings.sqlalchemy_url)
        print(f"carnet webmail benchmark — {backend}, data in {workdir}; {os.cpu_count()} CPUs")
        connection = "a new connection per request" if args.fresh_connections else "one keep-alive connection"
        print("  arrangement: server (carnet serve: uvicorn + SMTP + IMAP, one event loop) in this process; the HTTP "
              f"client (httpx, sync, {connection}) in a separate spawned process")
        started = time.perf_counter()
        await authority.init_hierarchy(db, settings)
        senders = [
            await mailboxes.add_professional(db, settings, ProfessionalInput(
                "RPPS", synthetic_rpps(n + 1), first, last, profession, specialty, []))
            for n, (first, last, profession, specialty) in enumerate(SENDERS)
        ]
        patients = []
        for n, _size in enumerate(sizes):
            patient = await mailboxes.add_patient(db, settings, PatientInput(
                ins=synthetic_nir(n + 1), birth_name="Durand", first_names="Camille", birth_date=date(1985, 5, 17),
                sex="F", birthplace_code="75056"))
            await auth.set_password(db, patient.address, PASSWORD)
            patients.append(patient)
        print(f"  platform: CA, {len(senders)} professionals and {len(patients)} patients in "
              f"{time.perf_counter() - started:.1f} s")
        task = asyncio.create_task(serve(settings, running=running, install_signals=False))
        waiter = asyncio.create_task(running.ready.wait())
        await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        if not running.ready.is_set():
            raise TimeoutError("carnet serve did not start")
        print(f"  serving HTTP on 127.0.0.1:{running.ports['http']}; requests per size: {args.requests} of each "
              f"inbox page, {max(1, args.requests // 2)} message pages and bodies, {max(1, args.requests // 4)} "
              f"searches per scope, after {args.warmup} warm-up requests of each kind "
              f"({max(1, args.warmup // 4)} per search scope)")
        print("  (message pages: the first read of each message marks it \\Seen and writes an audit row)")
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            for size, patient in zip(sizes, patients, strict=True):
                print(f"\n  filling the INBOX of patient {patient.ins} with {size:,} messages (deliver_many, "
                      f"{BATCH:,} per transaction) …", flush=True)
                filled = await fill(running, patient, senders, size)
                if database_url:
                    async with running.store.db.transaction() as session:
                        await session.execute(text("ANALYZE"))
                target = Target(running.ports["http"], patient.ins or patient.address, size, args.requests,
                                args.warmup, args.fresh_connections)
                result = await asyncio.get_running_loop().run_in_executor(pool, client_phase, target)
                table(size, backend, filled, result)
    finally:
        running.stop.set()
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
        if db is not None:
            await db.close()
        if drop is not None:
            await drop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000", help="INBOX sizes, comma-separated (default 1000,100000)")
    parser.add_argument("--requests", type=int, default=200,
                        help="timed requests per inbox page kind; half as many message pages, a quarter per search")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests of each kind first")
    parser.add_argument("--fresh-connections", action="store_true",
                        help="a new TCP connection per request instead of one keep-alive connection")
    parser.add_argument("--database-url", default="",
                        help="a PostgreSQL server URL (a scratch database is created there and dropped); "
                             "default: SQLite in a temporary directory")
    asyncio.run(main(parser.parse_args()))
