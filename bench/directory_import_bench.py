"""Bulk import benchmark: N generated professionals and patients, each with a mailbox and its own certificate.

Usage::

    .venv/bin/python bench/directory_import_bench.py [--rows 10000] [--key-type p256|rsa2048|rsa3072]
        [--jobs 4] [--database-url postgresql://postgres@127.0.0.1:5432/]

Half the rows are professionals (Luhn-valid RPPS, names drawn from a short list so addresses collide and get
numbered), half patients (valid NIR with their INS key, Corsican departments included). A fresh instance is created
(SQLite in a temporary directory, or a new database on the given PostgreSQL server), its CA initialised (not
timed), then ``carnet.directory.importer.import_csv`` runs and the rate is printed. Afterwards every mailbox is
checked to have a valid certificate naming its address: nothing is skipped to go faster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from carnet.config import async_url, load_settings
from carnet.db import Database, upgrade
from carnet.directory import store
from carnet.directory.identifiers import ins_key, luhn_check_digit
from carnet.directory.importer import import_csv
from carnet.pki import authority

FIRST = ["Anne", "Marie", "Jean", "Pierre", "Hélène", "Lucas", "Léa", "Chloé", "Noé", "Zoé", "François", "Inès"]
LAST = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau", "Müller"]
DEPARTMENTS = ["75", "69", "13", "2A", "2B", "33", "59", "99"]


def generate(rows: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    header = "type,id_type,id,first_name,last_name,profession,ins,birth_name,first_names,birth_date,sex,birthplace," \
             "status"
    lines = [header]
    for n in range(rows):
        if n % 2 == 0:
            body = f"10{n:08d}"
            rpps = body + str(luhn_check_digit(body))
            lines.append(f"professional,RPPS,{rpps},{rng.choice(FIRST)},{rng.choice(LAST)},10,,,,,,,")
        else:
            sex = rng.choice("12")
            body = f"{sex}{rng.randint(30, 99):02d}{rng.randint(1, 12):02d}{rng.choice(DEPARTMENTS)}{n % 1000:03d}" \
                   f"{n // 1000:03d}"
            ins = body + f"{ins_key(body):02d}"
            lines.append(f"patient,,,,,,{ins},{rng.choice(LAST)},{rng.choice(FIRST)},1980-01-01,"
                         f"{'M' if sex == '1' else 'F'},75056,VALI")
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="carnet-bench-"))
    pg_name = None
    if args.database_url:
        pg_name = f"carnet_bench_{uuid.uuid4().hex[:8]}"
        server = args.database_url.rstrip("/")
        connection = await asyncpg.connect(f"{server}/postgres")
        await connection.execute(f'CREATE DATABASE "{pg_name}"')
        await connection.close()
        database_url = f"{server}/{pg_name}"
    else:
        database_url = f"sqlite:///{workdir / 'carnet.db'}"
    settings = load_settings(domain="bench.test", data_dir=workdir / "var", database_url=database_url,
                             key_secret="bench secret")
    await upgrade(settings.sqlalchemy_url)
    db = Database(async_url(database_url))
    try:
        await authority.init_hierarchy(db, settings)
        document = generate(args.rows)
        backend = "PostgreSQL" if pg_name else "SQLite"
        print(f"{args.rows} rows, key type {args.key_type}, {args.jobs} parallel issuances, {backend}, "
              f"{os.cpu_count()} CPUs")
        with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
            task = bar.add_task("import", total=args.rows)
            started = time.perf_counter()
            result = await import_csv(db, settings, document, key_type=args.key_type, concurrency=args.jobs,
                                      progress=lambda done, total: bar.update(task, completed=done, total=total))
            elapsed = time.perf_counter() - started
        if result.rejected or result.imported != args.rows:
            print(f"unexpected: {result.imported} imported, rejected {result.rejected[:5]}", file=sys.stderr)
            return 1
        # Every mailbox has its valid certificate, naming its address.
        async with db.session() as session:
            boxes = await store.list_mailboxes(session, kind=None, include_red_list=True, include_disabled=True,
                                               offset=0, limit=args.rows + 10)
        records = {r.serial: r for r in await authority.list_certificates(db, profile="smime")}
        assert len(boxes) == args.rows
        assert all(records[b.certificate_serial].status() == "valid" and
                   records[b.certificate_serial].emails == (b.address,) for b in boxes)
        print(f"imported {result.imported} identities with {result.mailboxes} mailboxes and certificates in "
              f"{elapsed:.1f} s: {result.imported / elapsed:.0f} rows/s")
        return 0
    finally:
        await db.close()
        if pg_name:
            connection = await asyncpg.connect(f"{args.database_url.rstrip('/')}/postgres")
            await connection.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--key-type", default="p256", choices=("p256", "rsa2048", "rsa3072"))
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--database-url", help="PostgreSQL server URL (a database is created and dropped)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
