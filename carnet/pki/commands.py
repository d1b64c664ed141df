"""``carnet pki …``: issue, revoke, CRL, PKCS#12 export, listing and the PKI web server.

Every command works on the settings' database and needs an initialised instance (``carnet init``). Output never
contains a private key: keys leave the platform only inside a password-protected PKCS#12 file (RFC 7292) encrypted
with PBES2 (PBKDF2-HMAC-SHA-256, AES-256-CBC, RFC 8018) and integrity-protected by an HMAC-SHA-256 MAC — the
format current Thunderbird, mutt/gpgsm, Outlook and OpenSSL 3 import. The password is read from standard input
(``--password-stdin``), never from the command line where other users could see it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from carnet.cli import UsageError, add_common_options
from carnet.config import Settings
from carnet.db import Database
from carnet.pki import authority, revocation
from carnet.pki.keys import KEY_TYPES, PkiError
from carnet.pki.profiles import AUTHORITY_NAMES, ISSUING_CAS, PROFILES

T = TypeVar("T")

#: PBKDF2 iterations for the PKCS#12 key and certificate bags and the MAC (OWASP 2023: 600 000 for SHA-256).
P12_KDF_ROUNDS: Final = 600_000
MIN_PASSWORD_LENGTH: Final = 8


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``carnet pki`` and its actions to the command line."""
    pki = sub.add_parser("pki", help="certificate authority: issue, revoke, CRL, PKCS#12, OCSP server")
    actions = pki.add_subparsers(dest="pki_command", metavar="ACTION", required=True)

    issue = actions.add_parser("issue", help="issue a certificate (S/MIME, TLS server or TLS client)")
    add_common_options(issue)
    issue.add_argument("--profile", required=True, help=f"one of {', '.join(PROFILES)}")
    issue.add_argument("--email", action="append", default=[], metavar="ADDR", help="rfc822Name (S/MIME; repeatable)")
    issue.add_argument("--dns", action="append", default=[], metavar="NAME", help="dNSName (TLS; repeatable)")
    issue.add_argument("--name", metavar="CN", help="subject common name (default: the first address or name)")
    issue.add_argument("--national-id", metavar="ID", help='national identifier, e.g. "8" + RPPS (S/MIME)')
    issue.add_argument("--organisation", metavar="O", help="subject organisation")
    issue.add_argument("--ca", help=f"issuing CA, one of {', '.join(ISSUING_CAS)} (default: by profile)")
    issue.add_argument("--key", help=f"key type: {', '.join(KEY_TYPES)} (default from settings)")
    issue.add_argument("--out-dir", metavar="DIR", type=Path, help="where to write PEM files (default DATA/pki/issued)")
    issue.add_argument("--p12", metavar="FILE", type=Path, help="also write key, certificate and chain as PKCS#12")
    issue.add_argument("--password-stdin", action="store_true", help="read the PKCS#12 password from stdin")
    issue.add_argument("--discard-key", action="store_true", help="do not keep the private key (requires --p12)")
    issue.set_defaults(handler=cmd_issue)

    revoke = actions.add_parser("revoke", help="revoke a certificate and re-issue its CA's CRL")
    add_common_options(revoke)
    revoke.add_argument("serial", metavar="SERIAL", help="serial number, hexadecimal")
    revoke.add_argument("--reason", default="unspecified", metavar="R", help="RFC 5280 reason, e.g. keyCompromise")
    revoke.set_defaults(handler=cmd_revoke)

    crl = actions.add_parser("crl", help="issue a fresh CRL of a CA")
    add_common_options(crl)
    crl.add_argument("ca", metavar="CA-NAME", help=f"one of {', '.join(AUTHORITY_NAMES)}")
    crl.add_argument("-o", "--output", type=Path, metavar="FILE", help="also write it here (PEM if FILE ends in .pem)")
    crl.set_defaults(handler=cmd_crl)

    export = actions.add_parser("export-p12", help="export key, certificate and chain as password-protected PKCS#12")
    add_common_options(export)
    export.add_argument("serial", nargs="?", metavar="SERIAL", help="serial number, hexadecimal")
    export.add_argument("--email", metavar="ADDR", help="the newest valid S/MIME certificate of this address")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    export.add_argument("--password-stdin", action="store_true", help="read the PKCS#12 password from stdin")
    export.set_defaults(handler=cmd_export_p12)

    listing = actions.add_parser("list", help="list issued certificates")
    add_common_options(listing)
    listing.add_argument("--revoked", action="store_true", help="only revoked certificates")
    listing.set_defaults(handler=cmd_list)

    serve = actions.add_parser("serve-http", help="serve OCSP, CRLs and CA certificates under /pki/")
    add_common_options(serve)
    serve.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default settings listen.http)")
    serve.set_defaults(handler=cmd_serve_http)


