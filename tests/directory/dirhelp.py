"""Data builders and loopback servers for the directory tests."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import uvicorn
from fastapi import FastAPI

from carnet.config import Settings
from carnet.db import Database
from carnet.directory.http import directory_router
from carnet.directory.identifiers import ins_key, luhn_check_digit
from carnet.directory.identifiers import synthetic_finess as finess
from carnet.directory.identifiers import synthetic_rpps as rpps
from carnet.directory.records import OrganisationInput, PatientInput, ProfessionalInput

# Data builders ---------------------------------------------------------------------------------------------------


def siret(n: int) -> str:
    siren = f"{n:08d}"
    siren += str(luhn_check_digit(siren))
    body = siren + "0001"
    return body + str(luhn_check_digit(body))


def nir(n: int, *, sex: int = 1, department: str = "75") -> str:
    body = f"{sex}85{(n % 12) + 1:02d}{department}{n % 1000:03d}{n // 1000 % 1000:03d}"
    return body + f"{ins_key(body):02d}"


def professional(n: int, first: str = "Anne", last: str = "Martin", *, organisations: list[str] | None = None,
                 profession: str = "10", specialty: str | None = "SM26") -> ProfessionalInput:
    return ProfessionalInput("RPPS", rpps(n), first, last, profession, specialty, organisations or [])


def organisation(n: int, name: str = "Centre Hospitalier de Test", city: str = "Saint-Étienne") -> OrganisationInput:
    return OrganisationInput("FINESS", finess(n), name, "1 rue de la Paix", "42000", city)


def patient(n: int, *, status: str = "VALI", department: str = "75", birth_name: str = "Durand",
            first_names: str = "Léa Marie") -> PatientInput:
    return PatientInput(ins=nir(n, sex=2, department=department), birth_name=birth_name, first_names=first_names,
                        birth_date=date(1985, 5, 17), sex="F", birthplace_code="75056", identity_status=status)


# Databases and servers ---------------------------------------------------------------------------------------------


class Server:
    """A carnet directory served by uvicorn in a thread on a loopback port, HTTP or HTTPS."""

    def __init__(self, settings: Settings, *, tls: bool = False) -> None:
        self.settings = settings
        self.tls = tls
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        db = Database(self.settings.sqlalchemy_url)
        app = FastAPI()
        app.include_router(directory_router(db, self.settings, public_url=self.url,
                                            relay_endpoints=[f"127.0.0.1:{self.port}"]))
        tls_dir = self.settings.data_dir / "pki" / "tls"
        options: dict[str, object] = {}
        if self.tls:
            options = {"ssl_certfile": str(tls_dir / "server.pem"), "ssl_keyfile": str(tls_dir / "server.key")}
        config = uvicorn.Config(app, log_level="warning", lifespan="off", **options)  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            await db.close()

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not (self.server is not None and self.server.started):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()

    def client_context(self) -> ssl.SSLContext:
        """A TLS context trusting this instance's CA bundle only."""
        bundle = (self.settings.data_dir / "pki" / "ca-bundle.pem").read_text()
        return ssl.create_default_context(cadata=bundle)


@contextmanager
def serving(settings: Settings, *, tls: bool = False) -> Iterator[Server]:
    with Server(settings, tls=tls) as server:
        yield server
