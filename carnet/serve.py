"""``carnet serve``: every listener and worker of carnet in one asyncio process.

- SMTP: submission (STARTTLS), submissions (implicit TLS), relay (mutual TLS, the trust space), trusted networks
  (:mod:`carnet.mta.listeners`);
- IMAP and IMAPS (:func:`carnet.mailbox.imap.server.start_imap`);
- HTTP(S): the webmail (``/webmail/``, :mod:`carnet.webmail`), the PKI endpoints (``/pki/``), the certificate
  directory and the trust-space publication (``/directory/``, ``/trust/``), served by uvicorn in this process;
  HTTPS (our server certificate) with ``--http-tls``, which a peer's directory lookups require;
- the outbound queue runner (:class:`carnet.mta.queue.QueueRunner`) and the trust refresh (every minute: new
  operators may relay to us, peers' CRLs).

Several such processes may share one PostgreSQL database. On SIGTERM or SIGINT the process stops accepting
connections, lets the SMTP transactions being committed finish (their clients get their answer), lets the queue
runner finish its current deliveries, closes IMAP sessions and HTTP, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from carnet.config import Settings
from carnet.db import Database
from carnet.mailbox.imap.server import start_imap

log = logging.getLogger("carnet.serve")

TRUST_REFRESH_SECONDS = 60.0
HOUSEKEEPING_SECONDS = 600.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from carnet.cli import add_common_options

    serve = sub.add_parser("serve", help="run SMTP, IMAP, HTTP and the queue runner in one process")
    add_common_options(serve)
    serve.add_argument("--http-tls", action="store_true", help="serve HTTPS (our server certificate) on listen.http")
    serve.add_argument("--public-url", help="the URL peers reach our HTTP server at (announced in the whitelist)")
    serve.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(settings, http_tls=args.http_tls, public_url=args.public_url, announce=print))
    except KeyboardInterrupt:
        return 130
    return 0


@dataclass(slots=True)
class Running:
    """A running ``carnet serve``: its bound ports and the objects tests reach into."""

    ports: dict[str, int] = field(default_factory=dict)
    services: Any = None
    router: Any = None
    runner: Any = None
    store: Any = None
    smtp: Any = None
    gateway: Any = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)


def _bind(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for sockets that say they are TCP;
    # without it Nagle's algorithm holds uvicorn's second write of a keep-alive response for ~40 ms (delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    return sock


def http_app(db: Database, settings: Settings, *, public_url: str, relay_endpoints: list[str], store: Any = None,
             router: Any = None) -> Any:
    """The HTTP application: PKI, directory and trust space, and (given the store and the router) the webmail."""
    from fastapi import FastAPI

    from carnet.directory.http import directory_router
    from carnet.pki.http import pki_router
    from carnet.webmail.app import install

    app = FastAPI(title="carnet", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(pki_router(db, settings))
    app.include_router(directory_router(db, settings, public_url=public_url, relay_endpoints=relay_endpoints))
    if store is not None and router is not None:
        install(app, db, settings, store=store, router=router)
    return app


async def serve(
    settings: Settings,
    *,
    http_tls: bool = False,
    public_url: str | None = None,
    announce: Callable[[str], None] | None = None,
    running: Running | None = None,
    install_signals: bool = True,
) -> None:
    """Run until SIGTERM/SIGINT (or ``running.stop`` is set), then shut down cleanly."""
    import uvicorn

    from carnet.mailbox.store import MailStore
    from carnet.mta.gateway import Gateway
    from carnet.mta.listeners import SmtpListeners, tls_paths
    from carnet.mta.queue import QueueRunner
    from carnet.mta.router import Committer, Router
    from carnet.mta.session import Services

    running = running or Running()
    db = Database(settings.sqlalchemy_url)
    store = MailStore(db)
    gateway = Gateway(db, settings)
    committer = Committer(db, settings.mta.group_commit_size)
    router = Router(db, settings, gateway, store, committer=committer)
    runner = QueueRunner(db, settings, router)
    router.on_enqueue = runner.wake
    services = Services(db, settings, router)
    smtp = SmtpListeners(services)
    imap: Any = None
    http_server: Any = None
    tasks: list[asyncio.Task[Any]] = []
    try:
        await gateway.refresh()
        committer.start()
        await smtp.start()
        running.ports.update(smtp.ports)
        if settings.listen.imap:
            imap = await start_imap(settings, db, store)
            running.ports.update({"imap": imap.port, "imaps": imap.tls_port})
        if settings.listen.http:
            sock = _bind(settings.listen.http)
            running.ports["http"] = sock.getsockname()[1]
            scheme = "https" if http_tls else "http"
            host = sock.getsockname()[0]
            url = public_url or f"{scheme}://{host}:{running.ports['http']}"
            relay = settings.listen.smtp_relay
            relay_endpoint = f"{relay.rpartition(':')[0]}:{running.ports.get('relay', 25)}" if relay else ""
            app = http_app(db, settings, public_url=url, relay_endpoints=[relay_endpoint] if relay_endpoint else [],
                           store=store, router=router)
            options: dict[str, Any] = {}
            if http_tls:
                cert, key = tls_paths(settings)
                options = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
            config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, **options)
            http_server = uvicorn.Server(config)
            http_server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            tasks.append(asyncio.create_task(http_server.serve(sockets=[sock]), name="carnet-http"))
        tasks.append(asyncio.create_task(runner.run(), name="carnet-queue"))
        tasks.append(asyncio.create_task(_refresh_trust(smtp, gateway), name="carnet-trust"))
        tasks.append(asyncio.create_task(_housekeeping(db), name="carnet-housekeeping"))
        if install_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, running.stop.set)
        running.services, running.router, running.runner, running.store = services, router, runner, store
        running.smtp, running.gateway = smtp, gateway
        if announce is not None:
            ports = ", ".join(f"{name} {port}" for name, port in running.ports.items())
            announce(f"carnet serving {settings.domain}: {ports}")
        running.ready.set()
        await running.stop.wait()
        log.info("shutting down")
    finally:
        smtp.stop_accepting()
        if imap is not None:
            imap.close()
        await smtp.drain()
        await committer.stop()
        await runner.stop()
        if http_server is not None:
            http_server.should_exit = True
        for task in tasks:
            if task.get_name() != "carnet-http":
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)
        if imap is not None:
            await imap.wait_closed()
        await store.close()
        await db.close()
        sys.stdout.flush()


async def _refresh_trust(smtp: Any, gateway: Any) -> None:
    while True:
        await asyncio.sleep(TRUST_REFRESH_SECONDS)
        try:
            await smtp.refresh_trust()
            await gateway.trust_changed()
        except Exception:
            log.exception("trust refresh failed")


async def _housekeeping(db: Database) -> None:
    """Periodic clean-up: expired webmail sessions (a live session is checked on every request anyway)."""
    from carnet.webmail.store import purge_expired

    while True:
        try:
            purged = await purge_expired(db)
            if purged:
                log.info("%d expired webmail session(s) removed", purged)
        except Exception:
            log.exception("housekeeping failed")
        await asyncio.sleep(HOUSEKEEPING_SECONDS)
