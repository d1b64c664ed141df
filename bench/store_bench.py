"""Message-store benchmark: append throughput, FETCH-summary reads, and SELECT costs at 1,000 vs 100,000 messages.

Usage::

    .venv/bin/python bench/store_bench.py [--database-url postgresql://postgres@127.0.0.1:5432/] [--big 100000]

A fresh database is created (SQLite in a temporary directory, or a new database on the given PostgreSQL server).
Measured, each the best of several runs:

- ``append``: messages per second through :meth:`MailStore.append` (analysis, blob, row, counters, one commit each);
- ``summaries``: :meth:`MailStore.summaries` of 5,000 UIDs (what ``FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE …)``
  reads), the IMAP goal being ~0.35 s for the whole command;
- ``get_folder``, ``count_before_first_unseen``, ``snapshot`` on a folder of 1,000 and one of ``--big`` messages
  (rows for the big folder are bulk-inserted, sharing a few blobs, with counters set as the store keeps them).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import insert, update

from carnet.config import async_url
from carnet.db import Database, upgrade, utcnow
from carnet.directory.models import Mailbox, Patient
from carnet.mailbox import models
from carnet.mailbox.store import MailStore


def message(n: int) -> bytes:
    return (
        b"From: Dr Anne Martin <anne.martin@carnet.test>\r\nTo: Lea Durand <lea.durand@carnet.test>\r\n"
        b"Subject: =?utf-8?q?Compte_rendu_n=C2=B0_%d?=\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\n"
        b"Message-ID: <%d@carnet.test>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'
        b"Bonjour, voici le compte rendu %d.\r\n--b\r\nContent-Type: application/pdf; name=\"cr.pdf\"\r\n"
        b"Content-Disposition: attachment; filename=\"cr.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBERi0xLjQK\r\n--b--\r\n" % (n, n, n)
    )


async def best(label: str, action: Callable[[], Awaitable[Any]], runs: int = 5) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        await action()
        timings.append(time.perf_counter() - start)
    value = min(timings)
    print(f"  {label:<44} best {value * 1000:8.2f} ms   median {statistics.median(timings) * 1000:8.2f} ms")
    return value


async def new_mailbox(db: Database) -> int:
    async with db.transaction() as session:
        patient = Patient(ins="000000000000001", ins_oid="1.2.250.1.213.1.4.10", birth_name="Durand",
                          first_names="Léa", birth_date=date(1985, 5, 17), sex="F", birthplace_code="75056",
                          identity_status="VALI", created_at=utcnow())
        session.add(patient)
        await session.flush()
        mailbox = Mailbox(address="lea.durand@carnet.test", kind="PAT", display_name="Léa Durand",
                          display_key="lea durand", patient_id=patient.id, red_list=False, certificate_serial="01",
                          created_at=utcnow())
        session.add(mailbox)
        await session.flush()
        return mailbox.id


async def bulk_fill(db: Database, store: MailStore, mailbox_id: int, name: str, count: int) -> int:
    """A folder of ``count`` messages: a few real appends, then rows sharing their blobs, counters kept exact."""
    folder = await store.create_folder(mailbox_id, name)
    seeds = [await store.append(mailbox_id, name, message(n)) for n in range(5)]
    blobs = [summary.blob_id for summary in await store.summaries(folder.id, [seed.uid for seed in seeds])]
    size = len(message(0))
    now = datetime.now(UTC).replace(microsecond=0)
    uid = seeds[-1].uid + 1
    async with db.transaction() as session:
        rows = []
        for n in range(count - len(seeds)):
            rows.append({"folder_id": folder.id, "uid": uid + n, "modseq": uid + n + 10, "seen": n < count - 50,
                         "answered": False, "flagged": n % 10 == 0, "deleted": False, "draft": False,
                         "keywords": " $Label1 " if n % 7 == 0 else "", "internal_date": now, "size": size,
                         "blob_id": blobs[n % len(blobs)], "signature": {"status": "valid"}})
            if len(rows) == 5000:
                await session.execute(insert(models.Message.__table__), rows)
                rows = []
        if rows:
            await session.execute(insert(models.Message.__table__), rows)
        await session.execute(update(models.Folder.__table__).where(models.Folder.id == folder.id).values(
            uidnext=uid + count - len(seeds), highestmodseq=uid + count + 10, messages=count,
            unseen=50 + len(seeds), size=size * count))
    return folder.id


async def run(url: str, big: int) -> None:
    await upgrade(url)
    db = Database(url)
    store = MailStore(db)
    try:
        mailbox_id = await new_mailbox(db)
        await store.ensure_account(mailbox_id)
        print(f"backend: {db.engine.dialect.name}")

        start = time.perf_counter()
        for n in range(5000):
            await store.append(mailbox_id, "INBOX", message(n), ["\\Seen"] if n % 3 else [])
        elapsed = time.perf_counter() - start
        print(f"  append 5,000 distinct messages                 {elapsed:8.2f} s   ({5000 / elapsed:,.0f}/s)")
        inbox = (await store.get_folder(mailbox_id, "INBOX")).id
        uids = list(range(1, 5001))
        summaries = await store.summaries(inbox, uids)
        assert len(summaries) == 5000
        await best("summaries(5,000 UIDs)", lambda: store.summaries(inbox, uids))

        small = await bulk_fill(db, store, mailbox_id, "Small", 1000)
        large = await bulk_fill(db, store, mailbox_id, "Large", big)
        for label, folder_id, name in (("1,000", small, "Small"), (f"{big:,}", large, "Large")):
            await best(f"get_folder ({label})", lambda name=name: store.get_folder(mailbox_id, name), runs=20)
            await best(f"count_before_first_unseen ({label})",
                       lambda folder_id=folder_id: store.count_before_first_unseen(folder_id), runs=20)
            await best(f"snapshot ({label})", lambda folder_id=folder_id: store.snapshot(folder_id), runs=5)
    finally:
        await store.close()
        await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="", help="a PostgreSQL server URL; default: SQLite in a temp dir")
    parser.add_argument("--big", type=int, default=100_000)
    args = parser.parse_args()
    if not args.database_url:
        with tempfile.TemporaryDirectory() as directory:
            await run(async_url(f"sqlite:///{Path(directory) / 'bench.db'}"), args.big)
        return
    server = args.database_url.rstrip("/")
    name = f"carnet_store_bench_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(f"{server}/postgres")
    await connection.execute(f'CREATE DATABASE "{name}"')
    try:
        await run(async_url(f"{server}/{name}"), args.big)
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
