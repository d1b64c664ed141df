"""``carnet init``, ``carnet db upgrade`` and ``carnet demo``: bringing a data directory to life."""

from __future__ import annotations

import argparse
import asyncio

from carnet.config import Settings
from carnet.db import Database, upgrade


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from carnet.cli import add_common_options

    init = sub.add_parser(
        "init", help="create the data directory, the database and the certificate authority"
    )
    add_common_options(init)
    init.add_argument("--domain", help="the mail domain this instance serves")
    init.set_defaults(handler=cmd_init)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = db_sub.add_parser("upgrade", help="apply the database migrations")
    add_common_options(up)
    up.add_argument("--revision", default="head")
    up.set_defaults(handler=cmd_db_upgrade)

    demo = sub.add_parser("demo", help="initialise a demo domain, print what it holds and serve its PKI")
    add_common_options(demo)
    demo.add_argument("--domain", help="the demo mail domain (default from settings)")
    demo.add_argument("--no-serve", action="store_true", help="print and exit instead of serving /pki/")
    demo.set_defaults(handler=cmd_demo)


async def initialise(settings: Settings) -> tuple[bool, list[str]]:
    """Create the data directory, migrate the database, create the PKI once. Returns (created, report lines)."""
    from carnet.pki.authority import init_hierarchy

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    try:
        report = await init_hierarchy(db, settings)
    finally:
        await db.close()
    return report.created, report.lines()


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    created, lines = asyncio.run(initialise(settings))
    if not created:
        print(f"{settings.data_dir} is already initialised; nothing changed.")
    for line in lines:
        print(line)
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(upgrade(settings.sqlalchemy_url, args.revision))
    print(f"database at revision {args.revision}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.pki.demo import create_demo

    _created, lines = asyncio.run(initialise(settings))
    for line in lines:
        print(line)
    for line in asyncio.run(create_demo(settings)):
        print(line)
    if args.no_serve:
        return 0
    from carnet.pki.http import serve

    host, _, port = settings.listen.http.rpartition(":")
    print(f"serving CRLs, CA certificates and OCSP on http://{settings.listen.http}/pki/ (Ctrl-C stops)")
    serve(settings, host=host, port=int(port))
    return 0
