"""Helpers for the certificate-authority tests: OpenSSL, files, and a live uvicorn server on a loopback port."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from carnet.config import Settings
from carnet.db import Database
from carnet.pki import authority
from carnet.pki.http import create_app
from carnet.pki.ocsp import issuer_key_hash, issuer_name_hash

PASSWORD = "correct horse battery staple"


async def initialised(db: Database, settings: Settings) -> authority.HierarchyReport:
    """Create the hierarchy of ``settings`` on ``db``."""
    return await authority.init_hierarchy(db, settings)


async def smime(
    db: Database,
    settings: Settings,
    email: str = "anne.martin@carnet.test",
    *,
    cn: str = "Dr Anne Martin",
    national_id: str | None = None,
    key_type: str | None = None,
    ca: str | None = None,
    keep_key: bool = True,
) -> authority.IssuedCredential:
    """Issue an S/MIME certificate for ``email``."""
    request = authority.IssueRequest(
        profile="smime",
        common_name=cn,
        emails=[email],
        national_id=national_id,
        key_type=key_type,
        authority=ca,
        keep_key=keep_key,
    )
    return await authority.issue(db, settings, request)


def ocsp_request_for(
    cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None = None, algorithm: type = hashes.SHA1
) -> bytes:
    """A DER OCSPRequest for ``cert`` (RFC 6960 §4.1.1), with a nonce when given."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def ocsp_request_by_serial(issuer: x509.Certificate, serial: int) -> bytes:
    """A DER OCSPRequest for any serial number under ``issuer``."""
    sha1 = hashes.SHA1()  # noqa: S303  (the CertID hash every client sends, RFC 5019 §2.1.1)
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        issuer_name_hash(issuer, sha1), issuer_key_hash(issuer, sha1), serial, sha1
    )
    return builder.build().public_bytes(serialization.Encoding.DER)


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def write_pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(pem(*certificates))
    return path


def openssl(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run the OpenSSL CLI; stdout and stderr merged as text."""
    completed = subprocess.run(
        ["openssl", *map(str, args)], input=stdin, capture_output=True, timeout=60, check=False
    )
    return subprocess.CompletedProcess(
        completed.args, completed.returncode, (completed.stdout + completed.stderr).decode(errors="replace"), ""
    )


def pki_files(settings: Settings) -> Path:
    return settings.data_dir / "pki"


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """Serve :func:`carnet.pki.http.create_app` with uvicorn on a free loopback port in a thread; yields the base
    URL and stops the server on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
