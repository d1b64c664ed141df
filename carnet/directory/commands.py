"""``carnet directory …`` and ``carnet trust …``: the directory and the trust space from the command line.

Passwords are read from standard input (``--password-stdin``, first line), never from the command line where other
users could see them (``ps``) or the shell history keep them. Long imports show a progress bar (rich).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from carnet.config import Settings
from carnet.db import Database

T = TypeVar("T")


def _run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    from carnet.cli import UsageError
    from carnet.directory.records import DirectoryError
    from carnet.pki.keys import PkiError

    async def main() -> T:
        db = Database(settings.sqlalchemy_url)
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except (DirectoryError, PkiError) as exc:
        from carnet.pki.authority import NotInitialised

        if isinstance(exc, NotInitialised):
            raise UsageError(f"{settings.data_dir} has no certificate authority yet: run `carnet init` first") from None
        raise UsageError(str(exc)) from None


def _password(args: argparse.Namespace, *, required: bool = False) -> str | None:
    from carnet.cli import UsageError

    if not getattr(args, "password_stdin", False):
        if required:
            raise UsageError("give the password on standard input with --password-stdin")
        return None
    line = sys.stdin.readline()
    if not line:
        raise UsageError("--password-stdin: nothing on standard input")
    return line.rstrip("\r\n")


def _print_mailbox(info: Any) -> None:
    print(f"{info.address}  {info.kind.value}  {info.display_name}  certificate {info.certificate_serial}")


# directory ------------------------------------------------------------------------------------------------------


def cmd_add_professional(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import auth, mailboxes
    from carnet.directory.records import ProfessionalInput

    id_type, value = ("RPPS", args.rpps) if args.rpps else ("ADELI", args.adeli)
    password = _password(args)
    if password is not None:
        auth.check_password_policy(password)
    data = ProfessionalInput(
        id_type, value, args.first_name, args.last_name, args.profession, args.specialty, args.organisation or []
    )

    async def work(db: Database) -> None:
        info = await mailboxes.add_professional(db, settings, data, red_list=args.red_list, key_type=args.key_type)
        if password is not None:
            await auth.set_password(db, info.address, password)
        _print_mailbox(info)

    _run(settings, work)
    return 0


def cmd_add_organisation(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import mailboxes
    from carnet.directory.records import OrganisationInput

    id_type, value = ("FINESS", args.finess) if args.finess else ("SIRET", args.siret)
    data = OrganisationInput(id_type, value, args.name, args.street, args.postal_code, args.city)

    async def work(db: Database) -> None:
        created = await mailboxes.add_organisation(
            db,
            settings,
            data,
            services=args.service or [],
            practice=args.practice,
            red_list=args.red_list,
            key_type=args.key_type,
        )
        print(f"organisation {data.id_type} {data.id_value} added")
        for info in created:
            _print_mailbox(info)

    _run(settings, work)
    return 0


def cmd_add_service(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import mailboxes
    from carnet.directory.records import MailboxKind

    async def work(db: Database) -> None:
        _print_mailbox(
            await mailboxes.add_service(
                db,
                settings,
                args.organisation,
                args.service,
                kind=MailboxKind.CAB if args.practice else MailboxKind.ORG,
                local_part=args.address,
                red_list=args.red_list,
                key_type=args.key_type,
            )
        )

    _run(settings, work)
    return 0


def cmd_add_patient(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import auth, mailboxes
    from carnet.directory.records import PatientInput

    password = _password(args)
    if password is not None:
        auth.check_password_policy(password)
    data = PatientInput(
        ins=args.ins,
        ins_oid=args.oid,
        birth_name=args.birth_name,
        first_names=args.first_names,
        birth_date=args.birth_date,
        sex=args.sex,
        birthplace_code=args.birthplace,
        identity_status=args.status,
    )

    async def work(db: Database) -> None:
        info = await mailboxes.add_patient(db, settings, data, red_list=args.red_list, key_type=args.key_type)
        if password is not None:
            await auth.set_password(db, info.address, password)
        _print_mailbox(info)

    _run(settings, work)
    return 0


def cmd_add_app(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import auth, mailboxes
    from carnet.directory.records import AppInput

    password = _password(args)
    if password is not None:
        auth.check_password_policy(password)

    async def work(db: Database) -> None:
        info = await mailboxes.add_app(
            db, settings, AppInput(args.name, args.publisher, args.contact), key_type=args.key_type
        )
        if password is not None:
            await auth.set_password(db, info.address, password)
        _print_mailbox(info)

    _run(settings, work)
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import mailboxes

    details = _run(settings, lambda db: mailboxes.describe(db, args.address))
    if args.json:
        print(json.dumps(details, indent=2, ensure_ascii=False))
    else:
        width = max(len(k) for k in details)
        for key, value in details.items():
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            print(f"{key:<{width}}  {shown}")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import mailboxes
    from carnet.directory.records import MailboxKind

    kind = MailboxKind(args.kind) if args.kind else None
    rows = _run(
        settings,
        lambda db: mailboxes.list_mailboxes(
            db,
            kind=kind,
            include_red_list=args.include_red_list,
            include_disabled=args.include_disabled,
            offset=args.offset,
            limit=args.limit,
        ),
    )
    for info in rows:
        flags = "".join((" [red list]" if info.red_list else "", "" if info.active else " [disabled]"))
        print(f"{info.address:<45} {info.kind.value}  {info.display_name}{flags}")
    print(f"{len(rows)} mailbox(es)")
    return 0


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory.records import MailboxKind, SearchQuery
    from carnet.directory.search import search

    query = SearchQuery(
        text=" ".join(args.query) or None,
        name=args.name,
        profession=args.profession,
        specialty=args.specialty,
        organisation=args.organisation,
        city=args.city,
        rpps=args.rpps,
        finess=args.finess,
        kind=MailboxKind(args.kind) if args.kind else None,
    )
    page = _run(settings, lambda db: search(db, query, offset=(args.page - 1) * args.per_page, limit=args.per_page))
    for hit in page.hits:
        where = ", ".join(p for p in (hit.organisation, hit.city) if p)
        print(f"{hit.address:<45} {hit.kind.value}  {hit.display_name}" + (f"  ({where})" if where else ""))
    print(f"{page.total} result(s); page {args.page}")
    return 0


def cmd_disable(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import mailboxes

    info = _run(settings, lambda db: mailboxes.disable_mailbox(db, settings, args.address))
    print(f"{info.address} disabled; certificate {info.certificate_serial} revoked (cessationOfOperation)")
    return 0


def cmd_renew(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import mailboxes

    info = _run(settings, lambda db: mailboxes.renew_certificate(db, settings, args.address, key_type=args.key_type))
    print(f"{info.address}: new certificate {info.certificate_serial}; the previous one is revoked (superseded)")
    return 0


def cmd_red_list(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import mailboxes

    info = _run(settings, lambda db: mailboxes.set_red_list(db, args.address, args.state == "on"))
    print(f"{info.address}: {'on' if info.red_list else 'off'} the red list")
    return 0


def cmd_set_password(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import auth

    password = _password(args, required=True)
    assert password is not None
    _run(settings, lambda db: auth.set_password(db, args.address, password))
    print(f"password of {args.address} set")
    return 0


def cmd_app_password(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import auth

    if args.app_action == "create":
        info, secret = _run(settings, lambda db: auth.create_app_password(db, args.address, args.label))
        print(f"app password {info.id} for {args.label!r} (shown once, store it in the device now):")
        print(secret)
    elif args.app_action == "list":
        for item in _run(settings, lambda db: auth.list_app_passwords(db, args.address)):
            state = f"revoked {item.revoked_at:%Y-%m-%d}" if item.revoked_at else "active"
            used = f"last used {item.last_used_at:%Y-%m-%d %H:%M}Z" if item.last_used_at else "never used"
            print(f"{item.id:>5}  {item.label:<30} created {item.created_at:%Y-%m-%d}  {used}  {state}")
    else:
        _run(settings, lambda db: auth.revoke_app_password(db, args.address, args.id))
        print(f"app password {args.id} of {args.address} revoked")
    return 0


def cmd_send_as(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import mailboxes

    if args.send_as_action == "grant":
        _run(settings, lambda db: mailboxes.grant_send_as(db, args.address, args.professional))
        print(f"{args.professional} may send as {args.address}")
    else:
        _run(settings, lambda db: mailboxes.revoke_send_as(db, args.address, args.professional))
        print(f"{args.professional} may no longer send as {args.address}")
    return 0


def cmd_add_representative(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import mailboxes

    until = date.fromisoformat(args.until) if args.until else None
    _run(
        settings,
        lambda db: mailboxes.add_representative(
            db, settings, args.patient, args.representative, args.role, valid_until=until
        ),
    )
    print(f"{args.representative} now acts for {args.patient} ({args.role})")
    return 0


def cmd_orphans(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import mailboxes

    records = _run(settings, lambda db: mailboxes.orphan_certificates(db, settings))
    for record in records:
        print(f"{record.serial}  {', '.join(record.emails)}  issued {record.not_before:%Y-%m-%d %H:%M}Z")
    if args.revoke and records:
        revoked = _run(settings, lambda db: mailboxes.revoke_orphan_certificates(db, settings))
        print(f"{len(revoked)} certificate(s) revoked (cessationOfOperation)")
    else:
        print(f"{len(records)} certificate(s) held by no mailbox" + ("; --revoke revokes them" if records else ""))
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from carnet.cli import UsageError
    from carnet.directory.importer import import_csv

    path = Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
        disable=args.quiet,
    ) as bar:
        task = bar.add_task("issuing certificates", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = _run(
            settings,
            lambda db: import_csv(
                db,
                settings,
                path,
                skip_invalid=args.skip_invalid,
                key_type=args.key_type,
                concurrency=args.jobs,
                progress=progress,
            ),
        )
    for rejected in result.rejected[:200]:
        print(f"line {rejected.line}: {rejected.reason}", file=sys.stderr)
    if len(result.rejected) > 200:
        print(f"… and {len(result.rejected) - 200} more rejected rows", file=sys.stderr)
    if not result.committed:
        raise UsageError(
            f"{len(result.rejected)} of {result.rows} rows rejected: nothing imported "
            "(fix them, or use --skip-invalid to import the valid rows)"
        )
    print(
        f"{result.imported} identities imported, {result.mailboxes} mailboxes with their certificates, "
        f"{result.already_present} already present, {len(result.rejected)} rejected "
        f"({result.seconds:.1f} s, {result.rows_per_second:.0f} rows/s)"
    )
    return 1 if result.rejected else 0


# trust ------------------------------------------------------------------------------------------------------------


def cmd_trust_add(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import trustspace

    bundle = Path(args.ca_bundle).read_bytes()
    info = _run(
        settings,
        lambda db: trustspace.add_operator(
            db,
            settings,
            domain=args.operator_domain,
            name=args.name,
            ca_bundle=bundle,
            relay_endpoints=args.relay or [],
            directory_url=args.directory_url,
            legacy_crypto=args.legacy_crypto,
        ),
    )
    print(f"{info.domain} ({info.name}) trusted with {len(info.ca_certificates)} CA certificate(s)")
    return 0


def cmd_trust_list(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import trustspace

    for op in _run(settings, trustspace.list_operators):
        legacy = " legacy-crypto" if op.legacy_crypto else ""
        print(
            f"{op.domain:<35} {op.name}  CAs: {len(op.ca_certificates)}  directory: {op.directory_url or '-'}  "
            f"relays: {', '.join(op.relay_endpoints) or '-'}  ({op.source}){legacy}"
        )
    return 0


def cmd_trust_remove(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import trustspace

    _run(settings, lambda db: trustspace.remove_operator(db, args.operator_domain))
    print(f"{args.operator_domain} removed from the trust space")
    return 0


def cmd_trust_export(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import trustspace

    async def work(db: Database) -> tuple[bytes, bytes]:
        xml = await trustspace.export_whitelist(
            db, settings, name=args.name, directory_url=args.directory_url, relay_endpoints=args.relay
        )
        return xml, await trustspace.export_bundle(db)

    xml, bundle = _run(settings, work)
    Path(args.whitelist).write_bytes(xml)
    Path(args.bundle).write_bytes(bundle)
    print(f"whitelist written to {args.whitelist}, trust bundle to {args.bundle}")
    return 0


def cmd_trust_import(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.directory import trustspace

    xml, bundle = Path(args.whitelist).read_bytes(), Path(args.bundle).read_bytes()
    report = _run(
        settings,
        lambda db: trustspace.import_peer(
            db,
            settings,
            xml,
            bundle,
            publisher=args.publisher,
            directory_url=args.directory_url,
            transitive=args.transitive,
        ),
    )
    print(
        f"trusted {', '.join(report.imported)} (published by {report.publisher}) with "
        f"{len(report.ca_subjects)} CA certificate(s)"
    )
    if report.not_trusted:
        print(f"also listed, not trusted (trust is not transitive): {', '.join(report.not_trusted)}")
    return 0


# Registration ------------------------------------------------------------------------------------------------------


def parser(
    parent: Any, name: str, handler: Callable[[argparse.Namespace, Settings], int], help_: str
) -> argparse.ArgumentParser:
    from carnet.cli import add_common_options

    p: argparse.ArgumentParser = parent.add_parser(name, help=help_)
    add_common_options(p)
    p.set_defaults(handler=handler)
    return p


def key_type(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key-type",
        choices=("rsa2048", "rsa3072", "p256"),
        help="key of the mailbox certificate (default: settings pki.default_key_type)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``carnet directory …``."""

    directory = sub.add_parser("directory", help="identities, mailboxes and their certificates")
    dsub = directory.add_subparsers(dest="directory_command", metavar="ACTION", required=True)

    p = parser(dsub, "add-professional", cmd_add_professional, "add a professional and their PER mailbox")
    ident = p.add_mutually_exclusive_group(required=True)
    ident.add_argument("--rpps", help="RPPS number (11 digits)")
    ident.add_argument("--adeli", help="ADELI number (9 digits)")
    p.add_argument("--first-name", required=True)
    p.add_argument("--last-name", required=True)
    p.add_argument("--profession", required=True, help="TRE_G15 profession code, e.g. 10 (médecin)")
    p.add_argument("--specialty", help="TRE_R38 specialty code, e.g. SM26")
    p.add_argument("--organisation", action="append", metavar="IDNST", help="organisation worked for (repeatable)")
    p.add_argument("--red-list", action="store_true", help="hide the mailbox from search and export")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    key_type(p)

    p = parser(dsub, "add-organisation", cmd_add_organisation, "add an organisation and its service mailboxes")
    ident = p.add_mutually_exclusive_group(required=True)
    ident.add_argument("--finess", help="FINESS number (9 digits)")
    ident.add_argument("--siret", help="SIRET number (14 digits)")
    p.add_argument("--name", required=True)
    p.add_argument("--street")
    p.add_argument("--postal-code")
    p.add_argument("--city")
    p.add_argument("--service", action="append", help="a service with an ORG mailbox (repeatable)")
    p.add_argument("--practice", action="store_true", help="a practice: give it a CAB mailbox")
    p.add_argument("--red-list", action="store_true")
    key_type(p)

    p = parser(dsub, "add-service", cmd_add_service, "add an ORG (or CAB) mailbox to an organisation")
    p.add_argument("organisation", metavar="IDNST")
    p.add_argument("service")
    p.add_argument("--address", metavar="LOCAL_PART", help="explicit local part instead of the service name")
    p.add_argument("--practice", action="store_true", help="a CAB mailbox")
    p.add_argument("--red-list", action="store_true")
    key_type(p)

    p = parser(dsub, "add-patient", cmd_add_patient, "add a patient (qualified INS) and their mailbox")
    p.add_argument("--ins", required=True, help="INS matricule (NIR or NIA, 15 characters)")
    p.add_argument("--oid", default="1.2.250.1.213.1.4.8", help="INS OID (.8 NIR, .9 NIA; .10/.11 in test mode)")
    p.add_argument("--birth-name", required=True)
    p.add_argument("--first-names", required=True, help="birth first names, space separated")
    p.add_argument("--birth-date", required=True, help="YYYY-MM-DD")
    p.add_argument("--sex", required=True, choices=("M", "F", "I"))
    p.add_argument("--birthplace", required=True, help="INSEE code of the birthplace (99xxx abroad)")
    p.add_argument("--status", required=True, help="identity status; only VALI gets a mailbox")
    p.add_argument("--red-list", action="store_true")
    p.add_argument("--password-stdin", action="store_true")
    key_type(p)

    p = parser(dsub, "add-app", cmd_add_app, "add an app and its APP mailbox")
    p.add_argument("--name", required=True)
    p.add_argument("--publisher", required=True, metavar="IDNST")
    p.add_argument("--contact", required=True, help="e-mail address or https:// URL")
    p.add_argument("--password-stdin", action="store_true")
    key_type(p)

    p = parser(dsub, "show", cmd_show, "show a mailbox and its owner")
    p.add_argument("address")
    p.add_argument("--json", action="store_true")

    p = parser(dsub, "list", cmd_list, "list mailboxes")
    p.add_argument("--kind", choices=("PER", "ORG", "APP", "CAB", "PAT"))
    p.add_argument("--include-red-list", action="store_true")
    p.add_argument("--include-disabled", action="store_true")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--limit", type=int, default=1000)

    p = parser(dsub, "search", cmd_search, "search the directory as its users do")
    p.add_argument("query", nargs="*")
    for option in ("name", "profession", "specialty", "organisation", "city", "rpps", "finess"):
        p.add_argument(f"--{option}")
    p.add_argument("--kind", choices=("PER", "ORG", "APP", "CAB"))
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--per-page", type=int, default=20)

    p = parser(dsub, "disable", cmd_disable, "disable a mailbox and revoke its certificate")
    p.add_argument("address")

    p = parser(dsub, "renew", cmd_renew, "issue a new certificate and revoke the old one (superseded)")
    p.add_argument("address")
    key_type(p)

    p = parser(dsub, "red-list", cmd_red_list, "put a mailbox on or off the red list")
    p.add_argument("address")
    p.add_argument("state", choices=("on", "off"))

    p = parser(dsub, "set-password", cmd_set_password, "set a mailbox password (from standard input)")
    p.add_argument("address")
    p.add_argument("--password-stdin", action="store_true", required=True)

    app_password = dsub.add_parser("app-password", help="per-device passwords")
    asub = app_password.add_subparsers(dest="app_action", metavar="ACTION", required=True)
    p = parser(asub, "create", cmd_app_password, "create an app password (shown once)")
    p.add_argument("address")
    p.add_argument("--label", required=True, help="the device, e.g. 'Thunderbird, office PC'")
    p = parser(asub, "list", cmd_app_password, "list app passwords")
    p.add_argument("address")
    p = parser(asub, "revoke", cmd_app_password, "revoke an app password")
    p.add_argument("address")
    p.add_argument("id", type=int)

    send_as = dsub.add_parser("send-as", help="who may send as an organisation mailbox")
    ssub = send_as.add_subparsers(dest="send_as_action", metavar="ACTION", required=True)
    for action in ("grant", "revoke"):
        p = parser(ssub, action, cmd_send_as, f"{action} a professional the right to send as an ORG/CAB mailbox")
        p.add_argument("address")
        p.add_argument("professional", help="IDNPS or PER address")

    p = parser(dsub, "add-representative", cmd_add_representative, "link a legal representative to a patient")
    p.add_argument("patient", help="INS or address of the patient")
    p.add_argument("representative", help="INS or address of the representative")
    p.add_argument("--role", required=True, choices=("parent", "guardian", "curator"))
    p.add_argument("--until", help="end of the representation, YYYY-MM-DD (e.g. the 18th birthday)")

    p = parser(dsub, "orphans", cmd_orphans, "list (and revoke) certificates of our addresses held by no mailbox")
    p.add_argument("--revoke", action="store_true", help="revoke them")

    p = parser(dsub, "import", cmd_import, "import professionals, organisations and patients from CSV")
    p.add_argument("file")
    p.add_argument("--skip-invalid", action="store_true", help="import the valid rows even if some are rejected")
    p.add_argument("--jobs", type=int, default=4, help="certificates issued in parallel (default 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    key_type(p)


def register_trust(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trust = sub.add_parser("trust", help="the trust space: operators we exchange mail with")
    tsub = trust.add_subparsers(dest="trust_command", metavar="ACTION", required=True)
    p = parser(tsub, "add", cmd_trust_add, "trust an operator")
    p.add_argument("operator_domain", metavar="DOMAIN", help="the operator's mail domain")
    p.add_argument("--name", required=True)
    p.add_argument("--ca-bundle", required=True, metavar="FILE", help=".p7b or PEM CA certificates")
    p.add_argument("--relay", action="append", metavar="HOST:PORT")
    p.add_argument("--directory-url", metavar="URL")
    p.add_argument("--legacy-crypto", action="store_true", help="the operator needs AES-CBC/PKCS#1 v1.5")
    parser(tsub, "list", cmd_trust_list, "list the trust space")
    p = parser(tsub, "remove", cmd_trust_remove, "stop trusting an operator")
    p.add_argument("operator_domain", metavar="DOMAIN")
    p = parser(tsub, "export", cmd_trust_export, "write our whitelist (XML) and trust bundle (.p7b)")
    p.add_argument("--whitelist", required=True, metavar="FILE")
    p.add_argument("--bundle", required=True, metavar="FILE")
    p.add_argument("--name", help="operator name to publish (default: the domain)")
    p.add_argument("--directory-url", metavar="URL", help="our public directory URL (default https://DOMAIN/directory)")
    p.add_argument("--relay", action="append", metavar="HOST:PORT", help="our relay endpoints (default DOMAIN:25)")
    p = parser(tsub, "import", cmd_trust_import, "trust a peer from its whitelist and trust bundle")
    p.add_argument("--whitelist", required=True, metavar="FILE")
    p.add_argument("--bundle", required=True, metavar="FILE")
    p.add_argument("--publisher", metavar="DOMAIN", help="the publishing domain, if the whitelist does not say")
    p.add_argument("--directory-url", metavar="URL", help="override the peer's directory URL")
    p.add_argument("--transitive", action="store_true", help="trust every listed domain (authority-issued list)")
