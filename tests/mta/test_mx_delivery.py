"""Delivery by DNS MX (RFC 5321 §5.1, RFC 7505): the peer's operator is in the trust space without relay endpoints
and no transport map names its domain, so instance A asks DNS — a small authoritative server run by the test on a
loopback UDP port (``mta.dns_servers``) — and connects to the MX host's address on ``mta.mx_port`` (B's relay
listener), checking that B's certificate names the MX host. Then: no MX → the domain's own address (the implicit
MX); SERVFAIL → a temporary failure, delivered once DNS answers; no address at all, or NXDOMAIN → a failure DSN at
once, without retries."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from instances import extra_database, instance_settings
from mtahelp import header, running_platform, submit, text_message, trust

from carnet.config import Settings
from carnet.db import Database
from carnet.pki import authority
from carnet.pki.keys import private_key_pem

FAST = {
    "retry_schedule": [timedelta(seconds=0.3)],
    "queue_poll_interval": 0.2,
    "smtp_timeout": 10.0,
}


class Zone(asyncio.DatagramProtocol):
    """An authoritative DNS server for the test's names: ``records[(name, type)]`` in zone-file text."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.queries: list[tuple[str, str]] = []
        self.servfail = False
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif values := self.records.get((name, rdtype)):
            response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", rdtype, values))
        self.transport.sendto(response.to_wire(), addr)


async def serve_tls_names(settings: Settings, *names: str) -> None:
    """Initialise ``settings``' CA and give its SMTP listeners a server certificate for ``names`` (an MX host)."""
    db = Database(settings.sqlalchemy_url)
    try:
        await authority.init_hierarchy(db, settings)
        issued = await authority.issue(
            db,
            settings,
            authority.IssueRequest(profile="tls-server", common_name=names[0], dns_names=list(names),
                                   authority="servers"),
        )
    finally:
        await db.close()
    tls = settings.data_dir / "pki" / "tls"
    authority.write_file(tls / "server.key", private_key_pem(issued.key), 0o600)
    authority.write_file(tls / "server.pem", authority.pem(issued.certificate, *issued.chain), 0o644)


async def test_delivery_by_mx_implicit_mx_and_dns_failures(db_url: str, tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    transport, zone = await loop.create_datagram_endpoint(Zone, local_addr=("127.0.0.1", 0))
    dns_server = f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    try:
        async with extra_database(db_url, tmp_path, "b") as b_url:
            b_settings = instance_settings(tmp_path, "b.test", b_url)
            await serve_tls_names(b_settings, "b.test", "patient.b.test", "mx.b.test")
            async with running_platform(b_settings, http_tls=True, populate_with=11, **FAST) as b:
                a_settings = instance_settings(tmp_path, "a.test", db_url)
                mta = {**FAST, "dns_servers": [dns_server], "mx_port": b.ports["relay"]}
                async with running_platform(a_settings, http_tls=True, **mta) as a:
                    operator = await trust(a, b, relay_endpoints=())  # no relay endpoints: A asks DNS
                    assert operator.relay_endpoints == () and "b.test" not in a.settings.mta.transport_map
                    await trust(b, a)
                    anne, bob = a.people.anne, b.people.bob

                    async def send(subject: str) -> None:
                        message = text_message(anne.address, bob.address, subject=subject)
                        assert await asyncio.to_thread(submit, a, anne.address, anne.address, [bob.address],
                                                       message) == {}

                    # MX by preference; an MX host without an address is skipped; TLS checked for "mx.b.test".
                    zone.records = {
                        ("b.test", "MX"): ["10 gone.b.test.", "20 mx.b.test."],
                        ("mx.b.test", "A"): ["127.0.0.1"],
                    }
                    await send("by MX")
                    [raw] = await b.wait_inbox(bob, 1)
                    assert header(raw, "Subject") == "by MX"
                    assert header(raw, "Carnet-Signature").startswith('valid; signer="Anne Martin"')
                    assert ("b.test", "MX") in zone.queries and ("mx.b.test", "A") in zone.queries
                    assert ("gone.b.test", "A") in zone.queries
                    # No MX: the implicit MX, b.test's own address (RFC 5321 §5.1).
                    zone.records, zone.queries = {("b.test", "A"): ["127.0.0.1"]}, []
                    await send("implicit MX")
                    messages = await b.wait_inbox(bob, 2)
                    assert header(messages[-1], "Subject") == "implicit MX"
                    assert zone.queries[:2] == [("b.test", "MX"), ("b.test", "A")]
                    # SERVFAIL: deferred, not bounced; delivered once DNS answers again.
                    zone.servfail = True
                    await send("after SERVFAIL")
                    await asyncio.sleep(1.0)
                    assert len(await b.inbox(bob)) == 2 and await a.inbox(anne) == []
                    zone.servfail = False
                    messages = await b.wait_inbox(bob, 3)
                    assert header(messages[-1], "Subject") == "after SERVFAIL"
                    # The domain has neither MX nor address, then does not exist: a failure DSN, no retries.
                    zone.records = {("b.test", "TXT"): ['"v=nothing"']}
                    await send("no address")
                    await a.wait_inbox(anne, 1)
                    zone.records = {}
                    await send("nxdomain")
                    reports = await a.wait_inbox(anne, 2)
                    assert len(reports) == 2
                    for report, reason in zip(reports, ("has no MX and no address", "does not exist"), strict=True):
                        assert b"Action: failed" in report and b"Status: 5.1.2" in report, report
                        assert reason.encode() in report
                        assert f"Final-Recipient: rfc822; {bob.address}".encode() in report
                        assert header(report, "Carnet-Signature").startswith("valid;")
                    assert len(await b.inbox(bob)) == 3
    finally:
        transport.close()
