"""``carnet pki …`` on SQLite and PostgreSQL: issue, export-p12, revoke, crl, list, serve-http, and its errors."""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID
from pki.ca_helpers import PASSWORD, openssl

from carnet.cli import main
from carnet.pki.keys import public_keys_match

Run = tuple[int, str, str]


@pytest.fixture(autouse=True)
def _no_carnet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CARNET_"):
            monkeypatch.delenv(name)


@dataclass
class Cli:
    """Runs ``carnet`` in-process on one test's data directory and database: (status, stdout, stderr)."""

    data: Path
    db_url: str
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch

    def __call__(self, *argv: str | Path, stdin: str = "") -> Run:
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        status = main([*map(str, argv), "--data", str(self.data), "--database-url", self.db_url])
        out, err = self.capsys.readouterr()
        return status, out, err

    def init(self) -> None:
        status, out, err = self("init", "--domain", "carnet.test")
        assert status == 0, out + err


@pytest.fixture
def cli(tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(tmp_path / "var", db_url, capsys, monkeypatch)


def _serial(out: str) -> str:
    match = re.search(r"certificate ([0-9a-f]+) ", out)
    assert match, out
    return match.group(1)


def _one_line_error(result: Run, expected: str) -> None:
    status, out, err = result
    assert status == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("carnet: "), err
    assert expected in err, err
    assert "Traceback" not in err + out


@pytest.mark.parametrize(
    "argv",
    [("pki", "list"), ("pki", "revoke", "abcd"), ("pki", "crl", "persons"),
     ("pki", "export-p12", "abcd", "-o", "x.p12", "--password-stdin"),
     ("pki", "issue", "--profile", "smime", "--email", "a@carnet.test"), ("pki", "serve-http")],
)
def test_commands_need_an_initialised_instance(cli: Cli, argv: tuple[str, ...]) -> None:
    _one_line_error(cli(*argv, stdin=PASSWORD + "\n"), "run `carnet init` first")


def test_commands_on_a_missing_data_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["pki", "list", "--data", str(tmp_path / "nowhere")])
    _, err = capsys.readouterr()
    assert status == 2 and "run `carnet init` first" in err and err.count("\n") == 1
    assert not (tmp_path / "nowhere").exists()


