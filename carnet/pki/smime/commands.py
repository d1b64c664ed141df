"""``carnet smime``: sign, verify, encrypt, decrypt and open S/MIME messages from the command line.

Each sub-command reads an RFC 5322 message from a file argument or stdin and writes to ``-o FILE`` or stdout,
bytes for bytes. ``verify`` and ``open`` print the :class:`~.result.SmimeResult` as JSON and exit 0 only when the
message is valid, 1 otherwise; ``decrypt`` exits 1 when the message cannot be decrypted. Usage errors (missing
files, unreadable keys, bad options) are one line on stderr and exit status 2.

Standards: RFC 8551 (S/MIME 4.0 message formats), RFC 5652 / RFC 5083 (CMS), RFC 8550 (certificate handling);
see :mod:`carnet.pki.smime`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NoReturn

from cryptography.hazmat.primitives.serialization import Encoding

from carnet.cli import UsageError, add_common_options
from carnet.config import Settings
from carnet.pki.smime.credentials import SignerCredential
from carnet.pki.smime.envelope import DecryptError, DecryptionKey, decrypt_message, encrypt_message
from carnet.pki.smime.loading import (
    KeyAndCertificates,
    LoadError,
    load_certificate,
    load_certificate_files,
    load_certificates,
    load_crl_files,
    load_pkcs12,
    load_private_key,
    read_file,
)
from carnet.pki.smime.open import open_message
from carnet.pki.smime.result import SmimeResult
from carnet.pki.smime.sign import sign_message
from carnet.pki.smime.validation import ChainValidator, TrustStore
from carnet.pki.smime.verify import verify_message

__all__ = ["register"]

_DIGESTS = ("sha256", "sha384", "sha512")


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit status 2 (the ``carnet`` convention, see :mod:`carnet.cli`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"carnet: {self.prog}: {message}\n")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``carnet smime`` and its sub-commands to the ``carnet`` parser."""
    smime = subparsers.add_parser(
        "smime",
        help="sign, verify, encrypt, decrypt and open S/MIME messages",
        description="S/MIME 4.0 (RFC 8551) messages: sign, verify, encrypt, decrypt, open.",
    )
    add_common_options(smime)
    commands = smime.add_subparsers(
        dest="smime_command", metavar="SUBCOMMAND", required=True, parser_class=_OneLineParser
    )

    sign = commands.add_parser("sign", help="sign a message (multipart/signed, or opaque with --opaque)")
    _signer_options(sign)
    sign.add_argument("--opaque", action="store_true", help="application/pkcs7-mime signed-data instead")
    sign.add_argument("--digest", choices=_DIGESTS, default="sha256", help="digest algorithm (default sha256)")
    sign.add_argument("--pss", action="store_true", help="RSASSA-PSS instead of PKCS#1 v1.5 (RSA keys)")
    _io_options(sign)
    sign.set_defaults(handler=_sign)

    encrypt = commands.add_parser("encrypt", help="encrypt a message for one or more recipients")
    encrypt.add_argument(
        "--recipient",
        action="append",
        required=True,
        metavar="CERT",
        help="recipient certificate, PEM (a bundle counts as several recipients) or DER; repeatable",
    )
    encrypt.add_argument(
        "--legacy", action="store_true", help="EnvelopedData, AES-256-CBC, RSA PKCS#1 v1.5 (no integrity protection)"
    )
    _io_options(encrypt)
    encrypt.set_defaults(handler=_encrypt)

    decrypt = commands.add_parser("decrypt", help="decrypt an enveloped message")
    _decryption_key_options(decrypt, repeatable=False)
    _io_options(decrypt)
    decrypt.set_defaults(handler=_decrypt)

    verify = commands.add_parser("verify", help="verify a signed message; print a JSON report")
    _validation_options(verify)
    _io_options(verify, report=True)
    verify.set_defaults(handler=_verify)

    opener = commands.add_parser("open", help="decrypt and verify every layer of a message; print a JSON report")
    _validation_options(opener)
    _decryption_key_options(opener, repeatable=True)
    _io_options(opener, report=True)
    opener.set_defaults(handler=_open)

    for parser in (sign, encrypt, decrypt, verify, opener):
        add_common_options(parser)


