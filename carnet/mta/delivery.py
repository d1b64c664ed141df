"""Outbound SMTP: where a domain's mail goes and a small SMTP client that never sends in clear.

Routes for a domain (:func:`targets`), first match wins:

1. ``mta.transport_map`` — ``{domain: "host:port"}``, the TLS name checked being the domain;
2. the trust space's relay endpoints of the domain's operator (:func:`carnet.directory.trustspace.operator_for`),
   the TLS name checked being the domain (the peer's server certificate names its domains);
3. DNS MX records (RFC 5321 §5.1, dnspython; ``mta.dns_servers`` or the system's resolver), by preference, each
   MX host's A then AAAA addresses, port ``mta.mx_port`` (25), the TLS name checked being the MX host;
4. no MX record: the domain itself (the implicit MX, RFC 5321 §5.1), its A and AAAA addresses.

A domain that does not exist (NXDOMAIN), has a null MX (RFC 7505) or no address at all is a permanent failure; a DNS
lookup that fails (timeout, SERVFAIL) a temporary one (:class:`DeliveryError` from :func:`targets`).

The client (:func:`send`) speaks ESMTP (RFC 5321) and requires STARTTLS (RFC 3207): a peer that does not offer it,
or whose certificate does not validate against the CAs of the recipient's operator (never the system store), gets
nothing — the attempt is a temporary failure, never a downgrade to plaintext. The client presents carnet's TLS
client certificate (profile ``tls-client`` of our ``servers`` CA, :func:`client_certificate`). DSN parameters (RFC
3461) are passed on when the peer announces DSN; SIZE (RFC 1870) and BODY=8BITMIME (RFC 6152) when it announces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from carnet.config import MtaSettings, Settings, split_dns_server
from carnet.db import Database

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A failed attempt: ``code`` (SMTP reply, 0 when there was none), whether it is permanent, and why."""

    def __init__(self, code: int, text: str, *, permanent: bool, stage: str = "") -> None:
        super().__init__(text)
        self.code, self.text, self.permanent, self.stage = code, text, permanent, stage

    @property
    def enhanced(self) -> str:
        for word in self.text.split()[:1]:
            if word.count(".") == 2 and word.replace(".", "").isdigit():
                return word
        return ("5" if self.permanent else "4") + ".4.0"

    def __str__(self) -> str:
        return f"{self.code} {self.text}" if self.code else self.text


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    server_name: str
    #: The IP address to connect to, when DNS was asked here (MX); empty: ``host`` is resolved by the system.
    address: str = ""

    def __str__(self) -> str:
        return f"{self.host}[{self.address}]:{self.port}" if self.address else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class OutRecipient:
    address: str
    notify: str | None = None
    orcpt: str | None = None


# Routes -------------------------------------------------------------------------------------------------------------


async def targets(db: Database, settings: Settings, domain: str) -> list[Target]:
    """Where to connect for ``domain`` (see the module docstring); raises :class:`DeliveryError` when DNS says
    nowhere (permanent) or could not say (temporary)."""
    static = settings.mta.transport_map.get(domain)
    if static:
        host, _, port = static.rpartition(":")
        return [Target(host.strip("[]"), int(port), domain)]
    from carnet.directory.trustspace import operator_for

    operator = await operator_for(db, domain)
    if operator is not None and operator.relay_endpoints:
        out = []
        for endpoint in operator.relay_endpoints:
            host, _, port = endpoint.rpartition(":")
            out.append(Target(host.strip("[]"), int(port), domain))
        return out
    return await _mx_targets(domain, settings.mta)


#: Seconds for one DNS lookup (every server of the resolver and its retries included).
DNS_LIFETIME = 10.0


@functools.lru_cache(maxsize=4)
def _resolver(servers: tuple[str, ...]) -> dns.asyncresolver.Resolver:
    """The resolver for ``mta.dns_servers`` (built once per process); none configured: the system's."""
    if not servers:
        return dns.asyncresolver.get_default_resolver()
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(*split_dns_server(server)) for server in servers]
    return resolver