def test_issue_writes_pem_files_and_a_pkcs12_openssl_reads(
    cli: Cli, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cli.init()
    p12 = tmp_path / "anne.p12"
    status, out, err = cli(
        "pki", "issue", "--profile", "smime", "--email", "anne.martin@carnet.test", "--name", "Dr Anne Martin",
        "--national-id", "810001234565", "--p12", p12, "--password-stdin", stdin=PASSWORD + "\n",
    )
    assert status == 0, err
    serial = _serial(out)
    assert re.search(r"SHA-256:\s+([0-9A-F]{2}:){31}[0-9A-F]{2}", out)
    cert_path = cli.data / "pki" / "issued" / f"{serial}.pem"
    chain_path = cli.data / "pki" / "issued" / f"{serial}.chain.pem"
    assert str(cert_path) in out and str(chain_path) in out and str(p12) in out
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert format(certificate.serial_number, "x") == serial
    assert x509.load_pem_x509_certificates(chain_path.read_bytes())[0].subject == certificate.issuer
    assert p12.stat().st_mode & 0o777 == 0o600

    dumped = openssl("pkcs12", "-in", p12, "-passin", f"pass:{PASSWORD}", "-nodes")
    assert "BEGIN PRIVATE KEY" in dumped.stdout and "BEGIN CERTIFICATE" in dumped.stdout, dumped.stdout
    assert "friendlyName: anne.martin@carnet.test" in dumped.stdout
    key_pem = re.search(r"-----BEGIN PRIVATE KEY-----.*?-----END PRIVATE KEY-----\n", dumped.stdout, re.S)
    assert key_pem
    key = serialization.load_pem_private_key(key_pem.group(0).encode(), None)
    assert public_keys_match(key, certificate.public_key())  # type: ignore[arg-type]
    info = openssl("pkcs12", "-in", p12, "-passin", f"pass:{PASSWORD}", "-info", "-noout")
    assert "MAC: sha256" in info.stdout and "PBES2, PBKDF2, AES-256-CBC" in info.stdout, info.stdout
    assert "RC2" not in info.stdout and "3DES" not in info.stdout
    wrong = openssl("pkcs12", "-in", p12, "-passin", "pass:wrong password", "-nodes")
    assert wrong.returncode != 0

    # The key shows nowhere but in the PKCS#12 file.
    key_body = "".join(key_pem.group(0).splitlines()[1:-1])
    everything = out + err + caplog.text
    assert "PRIVATE KEY" not in everything and key_body[:64] not in everything and key_body[-64:] not in everything


@pytest.mark.parametrize(("profile", "eku"), [("tls-server", ExtendedKeyUsageOID.SERVER_AUTH),
                                              ("tls-client", ExtendedKeyUsageOID.CLIENT_AUTH)])
def test_issue_tls_certificates(cli: Cli, tmp_path: Path, profile: str, eku: x509.ObjectIdentifier) -> None:
    cli.init()
    status, out, err = cli("pki", "issue", "--profile", profile, "--dns", "mx.carnet.test", "--key", "p256",
                           "--out-dir", tmp_path / "out")
    assert status == 0, err
    certificate = x509.load_pem_x509_certificate((tmp_path / "out" / f"{_serial(out)}.pem").read_bytes())
    assert list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [eku]
    assert "CA servers" in out
    result = openssl("verify", "-CAfile", cli.data / "pki" / "root.pem", "-untrusted",
                     cli.data / "pki" / "ca" / "servers.pem", tmp_path / "out" / f"{_serial(out)}.pem")
    assert result.returncode == 0, result.stdout


def test_export_p12_by_serial_and_by_email(cli: Cli, tmp_path: Path) -> None:
    cli.init()
    _, out, _ = cli("pki", "issue", "--profile", "smime", "--email", "bob@carnet.test", "--key", "p256",
                    "--ca", "organisations")
    serial = _serial(out)
    by_serial, by_email = tmp_path / "s.p12", tmp_path / "e.p12"
    status, out, err = cli("pki", "export-p12", serial.upper(), "-o", by_serial, "--password-stdin",
                           stdin=PASSWORD + "\n")
    assert status == 0, err
    status, out, err = cli("pki", "export-p12", "--email", "Bob@carnet.test", "-o", by_email, "--password-stdin",
                           stdin=PASSWORD + "\n")
    assert status == 0, err
    assert "PRIVATE" not in out + err
    for path in (by_serial, by_email):
        loaded = pkcs12.load_pkcs12(path.read_bytes(), PASSWORD.encode())
        assert loaded.cert is not None and loaded.key is not None
        assert format(loaded.cert.certificate.serial_number, "x") == serial
        assert loaded.cert.friendly_name == b"bob@carnet.test"
        assert public_keys_match(loaded.key, loaded.cert.certificate.public_key())  # type: ignore[arg-type]
        chain = [c.certificate for c in loaded.additional_certs]
        assert [c.subject for c in chain] == [loaded.cert.certificate.issuer]
        dumped = openssl("pkcs12", "-in", path, "-passin", f"pass:{PASSWORD}", "-nodes")
        assert dumped.returncode == 0 and "BEGIN PRIVATE KEY" in dumped.stdout


def test_revoke_list_and_crl(cli: Cli, tmp_path: Path) -> None:
    cli.init()
    _, out, _ = cli("pki", "issue", "--profile", "smime", "--email", "carol@carnet.test", "--key", "p256")
    serial = _serial(out)
    status, out, _ = cli("pki", "list")
    assert status == 0 and serial in out and "carol@carnet.test" in out and "valid" in out
    status, out, _ = cli("pki", "list", "--revoked")
    assert out.strip() == "no revoked certificates"
    status, out, err = cli("pki", "revoke", serial, "--reason", "keyCompromise")
    assert status == 0, err
    assert f"revoked smime certificate {serial} (keyCompromise)" in out and "persons.crl" in out
    _one_line_error(cli("pki", "revoke", serial), "already revoked")
    status, out, _ = cli("pki", "list", "--revoked")
    assert serial in out and "revoked (keyCompromise)" in out

    status, out, err = cli("pki", "crl", "persons", "-o", tmp_path / "persons.pem")
    assert status == 0, err
    assert "1 revoked" in out
    crl = x509.load_pem_x509_crl((tmp_path / "persons.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    assert (cli.data / "pki" / "crl" / "persons.crl").read_bytes() == crl.public_bytes(serialization.Encoding.DER)
    status, out, _ = cli("pki", "crl", "root", "-o", tmp_path / "root.crl")
    assert status == 0 and len(x509.load_der_x509_crl((tmp_path / "root.crl").read_bytes())) == 0


USAGE_ERRORS: list[tuple[tuple[str, ...], str, str]] = [
    (("pki", "issue", "--profile", "smime", "--email", "not-an-address"), "", "not a valid e-mail address"),
    (("pki", "issue", "--profile", "smime", "--dns", "mx.carnet.test"), "", "at least one e-mail"),
    (("pki", "issue", "--profile", "tls-server", "--dns", "*.carnet.test"), "", "not a valid DNS host name"),
    (("pki", "issue", "--profile", "mail", "--email", "a@carnet.test"), "", "unknown profile"),
    (("pki", "issue", "--profile", "smime", "--email", "a@carnet.test", "--key", "rsa1024"), "", "key type"),
    (("pki", "issue", "--profile", "smime", "--email", "a@carnet.test", "--ca", "servers"), "", "does not issue"),
    (("pki", "issue", "--profile", "smime", "--email", "a@carnet.test", "--p12", "x.p12"), "", "--password-stdin"),
    (("pki", "issue", "--profile", "smime", "--email", "a@carnet.test", "--p12", "x.p12", "--password-stdin"),
     "short\n", "at least 8"),
    (("pki", "issue", "--profile", "smime", "--email", "a@carnet.test", "--discard-key"), "", "needs --p12"),
    (("pki", "export-p12", "-o", "x.p12", "--password-stdin"), PASSWORD + "\n", "SERIAL or by --email"),
    (("pki", "export-p12", "abc", "-o", "x.p12", "--password-stdin"), PASSWORD + "\n", "no certificate with"),
    (("pki", "export-p12", "--email", "z@carnet.test", "-o", "x.p12", "--password-stdin"), PASSWORD + "\n",
     "no valid S/MIME certificate"),
    (("pki", "revoke", "xyz"), "", "not a hexadecimal serial"),
    (("pki", "revoke", "abc", "--reason", "boredom"), "", "revocation reason"),
    (("pki", "crl", "patients"), "", "no certificate authority named 'patients'"),
    (("pki", "serve-http", "--listen", "nowhere"), "", "HOST:PORT"),
]


def test_usage_errors_exit_2_with_one_line(cli: Cli) -> None:
    cli.init()  # once: the errors below are about the input, not the instance
    for argv, stdin, expected in USAGE_ERRORS:
        _one_line_error(cli(*argv, stdin=stdin), expected)
    assert cli("pki", "list")[1].count("\n") == 5  # header + 3 issuing CAs + TLS server: nothing was issued


def test_serve_http_subprocess(cli: Cli) -> None:
    cli.init()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    carnet = Path(sys.executable).parent / "carnet"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARNET_")}
    process = subprocess.Popen(
        [carnet, "pki", "serve-http", "--listen", f"127.0.0.1:{port}", "--data", cli.data, "--database-url",
         cli.db_url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/pki/ca-bundle.pem", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                if time.monotonic() > deadline:
                    raise TimeoutError("the server did not answer within 30 s") from None
                time.sleep(0.1)
        assert answer.status_code == 200
        assert answer.content == (cli.data / "pki" / "ca-bundle.pem").read_bytes()
    finally:
        process.terminate()
        process.wait(timeout=20)