# --------------------------------------------------------------------------------------------------------------------
# Options


def _io_options(parser: argparse.ArgumentParser, *, report: bool = False) -> None:
    parser.add_argument("input", nargs="?", metavar="IN", help="the message file (default: stdin)")
    parser.add_argument(
        "-o", "--output", metavar="OUT", help="write the " + ("JSON report" if report else "result") + " here"
    )
    if report:
        parser.add_argument("--content", metavar="FILE", help="also write the innermost content (MIME entity) here")


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the key or PKCS#12 password from the first line of stdin (the message must then be a file)",
    )


def _signer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", metavar="FILE", help="private key, PEM or DER (PKCS#8, PKCS#1, SEC 1)")
    parser.add_argument("--cert", metavar="FILE", help="signer certificate, PEM or DER")
    parser.add_argument("--chain", action="append", default=[], metavar="FILE", help="intermediates to include")
    parser.add_argument("--p12", metavar="FILE", help="PKCS#12 file with key, certificate and chain")
    _password_option(parser)


def _decryption_key_options(parser: argparse.ArgumentParser, *, repeatable: bool) -> None:
    action = "append" if repeatable else "store"
    pairs = " (repeatable; keys and certificates pair up in order)" if repeatable else ""
    again = " (repeatable)" if repeatable else ""
    parser.add_argument("--key", action=action, metavar="FILE", help=f"recipient private key, PEM or DER{pairs}")
    parser.add_argument("--cert", action=action, metavar="FILE", help=f"the key's certificate, PEM or DER{pairs}")
    parser.add_argument("--p12", action=action, metavar="FILE", help=f"PKCS#12 file with key and certificate{again}")
    _password_option(parser)


def _validation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust", action="append", required=True, metavar="FILE", help="trust anchor certificate(s); repeatable"
    )
    parser.add_argument(
        "--intermediate", action="append", default=[], metavar="FILE", help="intermediate certificate(s)"
    )
    parser.add_argument("--crl", action="append", default=[], metavar="FILE", help="CRL, PEM or DER; repeatable")
    parser.add_argument("--at", metavar="ISO-8601", help="validation time (default: now; naive times are UTC)")
    parser.add_argument(
        "--no-hard-fail", action="store_true", help="accept certificates whose revocation status is unknown"
    )
    parser.add_argument("--no-check-from", action="store_true", help="do not require the signer to match From")


# --------------------------------------------------------------------------------------------------------------------
# Input, output, keys


def _stdin() -> IO[bytes]:
    return sys.stdin.buffer


def _read_password(args: argparse.Namespace) -> bytes | None:
    if not getattr(args, "password_stdin", False):
        return None
    if args.input is None or args.input == "-":
        raise UsageError("--password-stdin needs the message as a file argument (stdin carries the password)")
    line = _stdin().readline()
    return line.rstrip(b"\r\n")


def _read_input(args: argparse.Namespace) -> bytes:
    if args.input is None or args.input == "-":
        return _stdin().read()
    return _read(args.input)


def _read(path: str) -> bytes:
    try:
        return read_file(path)
    except LoadError as exc:
        raise UsageError(str(exc)) from exc


def _write_output(args: argparse.Namespace, data: bytes) -> None:
    if args.output and args.output != "-":
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise UsageError(f"{args.output}: cannot write ({exc.strerror or exc})") from exc
        return
    stream = sys.stdout.buffer
    stream.write(data)
    stream.flush()


def _key_and_certificate(key_path: str, cert_path: str, password: bytes | None) -> KeyAndCertificates:
    key = load_private_key(_read(key_path), password, source=key_path)
    cert = load_certificate(_read(cert_path), source=cert_path)
    return KeyAndCertificates(key, cert)


def _p12(path: str, password: bytes | None) -> KeyAndCertificates:
    return load_pkcs12(_read(path), password, source=path)