async def _mx_targets(domain: str, mta: MtaSettings) -> list[Target]:
    """RFC 5321 §5.1: the MX hosts by preference (no MX: the domain itself), each with its addresses."""
    resolver = _resolver(tuple(mta.dns_servers))
    try:
        answer = await resolver.resolve(domain, "MX", lifetime=DNS_LIFETIME)
    except dns.resolver.NXDOMAIN:
        raise DeliveryError(0, f"5.1.2 {domain} does not exist (NXDOMAIN)", permanent=True, stage="dns") from None
    except dns.resolver.NoAnswer:
        hosts, implicit = [domain], True
    except dns.exception.DNSException as exc:
        raise DeliveryError(0, f"4.4.3 MX lookup of {domain} failed: {exc}", permanent=False, stage="dns") from None
    else:
        records = sorted(answer, key=lambda r: r.preference)  # type: ignore[attr-defined]
        hosts, implicit = [str(r.exchange).rstrip(".").lower() for r in records], False  # type: ignore[attr-defined]
        if "" in hosts:  # RFC 7505 null MX: the domain accepts no mail
            raise DeliveryError(0, f"5.1.10 {domain} accepts no mail (null MX, RFC 7505)", permanent=True, stage="dns")
    out: list[Target] = []
    failures: list[str] = []
    for host in hosts:
        for rdtype in ("A", "AAAA"):
            try:
                addresses = await resolver.resolve(host, rdtype, lifetime=DNS_LIFETIME)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                failures.append(f"{rdtype} of {host}: {exc}")
                continue
            out.extend(Target(host, mta.mx_port, host, record.address) for record in addresses)  # type: ignore[attr-defined]
    if out:
        return out
    if failures:
        raise DeliveryError(0, f"4.4.3 address lookup failed: {'; '.join(failures)}", permanent=False, stage="dns")
    if implicit:
        raise DeliveryError(0, f"5.1.2 {domain} has no MX and no address", permanent=True, stage="dns")
    raise DeliveryError(0, f"5.4.4 no MX host of {domain} has an address ({', '.join(hosts)})", permanent=True,
                        stage="dns")


# TLS ----------------------------------------------------------------------------------------------------------------


async def client_certificate(db: Database, settings: Settings) -> tuple[Path, Path]:
    """carnet's TLS client certificate for relaying (issued once, then kept in ``DATA_DIR/mta/``)."""
    from carnet.pki import authority
    from carnet.pki.keys import private_key_pem

    directory = settings.data_dir / "mta"
    cert_path, key_path = directory / "client.pem", directory / "client.key"
    records = [
        r
        for r in await authority.list_certificates(db, profile="tls-client", authority="servers")
        if r.dns_names[:1] == (settings.domain,) and r.status() == "valid" and r.key_held
    ]
    if records:
        serial = max(records, key=lambda r: r.not_after).serial
    else:
        issued = await authority.issue(
            db,
            settings,
            authority.IssueRequest(
                profile="tls-client", common_name=settings.domain, dns_names=[settings.domain], authority="servers"
            ),
        )
        serial = issued.serial
    marker = directory / "client.serial"
    if not (cert_path.exists() and key_path.exists() and marker.exists() and marker.read_text() == serial):
        credential = await authority.load_credential(db, settings, serial)
        authority.write_file(key_path, private_key_pem(credential.key), 0o600)
        authority.write_file(cert_path, authority.pem(credential.certificate, *credential.chain), 0o644)
        authority.write_file(marker, serial.encode(), 0o644)
    return cert_path, key_path


