"""The SMTP session (RFC 5321) on aiosmtpd: submission, relay and trusted-network listeners share it.

aiosmtpd (≥ 1.4.6) runs the connection, the command loop, STARTTLS (RFC 3207, with pipelined plaintext discarded
once TLS starts) and the AUTH exchange (RFC 4954); :class:`CarnetSMTP` replaces what carnet needs stricter or more
complete:

- ``EHLO`` advertises PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531),
  ENHANCEDSTATUSCODES (RFC 2034), DSN (RFC 3461), CHUNKING (RFC 3030), STARTTLS before TLS, and AUTH PLAIN LOGIN
  (RFC 4616, draft-murchison-sasl-login) only on the submission listeners and only under TLS;
- every reply carries an enhanced status code (RFC 3463);
- ``MAIL`` keeps RFC 3461 ``RET``/``ENVID`` and ``RCPT`` ``NOTIFY``/``ORCPT`` with the message; the sender must be
  an address the authenticated account may send as (submission), the network's bound mailbox (trusted), or an
  address of the connected operator (relay);
- ``RCPT`` asks the router (:meth:`carnet.mta.router.Router.check_recipient`): unknown mailboxes, domains outside
  the trust space, relaying, recipients without a certificate and the patients' rules are refused here;
- ``DATA`` reads the whole message up to CRLF.CRLF on the raw stream and ``BDAT`` reads exact chunks; then
  :func:`carnet.mta.limits.check_message` refuses bare CR/LF (and closes the connection), oversized headers and
  over-complex MIME; the message goes to the router, and ``250`` is answered only after it committed.

Listener kinds: ``submission`` (STARTTLS required before anything but EHLO/NOOP/QUIT), ``submissions`` (implicit
TLS), ``relay`` (STARTTLS required; a client certificate chaining to a trust-space CA, verified in the handshake,
is required before MAIL), ``trusted`` (only from the configured networks, no AUTH).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import ipaddress
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Session

from carnet.config import Settings
from carnet.db import Database
from carnet.directory.records import MailboxInfo, MailboxKind
from carnet.mta import limits
from carnet.mta.gateway import GatewayRefusal
from carnet.mta.router import Envelope, Recipient, RecipientRefused, Router

log = logging.getLogger(__name__)

_XTEXT_OK = frozenset(range(33, 127)) - {ord("+"), ord("=")}


class ListenerKind(enum.StrEnum):
    SUBMISSION = "submission"  # port 587 style: STARTTLS, AUTH
    SUBMISSIONS = "submissions"  # port 465 style: implicit TLS, AUTH (RFC 8314)
    RELAY = "relay"  # port 25 style: the trust space's operators, mutual TLS
    TRUSTED = "trusted"  # configured networks, bound to a mailbox


@dataclass(slots=True)
class RelayPeers:
    """Who may relay to us: CA subject (DER) → the domains of the operators using that CA."""

    domains_by_ca: dict[bytes, set[str]] = field(default_factory=dict)

    def domains_for(self, issuer_der: bytes) -> set[str]:
        return self.domains_by_ca.get(issuer_der, set())


@dataclass(slots=True)
class Services:
    """What every SMTP session of a process shares."""

    db: Database
    settings: Settings
    router: Router
    relay_peers: RelayPeers = field(default_factory=RelayPeers)
    trusted: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = field(default_factory=list)
    in_flight: set[asyncio.Future[None]] = field(default_factory=set)
    accepting: bool = True

    def trusted_sender(self, ip: str) -> str | None:
        """The mailbox address a trusted-network client sends as (the most specific matching network)."""
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        matches = [(net, sender) for net, sender in self.trusted if address.version == net.version and address in net]
        if not matches:
            return None
        sender = max(matches, key=lambda item: item[0].prefixlen)[1]
        return sender if "@" in sender else f"{sender}@{self.settings.domain}"


def _with_enhanced_code(status: str) -> str:
    """Add an RFC 3463 enhanced status code to a reply aiosmtpd wrote without one."""
    code, sep, text = status.partition(" ")
    if not sep or len(code) != 3 or not code.isdigit() or code in ("220", "334", "354"):
        return status
    first = text.split(" ", 1)[0]
    if first.count(".") == 2 and first.replace(".", "").isdigit():
        return status
    enhanced = {
        "221": "2.0.0",
        "250": "2.0.0",
        "252": "2.5.0",
        "421": "4.4.2",
        "454": "4.7.0",
        "500": "5.5.2",
        "501": "5.5.4",
        "502": "5.5.1",
        "503": "5.5.1",
        "504": "5.5.4",
        "530": "5.7.0",
        "552": "5.3.4",
        "554": "5.7.0",
        "555": "5.5.4",
    }.get(code, f"{code[0]}.0.0")
    return f"{code} {enhanced} {text}"


def _xtext_valid(value: str) -> bool:
    """RFC 3461 §4 xtext."""
    i = 0
    while i < len(value):
        if value[i] == "+":
            if len(value[i + 1 : i + 3]) != 2 or not all(c in "0123456789ABCDEF" for c in value[i + 1 : i + 3]):
                return False
            i += 3
            continue
        if ord(value[i]) not in _XTEXT_OK:
            return False
        i += 1
    return True


class _Session(Session):
    """aiosmtpd's session without the deprecated ``login_data`` (its setter logs a warning on every AUTH)."""

    @property
    def login_data(self) -> Any:
        return None

    @login_data.setter
    def login_data(self, value: Any) -> None:
        pass