# Plumbing -------------------------------------------------------------------------------------------------------


def _database_exists(settings: Settings) -> bool:
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return True
    return Path(url.database).exists()


def _run(settings: Settings, work: Callable[[Database, Settings], Awaitable[T]]) -> T:
    """Run ``work`` on the settings' database, once the instance is known to be initialised."""
    not_initialised = f"no certificate authority in {settings.data_dir}: run `carnet init` first"
    if not _database_exists(settings):
        raise UsageError(not_initialised)

    async def main() -> T:
        db = Database(settings.sqlalchemy_url)
        try:
            try:
                initialised = await authority.is_initialised(db)
            except SQLAlchemyError:
                initialised = False
            if not initialised:
                raise UsageError(not_initialised)
            return await work(db, await authority.settings_for_hierarchy(db, settings))
        except PkiError as exc:
            raise UsageError(str(exc)) from None
        finally:
            await db.close()

    return asyncio.run(main())


def _read_password(args: argparse.Namespace) -> bytes:
    if not args.password_stdin:
        raise UsageError("the PKCS#12 password is read from standard input: add --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the PKCS#12 password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password.encode()


def pkcs12_bytes(credential: authority.IssuedCredential, password: bytes, friendly_name: str) -> bytes:
    """PKCS#12 (RFC 7292) with key, certificate and chain: PBES2/PBKDF2-SHA-256/AES-256-CBC, HMAC-SHA-256 MAC."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(P12_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )
    return pkcs12.serialize_key_and_certificates(
        name=friendly_name.encode(),
        key=credential.key,
        cert=credential.certificate,
        cas=credential.chain,
        encryption_algorithm=encryption,
    )


def _friendly_name(certificate: x509.Certificate) -> str:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    names = san.get_values_for_type(x509.RFC822Name) or san.get_values_for_type(x509.DNSName)
    return names[0] if names else authority.serial_hex(certificate.serial_number)


def _write_private(path: Path, data: bytes) -> None:
    try:
        authority.write_file(path, data, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def _write_public(path: Path, data: bytes) -> None:
    try:
        authority.write_file(path, data, 0o644)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


# Handlers -------------------------------------------------------------------------------------------------------


def cmd_issue(args: argparse.Namespace, settings: Settings) -> int:
    request = authority.IssueRequest(
        profile=args.profile,
        common_name=args.name or "",
        emails=list(args.email),
        dns_names=list(args.dns),
        national_id=args.national_id,
        organisation=args.organisation,
        key_type=args.key,
        authority=args.ca,
        keep_key=not args.discard_key,
    )
    if args.discard_key and not args.p12:
        raise UsageError("--discard-key needs --p12: the key would be lost")
    password = _read_password(args) if args.p12 else None
    authority.validate_request(request, settings)  # fail on bad input before touching the database

    async def work(db: Database, settings: Settings) -> authority.IssuedCredential:
        return await authority.issue(db, settings, request)

    credential = _run(settings, work)
    out_dir = args.out_dir or authority.pki_dir(settings) / "issued"
    cert_path, chain_path = out_dir / f"{credential.serial}.pem", out_dir / f"{credential.serial}.chain.pem"
    _write_public(cert_path, authority.pem(credential.certificate))
    _write_public(chain_path, authority.pem(*credential.chain))
    names = [*request.emails, *request.dns_names]
    print(f"issued {credential.profile} certificate {credential.serial} by CA {credential.authority}")
    print(f"  subject:     {authority.subject_text(credential.certificate.subject)}")
    print(f"  names:       {', '.join(names)}")
    print(f"  valid until: {credential.certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z")
    print(f"  SHA-256:     {authority.display_fingerprint(credential.fingerprint)}")
    print(f"  certificate: {cert_path}")
    print(f"  chain:       {chain_path} (trust anchor: {authority.pki_dir(settings) / 'root.pem'})")
    if args.p12 and password is not None:
        _write_private(args.p12, pkcs12_bytes(credential, password, _friendly_name(credential.certificate)))
        print(f"  PKCS#12:     {args.p12} (key, certificate and chain, password-protected)")
    if not request.keep_key:
        print("  the private key was not kept by the platform")
    return 0


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def work(db: Database, settings: Settings) -> authority.CertificateRecord:
        return await authority.revoke(db, settings, args.serial, args.reason)

    record = _run(settings, work)
    print(f"revoked {record.profile} certificate {record.serial} ({record.revocation_reason})")
    print(f"  CRL of CA {record.authority} re-issued: {revocation.crl_path(settings, record.authority)}")
    return 0


def cmd_crl(args: argparse.Namespace, settings: Settings) -> int:
    async def work(db: Database, settings: Settings) -> x509.CertificateRevocationList:
        return await revocation.generate_crl(db, settings, args.ca)

    crl = _run(settings, work)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    next_update = f"{crl.next_update_utc:%Y-%m-%d %H:%M:%S}Z"
    print(f"CRL of CA {args.ca}: number {number}, {len(crl)} revoked, next update {next_update}")
    print(f"  written to {revocation.crl_path(settings, args.ca)}")
    if args.output:
        encoding = serialization.Encoding.PEM if args.output.suffix == ".pem" else serialization.Encoding.DER
        _write_public(args.output, crl.public_bytes(encoding))
        print(f"  and to {args.output}")
    return 0


def cmd_export_p12(args: argparse.Namespace, settings: Settings) -> int:
    if bool(args.serial) == bool(args.email):
        raise UsageError("name the certificate by SERIAL or by --email ADDR (one of them)")
    password = _read_password(args)

    async def work(db: Database, settings: Settings) -> authority.IssuedCredential:
        serial = args.serial
        if args.email:
            usable = [
                r for r in await authority.find_by_email(db, args.email)
                if r.status() == "valid" and r.key_held and r.profile == "smime"
            ]
            if not usable:
                raise UsageError(f"no valid S/MIME certificate with a held key for {args.email}")
            serial = usable[0].serial
        return await authority.load_credential(db, settings, serial)

    credential = _run(settings, work)
    friendly = args.email.strip().lower() if args.email else _friendly_name(credential.certificate)
    _write_private(args.output, pkcs12_bytes(credential, password, friendly))
    print(f"exported certificate {credential.serial} ({friendly}) with its key and chain to {args.output}")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def work(db: Database, _settings: Settings) -> list[authority.CertificateRecord]:
        return await authority.list_certificates(db, revoked=True if args.revoked else None)

    records = _run(settings, work)
    if not records:
        print("no revoked certificates" if args.revoked else "no certificates")
        return 0
    print(f"{'SERIAL':<40}  {'PROFILE':<10}  {'CA':<13}  {'STATUS':<24}  {'NOT AFTER':<10}  NAMES")
    for r in records:
        names = ", ".join(r.emails or r.dns_names) or r.common_name
        status = r.status() if r.revoked_at is None else f"revoked ({r.revocation_reason})"
        print(f"{r.serial:<40}  {r.profile:<10}  {r.authority:<13}  {status:<24}  {r.not_after:%Y-%m-%d}  {names}")
    return 0


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as (host, port)."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen expects HOST:PORT, got {value!r}")
    return host, int(port)


def cmd_serve_http(args: argparse.Namespace, settings: Settings) -> int:
    from carnet.pki.http import serve

    host, port = parse_listen(args.listen or settings.listen.http)

    async def work(_db: Database, settings: Settings) -> Settings:
        return settings

    settings = _run(settings, work)
    print(f"serving OCSP, CRLs and CA certificates on http://{host}:{port}/pki/ (Ctrl-C stops)")
    serve(settings, host=host, port=port)
    return 0
