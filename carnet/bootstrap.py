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

    demo = sub.add_parser("demo", help="initialise a demo platform, print how to use it and serve it (carnet serve)")
    add_common_options(demo)
    demo.add_argument("--domain", help="the demo mail domain (default from settings)")
    demo.add_argument("--no-serve", action="store_true", help="print and exit instead of serving")
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


DEMO_PASSWORD = "demo-password"  # noqa: S105  (printed for the demo; also in the README)


async def create_demo_platform(settings: Settings) -> list[str]:
    """The demo directory (once): an organisation with its secretariat and lab mailboxes, two professionals, a
    patient, all with the password :data:`DEMO_PASSWORD`; returns printable lines (never key material)."""
    from datetime import date

    from carnet.directory import auth, mailboxes
    from carnet.directory.identifiers import ins_key, luhn_check_digit
    from carnet.directory.records import OrganisationInput, PatientInput, ProfessionalInput
    from carnet.pki.authority import settings_for_hierarchy

    db = Database(settings.sqlalchemy_url)
    try:
        settings = await settings_for_hierarchy(db, settings)
        domain = settings.domain

        def luhn(stem: str) -> str:
            return stem + str(luhn_check_digit(stem))

        finess = luhn("42000123")
        nir = "2850575056042"
        nir += f"{ins_key(nir):02d}"
        lines = [f"Demo platform of {domain} (password of every mailbox: {DEMO_PASSWORD}):"]
        if await mailboxes.lookup_mailbox(db, f"anne.martin@{domain}") is None:
            organisation = OrganisationInput("FINESS", finess, "Clinique de demonstration", "1 rue de la Paix", "42000",
                                             "Saint-Etienne")
            await mailboxes.add_organisation(db, settings, organisation)
            secretariat = await mailboxes.add_service(db, settings, "1" + finess, "Secretariat de cardiologie",
                                                      local_part="secretariat.cardiologie")
            await mailboxes.add_service(db, settings, "1" + finess, "Laboratoire", local_part="laboratoire")
            anne = await mailboxes.add_professional(
                db, settings, ProfessionalInput("RPPS", luhn("1000123456"), "Anne", "Martin", "10", "SM04",
                                                ["1" + finess]))
            await mailboxes.add_professional(
                db, settings, ProfessionalInput("RPPS", luhn("1000765432"), "Jean", "Dupont", "10", None, []))
            await mailboxes.add_patient(
                db, settings, PatientInput(nir, "Durand", "Camille", date(1985, 7, 5), "F", "75056"))
            await mailboxes.grant_send_as(db, secretariat.address, anne.address)
            for info in await mailboxes.list_mailboxes(db):
                await auth.set_password(db, info.address, DEMO_PASSWORD)
        for info in await mailboxes.list_mailboxes(db):
            lines.append(f"  {info.address:<48} {info.kind.value:<4} {info.display_name}")
    finally:
        await db.close()
    return lines


def demo_instructions(settings: Settings) -> list[str]:
    from carnet.pki.authority import ca_bundle_path

    listen = settings.listen
    lab = next((n.sender for n in settings.mta.trusted_networks), "laboratoire")
    lab = lab if "@" in lab else f"{lab}@{settings.domain}"
    return [
        f"SMTP submission  {listen.smtp_submission} (STARTTLS) and {listen.smtp_submissions} (TLS), AUTH PLAIN/LOGIN",
        f"IMAP             {listen.imap} (STARTTLS) and {listen.imaps} (TLS)",
        f"Trusted network  {listen.smtp_trusted}: loopback clients send without AUTH as {lab}",
        f"Relay            {listen.smtp_relay} (operators of the trust space, mutual TLS)",
        f"Webmail          http://{listen.http}/webmail/ — patients sign in with their INS number or their address, "
        "professionals with their address",
        f"HTTP             serving CRLs, CA certificates and OCSP on http://{listen.http}/pki/ and the directory on "
        f"http://{listen.http}/directory/",
        f"TLS: the servers present a certificate for {settings.domain}; trust {ca_bundle_path(settings)} in your mail "
        "client (the CA file) and connect by that name (add it to /etc/hosts for 127.0.0.1 if it does not resolve).",
        "S/MIME in your mail client (optional: carnet signs for you): carnet pki export-p12 "
        f"--data {settings.data_dir} --email ADDRESS -o ADDRESS.p12 --password-stdin",
    ]


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    _created, lines = asyncio.run(initialise(settings))
    for line in lines:
        print(line)
    for line in asyncio.run(create_demo_platform(settings)):
        print(line)
    for line in demo_instructions(settings):
        print(line)
    if args.no_serve:
        return 0
    from carnet.serve import serve

    print("Serving (Ctrl-C or SIGTERM stops)...", flush=True)
    try:
        asyncio.run(serve(settings, announce=lambda line: print(line, flush=True)))
    except KeyboardInterrupt:
        return 130
    return 0