class _Hooks:
    """The aiosmtpd handler: only the STARTTLS hook is used (commands are methods of :class:`CarnetSMTP`)."""

    def handle_STARTTLS(self, server: CarnetSMTP, session: Session, envelope: object) -> bool:
        server.tls_started()
        return True


class CarnetSMTP(SMTP):
    """One SMTP connection of one listener kind (see the module docstring)."""

    def __init__(self, services: Services, kind: ListenerKind, tls_context: ssl.SSLContext | None) -> None:
        self.services = services
        self.kind = kind
        settings = services.settings
        self.limits = settings.mta.limits
        implicit = kind is ListenerKind.SUBMISSIONS
        super().__init__(
            _Hooks(),
            data_size_limit=self.limits.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=settings.mta.hostname or settings.domain,
            ident="carnet ESMTP",
            tls_context=None if implicit else tls_context,
            require_starttls=kind in (ListenerKind.SUBMISSION, ListenerKind.RELAY),
            timeout=300,
            auth_required=kind in (ListenerKind.SUBMISSION, ListenerKind.SUBMISSIONS),
            auth_require_tls=not implicit,
        )
        self.implicit_tls = implicit
        self.tls_active = implicit
        self.peer_ip = ""
        self.principal: Any = None
        self.allowed_from: frozenset[str] = frozenset()
        self.operator_domains: set[str] = set()
        self.own_ca_client = False
        self.transactions = 0
        self._reset_transaction()

    # Connection ---------------------------------------------------------------------------------------------------

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def _reset_transaction(self) -> None:
        self.recipients: list[Recipient] = []
        self.ret: str | None = None
        self.envid: str | None = None
        self.author: MailboxInfo | None = None
        self.chunks: list[bytes] | None = None
        self.chunk_size = 0
        self.chunk_error: limits.Refusal | None = None

    def _set_rset_state(self) -> None:
        super()._set_rset_state()
        self._reset_transaction()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if peer and not self.peer_ip:
            self.peer_ip = str(peer[0])

    async def _handle_client(self) -> None:
        refusal = self._connection_refusal()
        if refusal is not None:
            await self.push(refusal)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    def _connection_refusal(self) -> str | None:
        if not self.services.accepting:
            return "421 4.3.2 shutting down, try again later"
        if self.kind is ListenerKind.TRUSTED and self.services.trusted_sender(self.peer_ip) is None:
            return f"554 5.7.1 {self.peer_ip} is not a trusted network of this listener"
        return None

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str):
            status = _with_enhanced_code(status)
        await super().push(status)

    def tls_started(self) -> None:
        """STARTTLS completed (RFC 3207 §4.2: everything learnt before is forgotten); identify a relaying peer."""
        self.tls_active = True
        self.principal, self.allowed_from = None, frozenset()
        self._reset_transaction()
        if self.kind is not ListenerKind.RELAY:
            return
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return
        from cryptography import x509

        certificate = x509.load_der_x509_certificate(der)
        issuer = certificate.issuer.public_bytes()
        self.operator_domains = set(self.services.relay_peers.domains_for(issuer))
        self.own_ca_client = "" in self.operator_domains
        self.operator_domains.discard("")

    @property
    def _protocol(self) -> str:
        """RFC 3848 ``with`` keyword for Received."""
        return "ESMTP" + ("S" if self.tls_active else "") + ("A" if self.principal is not None else "")

    # EHLO -----------------------------------------------------------------------------------------------------------

    async def smtp_EHLO(self, hostname: str) -> None:
        if not hostname:
            await self.push("501 5.5.4 Syntax: EHLO hostname")
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = True
        self.session.host_name = hostname
        self.command_size_limits["MAIL"] = 1001
        self.command_size_limits["RCPT"] = 1001
        lines = [
            f"{self.hostname} greets {hostname[:100]}",
            "PIPELINING",
            f"SIZE {self.limits.max_message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "DSN",
            "CHUNKING",
        ]
        if self.tls_context and not self.tls_active:
            lines.append("STARTTLS")
        if self.kind in (ListenerKind.SUBMISSION, ListenerKind.SUBMISSIONS) and self.tls_active:
            lines.append("AUTH PLAIN LOGIN")
        for line in lines[:-1]:
            await super().push(f"250-{line}")
        await super().push(f"250 {lines[-1]}")

    async def smtp_HELO(self, hostname: str) -> None:
        await super().smtp_HELO(hostname)
        self._reset_transaction()

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.tls_active:
            await self.push("503 5.5.1 TLS already active")
            return
        await super().smtp_STARTTLS(arg)

    # AUTH -----------------------------------------------------------------------------------------------------------

    async def auth_PLAIN(self, _: object, args: list[str]) -> AuthResult:
        if self.kind not in (ListenerKind.SUBMISSION, ListenerKind.SUBMISSIONS):
            await self.push("503 5.5.1 AUTH not available on this listener")
            return AuthResult(success=False, handled=True)
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 cannot decode base64")
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3:
            await self.push("501 5.5.2 cannot split the PLAIN response (RFC 4616)")
            return AuthResult(success=False, handled=True)
        return await self._login(parts[1], parts[2])

    async def auth_LOGIN(self, _: object, args: list[str]) -> AuthResult:
        if self.kind not in (ListenerKind.SUBMISSION, ListenerKind.SUBMISSIONS):
            await self.push("503 5.5.1 AUTH not available on this listener")
            return AuthResult(success=False, handled=True)
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
        else:
            try:
                login = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 cannot decode base64")
                return AuthResult(success=False, handled=True)
        if not isinstance(login, bytes):
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._login(login, password)

    async def _login(self, login: bytes, password: bytes) -> AuthResult:
        from carnet.directory.auth import BadCredentials, Disabled, Throttled, authenticate, send_as_addresses

        try:
            principal = await authenticate(
                self.services.db,
                login.decode("utf-8", "replace"),
                password.decode("utf-8", "replace"),
                client_ip=self.peer_ip,
                protocol="smtp",
            )
        except Throttled as exc:
            return AuthResult(
                success=False, handled=False, message=f"454 4.7.0 too many failed logins; retry in {exc.retry_after} s"
            )
        except Disabled:
            return AuthResult(success=False, handled=False, message="535 5.7.8 this account is disabled")
        except BadCredentials:
            return AuthResult(success=False, handled=False, message="535 5.7.8 authentication credentials invalid")
        self.principal = principal
        self.allowed_from = frozenset(await send_as_addresses(self.services.db, principal))
        return AuthResult(success=True, auth_data=principal, message="235 2.7.0 authentication successful")

    # MAIL / RCPT ----------------------------------------------------------------------------------------------------

    def _parse_path(self, arg: str | None, keyword: str) -> tuple[str | None, list[str]] | None:
        """(address, parameters) of ``MAIL FROM:<…> params`` / ``RCPT TO:<…> params`` (RFC 5321 §4.1.2); None on a
        syntax error, address None when the path is malformed, "" for the null reverse-path."""
        if arg is None:
            return None
        rest = self._strip_command_keyword(keyword, arg)
        if rest is None:
            return None
        if rest.startswith("<"):
            end = rest.find(">")
            if end < 0:
                return None
            path, params = rest[1:end], rest[end + 1 :]
            if params and not params.startswith(" "):
                return None
        else:  # lenient: a bare address without angle brackets
            path, _, params = rest.partition(" ")
        if ":" in path and path.startswith("@"):
            path = path.split(":", 1)[1]  # RFC 5321 §4.1.2 source route: ignored (§C)
        if path and (
            path.count("@") < 1
            or any(c in path for c in ' <>()[],;\\"')
            or not all(c.isprintable() for c in path)
            or len(path) > 320
        ):
            return None, []
        return path, params.split()

    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("MAIL"):
            return
        assert self.envelope is not None and self.session is not None
        if self.envelope.mail_from is not None:
            await self.push("503 5.5.1 nested MAIL command")
            return
        limit = self.limits.max_transactions_per_session
        if limit and self.transactions >= limit:
            await self.push("421 4.7.0 too many transactions in one session; reconnect")
            assert self.transport is not None
            self.transport.close()
            return
        if self.kind is ListenerKind.RELAY and not (self.operator_domains or self.own_ca_client):
            await self.push("530 5.7.0 a client certificate of an operator of the trust space is required")
            return
        parsed = self._parse_path(arg, "FROM:")
        if parsed is None:
            await self.push("501 5.5.4 Syntax: MAIL FROM:<address> [parameters]")
            return
        address, params = parsed
        if address is None:
            await self.push("553 5.1.7 malformed sender address")
            return
        self._reset_transaction()
        for param in params:
            name, _, value = param.partition("=")
            name = name.upper()
            if name == "BODY" and value.upper() in ("7BIT", "8BITMIME"):
                continue
            if name == "SMTPUTF8" and not value:
                continue
            if name == "SIZE" and value.isdigit():
                if int(value) > self.limits.max_message_size:
                    await self.push(f"552 5.3.4 message size exceeds the limit of {self.limits.max_message_size}")
                    return
                continue
            if name == "RET" and value.upper() in ("FULL", "HDRS") and self.ret is None:
                self.ret = value.upper()
                continue
            if name == "ENVID" and value and len(value) <= 100 and _xtext_valid(value) and self.envid is None:
                self.envid = value
                continue
            await self.push(f"555 5.5.4 MAIL parameter {name} not recognised or not valid")
            return
        sender = address.lower()
        refusal = await self._check_sender(sender)
        if refusal is not None:
            await self.push(refusal)
            return
        self.envelope.mail_from = sender
        self.envelope.mail_options = params
        await self.push("250 2.1.0 sender OK")

    async def _check_sender(self, sender: str) -> str | None:
        router = self.services.router
        if self.kind in (ListenerKind.SUBMISSION, ListenerKind.SUBMISSIONS):
            if sender not in self.allowed_from:
                return f"550 5.7.1 {self.principal.address if self.principal else 'you'} may not send as <{sender}>"
            self.author = await router.mailbox(sender)
            return None
        if self.kind is ListenerKind.TRUSTED:
            bound = self.services.trusted_sender(self.peer_ip)
            mailbox = await router.mailbox(bound) if bound else None
            if mailbox is None or mailbox.kind not in (MailboxKind.ORG, MailboxKind.CAB, MailboxKind.APP):
                return f"451 4.3.5 the mailbox this network sends as ({bound}) is not an organisation or app mailbox"
            if not mailbox.active:
                return f"550 5.7.1 {bound} is disabled"
            if sender != mailbox.address:
                return f"550 5.7.1 this network sends as <{mailbox.address}> only"
            self.author = mailbox
            self.allowed_from = frozenset({mailbox.address})
            return None
        # relay: the sender must be an address of the connected operator (or null: a DSN or MDN)
        if not sender:
            return None
        domain = sender.rpartition("@")[2]
        if router.is_local(sender):
            if self.own_ca_client:
                return None
            return f"550 5.7.1 <{sender}> is one of our addresses: a peer may not send as it"
        if domain not in self.operator_domains:
            return f"550 5.7.1 <{sender}> is not an address of the operator you authenticated as"
        return None

    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("RCPT"):
            return
        assert self.envelope is not None
        if self.envelope.mail_from is None:
            await self.push("503 5.5.1 need MAIL command first")
            return
        parsed = self._parse_path(arg, "TO:")
        if parsed is None:
            await self.push("501 5.5.4 Syntax: RCPT TO:<address> [parameters]")
            return
        address, params = parsed
        if not address:
            await self.push("553 5.1.3 malformed recipient address")
            return
        if len(self.recipients) >= self.limits.max_recipients:
            await self.push(f"452 4.5.3 too many recipients (at most {self.limits.max_recipients} per message)")
            return
        notify = orcpt = None
        for param in params:
            name, _, value = param.partition("=")
            name = name.upper()
            if name == "NOTIFY" and notify is None:
                items = [item.strip().upper() for item in value.split(",")]
                if (
                    not value
                    or not set(items) <= {"NEVER", "SUCCESS", "FAILURE", "DELAY"}
                    or ("NEVER" in items and len(items) > 1)
                ):
                    await self.push("501 5.5.4 NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY")
                    return
                notify = ",".join(items)
                continue
            if name == "ORCPT" and orcpt is None and ";" in value and len(value) <= 500 and _xtext_valid(value):
                orcpt = value
                continue
            await self.push(f"555 5.5.4 RCPT parameter {name} not recognised or not valid")
            return
        try:
            await self.services.router.check_recipient(self._envelope([]), address, self.author)
        except RecipientRefused as exc:
            await self.push(exc.reply())
            return
        if any(r.address.lower() == address.lower() for r in self.recipients):
            await self.push("250 2.1.5 recipient OK (duplicate)")
            return
        self.recipients.append(Recipient(address.lower(), orcpt, notify))
        self.envelope.rcpt_tos.append(address)
        await self.push("250 2.1.5 recipient OK")

    async def smtp_RSET(self, arg: str) -> None:
        await super().smtp_RSET(arg)
        self._reset_transaction()

    async def smtp_VRFY(self, arg: str) -> None:
        await self.push("252 2.5.0 cannot VRFY; send the message and the answer will tell")

    def _envelope(self, recipients: list[Recipient]) -> Envelope:
        assert self.envelope is not None and self.session is not None
        return Envelope(
            sender=self.envelope.mail_from or "",
            recipients=recipients,
            origin=self.kind.value if self.kind is not ListenerKind.SUBMISSIONS else "submission",
            envid=self.envid,
            ret=self.ret,
            helo=self.session.host_name or "",
            peer=self.peer_ip,
            protocol=self._protocol,
            allowed_from=self.allowed_from,
            operator=next(iter(sorted(self.operator_domains)), None),
        )

    # DATA / BDAT ----------------------------------------------------------------------------------------------------

    async def _ready_for_content(self) -> bool:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return False
        assert self.envelope is not None
        if self.envelope.mail_from is None:
            await self.push("503 5.5.1 need MAIL command first")
            return False
        if not self.recipients:
            await self.push("554 5.5.1 no valid recipients")
            return False
        return True

    async def smtp_DATA(self, arg: str) -> None:
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        if self.chunks is not None:
            await self.push("503 5.5.1 DATA after BDAT in one transaction (RFC 3030 §3)")
            return
        if not await self._ready_for_content():
            return
        await super().push("354 end data with <CR><LF>.<CR><LF>")
        data = await self._read_data()
        if data is None:
            return
        await self._process(data)

    async def _read_data(self) -> bytes | None:
        """The message up to CRLF.CRLF, dot-unstuffed (RFC 5321 §4.5.2). Only CRLF.CRLF ends it: a "." line behind
        a bare LF or CR is data (and the message is then refused for its bare line ending)."""
        reader = self._reader
        limit = self.limits.max_message_size + 64 * 1024
        saved = reader._limit  # type: ignore[attr-defined]  # the stream's buffer limit, raised for the message
        reader._limit = limit  # type: ignore[attr-defined]
        buffer = bytearray()
        try:
            while True:
                try:
                    buffer += await reader.readuntil(b".\r\n")
                except asyncio.LimitOverrunError:
                    await self.push(f"552 5.3.4 message exceeds {self.limits.max_message_size} octets; closing")
                    assert self.transport is not None
                    self.transport.close()
                    return None
                end = len(buffer)
                if end == 3 or buffer[end - 5 : end - 3] == b"\r\n":
                    break
        except asyncio.IncompleteReadError:
            return None
        finally:
            reader._limit = saved  # type: ignore[attr-defined]
        del buffer[-3:]
        if buffer.startswith(b"."):
            del buffer[0]
        return bytes(buffer).replace(b"\r\n.", b"\r\n")

    async def smtp_BDAT(self, arg: str) -> None:
        """RFC 3030 §2: ``BDAT <size> [LAST]``; the chunk is read whatever the state, then answered."""
        words = (arg or "").split()
        if not words or not words[0].isdigit() or len(words) > 2 or (len(words) == 2 and words[1].upper() != "LAST"):
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            assert self.transport is not None
            self.transport.close()  # the chunk size is unknown: the stream cannot be followed any more
            return
        size, last = int(words[0]), len(words) == 2
        try:
            chunk = await self._reader.readexactly(size)
        except asyncio.IncompleteReadError:
            return
        assert self.envelope is not None
        if self.envelope.mail_from is None or not self.recipients:
            await self.push("503 5.5.1 need MAIL and RCPT before BDAT")
            return
        if self.chunks is None:
            if not await self._ready_for_content():
                return
            self.chunks = []
        self.chunk_size += size
        if self.chunk_size > self.limits.max_message_size:
            self.chunk_error = limits.Refusal(552, "5.3.4", f"message exceeds {self.limits.max_message_size} octets")
            self.chunks = []
        elif self.chunk_error is None:
            self.chunks.append(chunk)
        if not last:
            await self.push(f"250 2.0.0 {size} octets received")
            return
        data, error = b"".join(self.chunks), self.chunk_error
        if error is not None:
            await self.push(error.reply())
            self._set_rset_state()
            return
        await self._process(data)

    async def _process(self, data: bytes) -> None:
        """Check, gateway, route and commit; answer only once committed."""
        recipients = list(self.recipients)
        envelope = self._envelope(recipients)
        self._set_rset_state()
        self.transactions += 1
        refusal = limits.check_message(data, self.limits)
        if refusal is not None:
            await self.push(refusal.reply())
            if refusal.close:
                assert self.transport is not None
                self.transport.close()
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.services.in_flight.add(done)
        try:
            accepted = await self.services.router.accept(envelope, data)
        except (GatewayRefusal, RecipientRefused) as exc:
            await self.push(exc.reply())
            return
        except Exception:
            log.exception("message from <%s> could not be accepted", envelope.sender)
            await self.push("451 4.3.0 temporary failure; try again later")
            return
        finally:
            done.set_result(None)
            self.services.in_flight.discard(done)
        note = f"; {accepted.refused} recipient(s) refused, see the DSN" if accepted.refused else ""
        await self.push(f"250 2.0.0 OK id={accepted.key[:16]}{note}")
