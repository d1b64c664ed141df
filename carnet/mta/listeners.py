"""The SMTP listeners of ``carnet serve`` and their TLS: one asyncio server per configured address.

===============  ===============================  ==========================================================
listener         setting (default)                 TLS and authentication
===============  ===============================  ==========================================================
submission       ``listen.smtp_submission``        STARTTLS required (RFC 3207), then AUTH PLAIN/LOGIN
                 (127.0.0.1:5870)
submissions      ``listen.smtp_submissions``       implicit TLS (RFC 8314 §3.3), then AUTH PLAIN/LOGIN
                 (127.0.0.1:4650)
relay            ``listen.smtp_relay``             STARTTLS required; client certificate required, verified in
                 (127.0.0.1:2525)                  the handshake against the trust space's CAs only
trusted          ``listen.smtp_trusted``           clients of ``mta.trusted_networks`` only; STARTTLS offered
                 (127.0.0.1:2526)
===============  ===============================  ==========================================================

Server certificate: ``DATA_DIR/pki/tls/server.pem`` (issued by our ``servers`` CA at ``carnet init``). TLS 1.2 is the
minimum. The relay's accepted client CAs are rebuilt from the trust space by :meth:`SmtpListeners.refresh_trust`
(``carnet serve`` calls it periodically): a new operator can connect without a restart; a removed one no longer can
once the context is rebuilt (sessions already open keep their handshake).

An empty address disables a listener.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from carnet.config import Settings
from carnet.mta.session import CarnetSMTP, ListenerKind, RelayPeers, Services

log = logging.getLogger(__name__)


def split_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def tls_paths(settings: Settings) -> tuple[Path, Path]:
    tls = settings.data_dir / "pki" / "tls"
    return tls / "server.pem", tls / "server.key"


def server_context(settings: Settings) -> ssl.SSLContext:
    """TLS for the submission and trusted listeners: our server certificate, no client certificate."""
    cert, key = tls_paths(settings)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def relay_context(services: Services) -> ssl.SSLContext:
    """TLS for the relay listener: client certificates verified against the trust space's CAs (ours included)."""
    from carnet.directory.trustspace import list_operators
    from carnet.pki.authority import authority_certificates

    settings = services.settings
    cert, key = tls_paths(settings)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_OPTIONAL  # the session answers "530 5.7.0" without one (clearer than an alert)
    peers = RelayPeers()
    cas: dict[bytes, x509.Certificate] = {}
    for certificate in (await authority_certificates(services.db)).values():
        cas[certificate.fingerprint(hashes.SHA256())] = certificate
        peers.domains_by_ca.setdefault(certificate.subject.public_bytes(), set()).add("")
    for operator in await list_operators(services.db):
        for certificate in operator.ca_certificates:
            cas[certificate.fingerprint(hashes.SHA256())] = certificate
            peers.domains_by_ca.setdefault(certificate.subject.public_bytes(), set()).add(operator.domain)
    context.load_verify_locations(
        cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in cas.values())
    )
    services.relay_peers = peers
    return context


def trusted_networks(settings: Settings) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    return [(ipaddress.ip_network(net.network, strict=False), net.sender) for net in settings.mta.trusted_networks]


class SmtpListeners:
    """Starts, refreshes and stops the four SMTP listeners of a process."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.servers: dict[ListenerKind, asyncio.Server] = {}
        self._relay_context: ssl.SSLContext | None = None
        self._server_context: ssl.SSLContext | None = None

    @property
    def ports(self) -> dict[str, int]:
        return {kind.value: server.sockets[0].getsockname()[1] for kind, server in self.servers.items()}

    async def start(self) -> None:
        settings = self.services.settings
        self.services.trusted = trusted_networks(settings)
        self._server_context = server_context(settings)
        await self.refresh_trust()
        listen = settings.listen
        plan = (
            (ListenerKind.SUBMISSION, listen.smtp_submission),
            (ListenerKind.SUBMISSIONS, listen.smtp_submissions),
            (ListenerKind.RELAY, listen.smtp_relay),
            (ListenerKind.TRUSTED, listen.smtp_trusted),
        )
        loop = asyncio.get_running_loop()
        for kind, address in plan:
            if not address:
                continue
            host, port = split_address(address)
            self.servers[kind] = await loop.create_server(
                lambda kind=kind: self._protocol(kind),  # type: ignore[misc]
                host,
                port,
                ssl=self._server_context if kind is ListenerKind.SUBMISSIONS else None,
                reuse_address=True,
                reuse_port=hasattr(socket, "SO_REUSEPORT"),  # several `carnet serve` on one host share the ports
            )
            log.info("SMTP %s listening on %s", kind.value, address)

    def _protocol(self, kind: ListenerKind) -> CarnetSMTP:
        context = self._relay_context if kind is ListenerKind.RELAY else self._server_context
        return CarnetSMTP(self.services, kind, context)

    async def refresh_trust(self) -> None:
        """Rebuild the relay's client-certificate trust from the trust space."""
        self._relay_context = await relay_context(self.services)

    def stop_accepting(self) -> None:
        self.services.accepting = False
        for server in self.servers.values():
            server.close()

    async def drain(self, grace: float = 30.0) -> None:
        """Wait (at most ``grace`` seconds) for the transactions being committed (their clients get their answer)."""
        pending = [future for future in self.services.in_flight if not future.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace)