def _decryption_keys(args: argparse.Namespace, password: bytes | None) -> list[DecryptionKey]:
    def as_list(value: str | list[str] | None) -> list[str]:
        if value is None:
            return []
        return [value] if isinstance(value, str) else list(value)

    key_paths, cert_paths, p12_paths = as_list(args.key), as_list(args.cert), as_list(args.p12)
    if len(key_paths) != len(cert_paths):
        raise UsageError("--key and --cert go in pairs (one certificate per private key)")
    loaded = [_key_and_certificate(k, c, password) for k, c in zip(key_paths, cert_paths, strict=True)]
    loaded += [_p12(path, password) for path in p12_paths]
    keys = []
    for item in loaded:
        try:
            keys.append(DecryptionKey(item.key, item.certificate))
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    return keys


# --------------------------------------------------------------------------------------------------------------------
# Handlers


def _sign(args: argparse.Namespace, settings: Settings) -> int:
    password = _read_password(args)
    if args.p12:
        if args.key or args.cert:
            raise UsageError("give either --p12 or --key/--cert, not both")
        bundle = _p12(args.p12, password)
    elif args.key and args.cert:
        bundle = _key_and_certificate(args.key, args.cert, password)
    else:
        raise UsageError("signing needs --key and --cert, or --p12")
    chain = list(bundle.chain)
    for path in args.chain:
        chain.extend(load_certificates(_read(path), source=path))
    # Never send the leaf twice nor a self-signed root (RFC 8551 §2.4.2 leaves anchors to the verifier).
    chain = [c for c in chain if c != bundle.certificate and c.issuer != c.subject]
    try:
        signer = SignerCredential(bundle.key, bundle.certificate, tuple(chain))
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    message = _read_input(args)
    signed = sign_message(
        message,
        signer,
        detached=not args.opaque,
        digest=args.digest,
        rsa_padding="pss" if args.pss else "pkcs1v15",
    )
    _write_output(args, signed)
    return 0


def _encrypt(args: argparse.Namespace, settings: Settings) -> int:
    recipients = load_certificate_files(args.recipient)
    message = _read_input(args)
    _write_output(args, encrypt_message(message, recipients, legacy=args.legacy))
    return 0


def _decrypt(args: argparse.Namespace, settings: Settings) -> int:
    password = _read_password(args)
    if not args.p12 and not (args.key and args.cert):
        raise UsageError("decryption needs --key and --cert, or --p12")
    if args.p12 and (args.key or args.cert):
        raise UsageError("give either --p12 or --key/--cert, not both")
    keys = _decryption_keys(args, password)
    message = _read_input(args)
    try:
        decrypted, details = decrypt_message(message, keys)
    except DecryptError as exc:
        print(f"carnet: {exc}", file=sys.stderr)
        return 1
    if not details.integrity_protected:
        print(f"carnet: warning: {details.algorithm} has no integrity protection", file=sys.stderr)
    _write_output(args, decrypted)
    return 0


def _at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"--at {value!r} is not an ISO-8601 date/time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _validator(args: argparse.Namespace) -> ChainValidator:
    anchors = load_certificate_files(args.trust)
    intermediates = load_certificate_files(args.intermediate)
    crls = [crl.public_bytes(Encoding.DER) for crl in load_crl_files(args.crl)]
    return ChainValidator(TrustStore(anchors, intermediates, crls, hard_fail=not args.no_hard_fail))


def _print_report(args: argparse.Namespace, result: SmimeResult) -> int:
    report = json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"
    _write_output(args, report.encode("utf-8"))
    if args.content:
        try:
            Path(args.content).write_bytes(result.content)
        except OSError as exc:
            raise UsageError(f"{args.content}: cannot write ({exc.strerror or exc})") from exc
    return 0 if result.valid else 1


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    at = _at(args.at)
    validator = _validator(args)
    message = _read_input(args)
    result = asyncio.run(verify_message(message, validator, at=at, check_from=not args.no_check_from))
    return _print_report(args, result)


def _open(args: argparse.Namespace, settings: Settings) -> int:
    at = _at(args.at)
    password = _read_password(args)
    keys = _decryption_keys(args, password)
    validator = _validator(args)
    message = _read_input(args)
    result = asyncio.run(
        open_message(message, keys=keys, validator=validator, at=at, check_from=not args.no_check_from)
    )
    return _print_report(args, result)