def client_context(ca_pem: str, cert: Path, key: Path) -> ssl.SSLContext:
    """Verify the peer against ``ca_pem`` only (RFC 9525 name check), present our client certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


# The client ---------------------------------------------------------------------------------------------------------


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout

    async def reply(self) -> tuple[int, str, list[str]]:
        lines: list[str] = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), self.timeout)
            if not line:
                raise DeliveryError(0, "connection closed by the peer", permanent=False)
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if len(text) < 3 or not text[:3].isdigit():
                raise DeliveryError(0, f"unintelligible reply {text[:80]!r}", permanent=False)
            lines.append(text[4:])
            if text[3:4] != "-":
                return int(text[:3]), " ".join(lines[-1:]), lines

    async def command(self, line: str) -> tuple[int, str, list[str]]:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def expect(self, line: str, stage: str, ok: tuple[int, ...] = (250,)) -> tuple[int, str, list[str]]:
        code, text, lines = await self.command(line)
        if code not in ok:
            raise DeliveryError(code, text, permanent=code >= 500, stage=stage)
        return code, text, lines


def _dot_stuff(data: bytes) -> bytes:
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


async def send(
    target: Target,
    *,
    context: ssl.SSLContext,
    helo: str,
    sender: str,
    recipients: list[OutRecipient],
    data: bytes,
    envid: str | None = None,
    ret: str | None = None,
    reply_timeout: float = 60.0,
) -> dict[str, tuple[int, str]]:
    """One SMTP transaction over STARTTLS; returns each recipient's (code, text): 250 for accepted. Raises
    :class:`DeliveryError` when the transaction as a whole failed (connection, TLS, MAIL or DATA)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.address or target.host, target.port), reply_timeout
        )
    except (OSError, TimeoutError) as exc:
        raise DeliveryError(0, f"cannot connect to {target}: {exc}", permanent=False, stage="connect") from None
    connection = _Connection(reader, writer, reply_timeout)
    try:
        return await _transaction(connection, target, context, helo, sender, recipients, data, envid, ret)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise DeliveryError(0, f"{target}: {type(exc).__name__}: {exc}", permanent=False, stage="network") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 5)


async def _transaction(
    connection: _Connection,
    target: Target,
    context: ssl.SSLContext,
    helo: str,
    sender: str,
    recipients: list[OutRecipient],
    data: bytes,
    envid: str | None,
    ret: str | None,
) -> dict[str, tuple[int, str]]:
    code, text, _ = await connection.reply()
    if code != 220:
        raise DeliveryError(code, text, permanent=code >= 500, stage="greeting")
    _, _, lines = await connection.expect(f"EHLO {helo}", "EHLO")
    extensions = {line.split(" ", 1)[0].upper() for line in lines[1:]}
    if "STARTTLS" not in extensions:
        raise DeliveryError(0, f"{target} does not offer STARTTLS: not sending in clear", permanent=False, stage="tls")
    await connection.expect("STARTTLS", "STARTTLS", ok=(220,))
    try:
        await connection.writer.start_tls(context, server_hostname=target.server_name)
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(
            0, f"{target}: certificate not trusted: {exc.verify_message}", permanent=False, stage="tls"
        ) from None
    _, _, lines = await connection.expect(f"EHLO {helo}", "EHLO")
    extensions = {line.split(" ", 1)[0].upper() for line in lines[1:]}
    mail = f"MAIL FROM:<{sender}>"
    if "SIZE" in extensions:
        mail += f" SIZE={len(data)}"
    if "8BITMIME" in extensions and any(b > 127 for b in data[:65536]):
        mail += " BODY=8BITMIME"
    if "DSN" in extensions:
        if ret:
            mail += f" RET={ret}"
        if envid:
            mail += f" ENVID={envid}"
    await connection.expect(mail, "MAIL")
    results: dict[str, tuple[int, str]] = {}
    for recipient in recipients:
        line = f"RCPT TO:<{recipient.address}>"
        if "DSN" in extensions:
            if recipient.notify:
                line += f" NOTIFY={recipient.notify}"
            if recipient.orcpt:
                line += f" ORCPT={recipient.orcpt}"
        code, text, _ = await connection.command(line)
        results[recipient.address] = (code, text)
    if not any(code == 250 for code, _ in results.values()):
        await connection.command("RSET")
        return results
    await connection.expect("DATA", "DATA", ok=(354,))
    connection.writer.write(_dot_stuff(data))
    await connection.writer.drain()
    code, text, _ = await connection.reply()
    if code != 250:
        raise DeliveryError(code, text, permanent=code >= 500, stage="DATA")
    with contextlib.suppress(DeliveryError, OSError, TimeoutError):
        await connection.command("QUIT")
    return {address: ((250, text) if code == 250 else (code, t)) for address, (code, t) in results.items()}
