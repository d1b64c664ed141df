"""The README's "first signed message", command for command, through the installed ``carnet`` script and OpenSSL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

CARNET = shutil.which("carnet", path=str(Path(sys.executable).parent)) or "carnet"
MESSAGE = (
    "From: Dr Anne Martin <anne.martin@carnet.localhost>\n"
    "To: secretariat.cardiologie@carnet.localhost\n"
    "Subject: Bonjour\n\nPremier message signé.\n"
)


def run(cwd: Path, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARNET_")}
    return subprocess.run(args, cwd=cwd, input=stdin, capture_output=True, text=True, check=check, env=env, timeout=120)


def test_first_signed_message(tmp_path: Path) -> None:
    demo = run(tmp_path, CARNET, "demo", "--no-serve")
    assert "anne.martin@carnet.localhost" in demo.stdout
    assert "var/pki/ca-bundle.pem" in demo.stdout
    assert "PRIVATE KEY" not in demo.stdout + demo.stderr

    run(
        tmp_path,
        CARNET,
        "pki",
        "export-p12",
        "--email",
        "anne.martin@carnet.localhost",
        "-o",
        "anne.p12",
        "--password-stdin",
        stdin="demo-password\n",
    )
    (tmp_path / "hello.eml").write_text(MESSAGE)
    run(
        tmp_path,
        CARNET,
        "smime",
        "sign",
        "--p12",
        "anne.p12",
        "--password-stdin",
        "hello.eml",
        "-o",
        "hello.signed.eml",
        stdin="demo-password\n",
    )

    verify = run(
        tmp_path,
        CARNET,
        "smime",
        "verify",
        "--trust",
        "var/pki/root.pem",
        "--crl",
        "var/pki/crl/root.crl",
        "--crl",
        "var/pki/crl/persons.crl",
        "hello.signed.eml",
    )
    report = json.loads(verify.stdout)
    assert report["status"] == "valid"
    assert report["signer"]["national_id"] == "810001234565"
    assert report["signer"]["revocation"] == "good"

    # Without revocation information, hard-fail refuses to call it valid, and the exit status says so.
    no_crl = run(tmp_path, CARNET, "smime", "verify", "--trust", "var/pki/root.pem", "hello.signed.eml", check=False)
    assert no_crl.returncode == 1
    assert json.loads(no_crl.stdout)["signer"]["revocation"] == "unknown"

    openssl = run(
        tmp_path,
        "openssl",
        "cms",
        "-verify",
        "-in",
        "hello.signed.eml",
        "-CAfile",
        "var/pki/ca-bundle.pem",
        "-out",
        "/dev/null",
    )
    assert "Verification successful" in openssl.stderr

    again = run(tmp_path, CARNET, "init")
    assert "already initialised; nothing changed" in again.stdout
