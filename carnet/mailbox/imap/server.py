"""IMAP listeners and the connection state machine (RFC 9051 §3, §5, §6.1-§6.2).

- Two listeners from ``settings.listen``: ``imap`` (cleartext, STARTTLS required before any authentication:
  ``LOGINDISABLED`` and no ``AUTH=`` until TLS, RFC 9051 §6.2.1 and §6.2.3) and ``imaps`` (implicit TLS, RFC 8314
  §3.2). The certificate is carnet's own TLS server certificate (``DATA_DIR/pki/tls/server.pem``).
- A connection reads one command at a time — its lines and literals, answering ``+`` to synchronising literals and
  not to LITERAL+ / LITERAL- ones (RFC 7888) — parses it (:mod:`~carnet.mailbox.imap.parser`), checks the state
  (not authenticated / authenticated / selected / logout, RFC 9051 §3), runs the command family's handler, sends the
  pending mailbox updates the RFC allows at that point (RFC 9051 §7.5.1, :mod:`~carnet.mailbox.imap.session`) and
  the tagged result. Output is buffered and written in batches.
- Limits (:class:`ImapLimits`): line and literal sizes, total command size, connections per client address and per
  account, inactivity timers (autologout after 30 minutes authenticated, RFC 9051 §5.4; one minute before),
  consecutive bad commands. A malformed command gets ``BAD`` with the reason; nothing is written for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carnet import __version__ as _carnet_version
from carnet.mailbox import api
from carnet.mailbox.imap import response
from carnet.mailbox.imap.parser import Command, ParseError, parse_command, parse_tag
from carnet.mailbox.imap.response import ImapError

if TYPE_CHECKING:
    from carnet.config import Settings
    from carnet.db import Database
    from carnet.directory.auth import Principal
    from carnet.mailbox.imap.session import SelectedFolder

log = logging.getLogger(__name__)

NOT_AUTHENTICATED = "not authenticated"
AUTHENTICATED = "authenticated"
SELECTED = "selected"
LOGOUT = "logout"


@dataclass(frozen=True, slots=True)
class ImapLimits:
    """Resource limits of the IMAP server (defaults suit a production instance)."""

    max_line: int = 64 * 1024  # octets of one command line, literals excluded (RFC 7162 §4 asks ≥ 8192)
    max_command: int = 1024 * 1024  # octets of a whole command except APPEND's message
    max_command_unauthenticated: int = 16 * 1024
    max_append: int = 48 * 1024 * 1024  # APPENDLIMIT (RFC 7889)
    max_connections: int = 5000
    max_connections_per_address: int = 200  # hospitals put many users behind one address
    max_connections_per_account: int = 32
    unauthenticated_timeout: float = 60.0
    autologout: float = 30 * 60.0  # RFC 9051 §5.4: at least 30 minutes once authenticated
    idle_keepalive: float = 120.0  # "* OK Still here" during IDLE, for NATs and firewalls
    max_bad_commands: int = 25  # consecutive BAD answers before BYE
    fetch_batch: int = 1000  # messages per store round trip in FETCH


def capabilities(conn: Connection) -> list[str]:
    """What the connection may use now (RFC 9051 §6.1.1, §7.2.2)."""
    limits = conn.server.limits
    caps = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE"]  # RFC 3501, 9051, 7888, 4959, 2971, 5161
    if conn.state == NOT_AUTHENTICATED:
        if not conn.tls:
            caps += ["STARTTLS", "LOGINDISABLED"]  # RFC 9051 §6.2.1, §7.2.2
        else:
            caps += ["AUTH=PLAIN"]  # RFC 4616
        return caps
    caps += [
        "IDLE",  # RFC 2177
        "NAMESPACE",  # RFC 2342
        "UNSELECT",  # RFC 3691
        "UIDPLUS",  # RFC 4315
        "MOVE",  # RFC 6851
        "CHILDREN",  # RFC 3348
        "LIST-EXTENDED",  # RFC 5258
        "LIST-STATUS",  # RFC 5819
        "SPECIAL-USE",  # RFC 6154
        "CREATE-SPECIAL-USE",  # RFC 6154 §3
        "ESEARCH",  # RFC 4731
        "SEARCHRES",  # RFC 5182
        "CONDSTORE",  # RFC 7162
        "QRESYNC",  # RFC 7162
        "BINARY",  # RFC 3516
        "UTF8=ACCEPT",  # RFC 6855
        "QUOTA",  # RFC 9208
        "QUOTA=RES-STORAGE",  # RFC 9208 §5.1
        "STATUS=SIZE",  # RFC 8438
        f"APPENDLIMIT={limits.max_append}",  # RFC 7889
    ]
    return caps


# Transport ------------------------------------------------------------------------------------------------------


class ConnectionClosed(Exception):
    """The peer went away (or the server is shutting the connection down)."""


class LineTooLong(Exception):
    pass


_READ_HIGH_WATER = 256 * 1024
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class Link(asyncio.Protocol):
    """A buffered byte stream over an asyncio transport, with STARTTLS that discards pipelined input."""

    def __init__(self, server: ImapServer, *, implicit_tls: bool) -> None:
        self.server = server
        self.implicit_tls = implicit_tls
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self._reader: asyncio.Future[None] | None = None
        self._drainer: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._scanned = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._accept(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _READ_HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake_reader()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake_reader()
        self._write_paused = False
        if self._drainer is not None and not self._drainer.done():
            self._drainer.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drainer is not None and not self._drainer.done():
            self._drainer.set_result(None)

    # Reading

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    async def _wait(self) -> None:
        if self.eof:
            raise ConnectionClosed()
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        self._reader = asyncio.get_running_loop().create_future()
        try:
            await self._reader
        finally:
            self._reader = None

    def _consumed(self) -> None:
        if self._read_paused and len(self.buffer) < _READ_HIGH_WATER // 2 and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()

    async def readline(self, limit: int) -> bytes:
        """One line including its LF; :class:`LineTooLong` beyond ``limit`` octets."""
        while True:
            index = self.buffer.find(b"\n", self._scanned)
            if index >= limit:
                raise LineTooLong()
            if index >= 0:
                line = bytes(self.buffer[: index + 1])
                del self.buffer[: index + 1]
                self._scanned = 0
                self._consumed()
                return line
            self._scanned = len(self.buffer)
            if len(self.buffer) > limit:
                raise LineTooLong()
            await self._wait()

    async def readexactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._wait()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        self._scanned = 0
        self._consumed()
        return data

    def quickack(self) -> None:
        """Acknowledge received data now (Linux TCP_QUICKACK). After a literal the client usually sends the rest of
        the command line as a small segment that Nagle's algorithm holds until our ACK, which delayed ACKs would
        otherwise postpone by up to 40 ms per APPEND."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is not None and _QUICKACK is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)

    def discard_input(self) -> None:
        self.buffer.clear()
        self._scanned = 0

    # Writing

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionClosed()
        if self._write_paused:
            self._drainer = asyncio.get_running_loop().create_future()
            try:
                await self._drainer
            finally:
                self._drainer = None
            if self.transport.is_closing():
                raise ConnectionClosed()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Switch to TLS now (RFC 9051 §6.2.1): input buffered before the handshake is discarded (it was sent
        before the client could know whether TLS would start, and must not be trusted)."""
        assert self.transport is not None
        self.discard_input()
        loop = asyncio.get_running_loop()
        # loop.start_tls pauses reading synchronously, so no cleartext can slip in after the discard above.
        transport = await loop.start_tls(self.transport, self, context, server_side=True, ssl_handshake_timeout=30)
        if transport is None:
            raise ConnectionClosed()
        # Data decrypted during the handshake (a client may send its first command with its Finished message) is
        # already in the buffer and is kept: it came over TLS.
        self.transport = transport  # type: ignore[assignment]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    @property
    def peer_ip(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if peer else "unknown"


# The connection state machine -----------------------------------------------------------------------------------

Handler = Callable[["Connection", Command], Awaitable["str | tuple[str, str | None] | None"]]


@dataclass(frozen=True, slots=True)
class _Entry:
    handler: Handler
    states: frozenset[str]


_ANY = frozenset({NOT_AUTHENTICATED, AUTHENTICATED, SELECTED})
_AUTH = frozenset({AUTHENTICATED, SELECTED})
_SEL = frozenset({SELECTED})
_NOAUTH = frozenset({NOT_AUTHENTICATED})
#: RFC 9051 §7.5.1: no EXPUNGE while answering FETCH, STORE or SEARCH (the UID forms may carry them).
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH"})


def _command_table() -> dict[str, _Entry]:
    from carnet.mailbox.imap import (
        append,
        auth,
        condstore,
        copy,
        fetch,
        idle,
        list,
        quota,
        search,
        select,
        store,
    )

    table: dict[str, tuple[Handler, frozenset[str]]] = {
        "CAPABILITY": (auth.capability, _ANY),
        "NOOP": (auth.noop, _ANY),
        "LOGOUT": (auth.logout, _ANY),
        "ID": (auth.id_command, _ANY),
        "STARTTLS": (auth.starttls, _NOAUTH),
        "LOGIN": (auth.login, _NOAUTH),
        "AUTHENTICATE": (auth.authenticate, _NOAUTH),
        "ENABLE": (condstore.enable, frozenset({AUTHENTICATED})),
        "NAMESPACE": (list.namespace, _AUTH),
        "SELECT": (select.select, _AUTH),
        "EXAMINE": (select.select, _AUTH),
        "CREATE": (list.create, _AUTH),
        "DELETE": (list.delete, _AUTH),
        "RENAME": (list.rename, _AUTH),
        "SUBSCRIBE": (list.subscribe, _AUTH),
        "UNSUBSCRIBE": (list.subscribe, _AUTH),
        "LIST": (list.list_command, _AUTH),
        "LSUB": (list.list_command, _AUTH),
        "STATUS": (list.status, _AUTH),
        "APPEND": (append.append, _AUTH),
        "IDLE": (idle.idle, _AUTH),
        "GETQUOTA": (quota.getquota, _AUTH),
        "GETQUOTAROOT": (quota.getquotaroot, _AUTH),
        "SETQUOTA": (quota.setquota, _AUTH),
        "CHECK": (select.check, _SEL),
        "CLOSE": (select.close, _SEL),
        "UNSELECT": (select.unselect, _SEL),
        "EXPUNGE": (store.expunge, _SEL),
        "SEARCH": (search.search, _SEL),
        "FETCH": (fetch.fetch, _SEL),
        "STORE": (store.store, _SEL),
        "COPY": (copy.copy, _SEL),
        "MOVE": (copy.move, _SEL),
    }
    return {name: _Entry(handler, states) for name, (handler, states) in table.items()}


class Connection:
    """One client: its state, its principal, what it enabled, its selected folder and its output buffer."""

    def __init__(self, server: ImapServer, link: Link) -> None:
        self.server = server
        self.store: api.MailStoreAPI = server.store
        self.link = link
        self.peer = link.peer_ip
        self.tls = link.implicit_tls
        self.state = NOT_AUTHENTICATED
        self.principal: Principal | None = None
        self.mailbox_id = 0
        self.selected: SelectedFolder | None = None
        self.origin = f"imap:{uuid.uuid4().hex}"
        # ENABLEd extensions (RFC 5161)
        self.rev2 = False
        self.utf8 = False
        self.condstore = False
        self.qresync = False
        self.enabled: set[str] = set()
        self.client_id: dict[str, str | None] = {}
        self._out: list[bytes] = []
        self._out_size = 0
        self.bad_in_a_row = 0
        self.busy = False
        self.closing = False
        self.wakeup = asyncio.Event()  # set when the server shuts down (IDLE listens to it)
        self.task: asyncio.Task[None] | None = None

    # Output

    def write(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)

    def untagged(self, text: str | bytes) -> None:
        self.write(response.untagged(text))

    async def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._out_size = 0
            self.link.write(data)
        await self.link.drain()

    async def maybe_flush(self, threshold: int = 128 * 1024) -> None:
        if self._out_size >= threshold:
            await self.flush()

    def mailbox_out(self, name: str) -> bytes:
        return response.mailbox_name(name, utf8=self.utf8)

    def mailbox_in(self, name: str) -> str:
        """A mailbox name from the client: UTF-8 after ENABLE IMAP4rev2 / UTF8=ACCEPT, else modified UTF-7
        (RFC 3501 §5.1.3). 8-bit names from rev1 clients are taken as UTF-8 (lenient)."""
        from carnet.mailbox.imap import utf7

        if name == "INBOX" or self.utf8 or not name.isascii():
            return name
        try:
            return utf7.decode(name)
        except utf7.UTF7Error as exc:
            raise ImapError(f"invalid mailbox name: {exc}", "CANNOT") from None

    # Reading

    def _limit(self, first_line: bytes) -> int:
        limits = self.server.limits
        if self.state == NOT_AUTHENTICATED:
            return limits.max_command_unauthenticated
        words = first_line.split(b" ", 3)
        if len(words) > 1 and words[1].upper() == b"APPEND":
            return limits.max_append + limits.max_command
        return limits.max_command

    async def read_command(self) -> bytes | None:
        """Read a command's lines and literals (RFC 9051 §4.3, RFC 7888). None if it was refused before its literal
        was sent (the answer is already written)."""
        limits = self.server.limits
        parts: list[bytes] = []
        total = 0
        limit = 0
        while True:
            line = await self.link.readline(limits.max_line)
            body = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if not parts:
                limit = self._limit(body)
            total += len(body)
            parts.append(body)
            marker = _literal_marker(body)
            if marker is None:
                return b"".join(parts)
            size, synchronising = marker
            parts.append(b"\r\n")
            if total + size > limit:
                tag = parse_tag(parts[0]) or "*"
                is_append = limit > limits.max_command
                text = f"literal of {size} octets exceeds the limit of {limit} octets"
                if not synchronising:
                    # The octets are on their way and cannot be told apart from commands: hang up (RFC 7888 §4).
                    self.write(response.untagged_status("BYE", text, "TOOBIG"))
                    await self.flush()
                    raise ConnectionClosed()
                self.write(response.tagged(tag, "NO" if is_append else "BAD", text, "TOOBIG"))
                return None
            if synchronising:
                self.write(response.continuation("Ready for literal data"))
                await self.flush()
            parts.append(await self.link.readexactly(size))
            self.link.quickack()
            total += size

    async def read_line(self, limit: int = 64 * 1024) -> bytes:
        """A continuation line (AUTHENTICATE responses, IDLE's DONE), without its line ending."""
        line = await self.link.readline(limit)
        return line[:-2] if line.endswith(b"\r\n") else line[:-1]

    # The loop

    async def run(self) -> None:
        """The connection: greeting (RFC 9051 §7.1.1), commands until LOGOUT, autologout (§5.4)."""
        limits = self.server.limits
        try:
            self.write(response.untagged_status(
                "OK", "carnet IMAP4rev2 server ready", "CAPABILITY " + " ".join(capabilities(self))))
            await self.flush()
            while self.state != LOGOUT and not self.closing:
                timeout = limits.unauthenticated_timeout if self.state == NOT_AUTHENTICATED else limits.autologout
                try:
                    async with asyncio.timeout(timeout):
                        raw = await self.read_command()
                except TimeoutError:
                    self.write(response.untagged_status("BYE", "Autologout; idle for too long"))
                    break
                except LineTooLong:
                    self.write(response.untagged_status(
                        "BYE", f"command line longer than {limits.max_line} octets", "TOOBIG"))
                    break
                if raw is None:
                    await self.flush()
                    continue
                self.busy = True
                try:
                    await self.execute(raw)
                finally:
                    self.busy = False
                await self.flush()
                if self.bad_in_a_row >= limits.max_bad_commands:
                    self.write(response.untagged_status("BYE", "Too many invalid commands"))
                    break
            if self.closing and self.state != LOGOUT:
                self.write(response.untagged_status("BYE", "Server shutting down", "UNAVAILABLE"))
            with contextlib.suppress(ConnectionClosed, OSError):
                await self.flush()
        except (ConnectionClosed, ConnectionError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            if self.closing:
                self.link.write(b"".join(self._out) + response.untagged_status(
                    "BYE", "Server shutting down", "UNAVAILABLE"))
            raise
        except Exception:
            log.exception("IMAP connection from %s failed", self.peer)
        finally:
            await self.cleanup()

    async def cleanup(self) -> None:
        if self.selected is not None:
            self.selected.close()
            self.selected = None
        self.server._release(self)
        self.link.close()

    async def execute(self, raw: bytes) -> None:
        """Parse, check the state (RFC 9051 §3), run, send the allowed updates (§7.5.1), answer."""
        try:
            cmd = parse_command(raw, utf8=self.utf8)
        except ParseError as exc:
            tag = parse_tag(raw) or "*"
            self.bad_in_a_row += 1
            self.write(response.tagged(tag, "BAD", str(exc), exc.code))
            return
        entry = self.server.commands.get(cmd.name)
        if entry is None:  # pragma: no cover - the parser knows the same names
            self.write(response.tagged(cmd.tag, "BAD", f"unknown command {cmd.name}"))
            return
        if self.state not in entry.states:
            self.bad_in_a_row += 1
            self.write(response.tagged(cmd.tag, "BAD", f"{cmd.display_name} is not allowed in the {self.state} state"))
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %r", self.peer, cmd.tag, cmd if cmd.name not in ("LOGIN", "AUTHENTICATE") else cmd.name)
        status, code, text = "OK", None, f"{cmd.display_name} completed"
        started = time.perf_counter()
        try:
            result = await entry.handler(self, cmd)
            if result is response.ANSWERED:
                return
            if isinstance(result, tuple):
                text, code = result
            elif isinstance(result, str):
                text = result
            self.bad_in_a_row = 0
        except ImapError as exc:
            status, code, text = exc.status, exc.code, exc.text
            if exc.status == "BAD":
                self.bad_in_a_row += 1
        except api.StoreError as exc:
            status, code, text = "NO", _store_error_code(exc), str(exc) or type(exc).__name__
        except ConnectionClosed:
            raise
        except Exception:
            log.exception("IMAP %s failed for %s", cmd.display_name, self.principal.address if self.principal else "-")
            status, code, text = "NO", "SERVERBUG", f"{cmd.display_name} failed because of a server error"
        if self.state == LOGOUT:
            self.write(response.tagged(cmd.tag, status, text, code))
            return
        if self.selected is not None:
            expunge_ok = cmd.uid or cmd.name not in _NO_EXPUNGE
            with contextlib.suppress(api.StoreError):
                await self.selected.send_updates(self, expunge_ok=expunge_ok)
        self.write(response.tagged(cmd.tag, status, text, code))
        elapsed = time.perf_counter() - started
        if elapsed > 5:
            log.info("slow IMAP %s: %.1f s", cmd.display_name, elapsed)


def _literal_marker(line: bytes) -> tuple[int, bool] | None:
    """``{n}`` / ``{n+}`` / ``{n-}`` / ``~{n}`` ending a line: (size, synchronising)."""
    if not line.endswith(b"}"):
        return None
    start = line.rfind(b"{")
    if start < 0:
        return None
    inner = line[start + 1 : -1]
    synchronising = not inner.endswith((b"+", b"-"))  # {n+} LITERAL+, {n-} LITERAL- (RFC 7888 §3)
    if not synchronising:
        inner = inner[:-1]
    if not inner.isdigit() or len(inner) > 20:
        return None
    return int(inner), synchronising


#: Response codes for the store's errors (RFC 5530, RFC 9051 §7.1, RFC 9208 §4.3), most specific class first.
_STORE_ERROR_CODES: tuple[tuple[type[api.StoreError], str], ...] = (
    (api.FolderHasChildren, "HASCHILDREN"),
    (api.NotPermitted, "CANNOT"),
    (api.InvalidFlag, "CANNOT"),
    (api.MessageTooLarge, "TOOBIG"),
    (api.NoSuchMessage, "EXPUNGEISSUED"),
    (api.NoSuchAccount, "SERVERBUG"),
    (api.NoSuchFolder, "NONEXISTENT"),
    (api.FolderExists, "ALREADYEXISTS"),
    (api.QuotaExceeded, "OVERQUOTA"),
    (api.InvalidFolderName, "CANNOT"),
)


def _store_error_code(exc: api.StoreError) -> str | None:
    return next((code for kind, code in _STORE_ERROR_CODES if isinstance(exc, kind)), None)


# The server -----------------------------------------------------------------------------------------------------


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The server TLS context from carnet's PKI (``DATA_DIR/pki/tls/server.pem`` and ``server.key``)."""
    directory = Path(settings.data_dir) / "pki" / "tls"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    return context


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - "":port means every address


class ImapServer:
    """The IMAP service: two listeners and their connections."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        store: api.MailStoreAPI,
        *,
        limits: ImapLimits | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.limits = limits or ImapLimits()
        self.context = context or tls_context(settings)
        self.commands = _command_table()
        self.version = _carnet_version
        self.connections: set[Connection] = set()
        self._per_address: Counter[str] = Counter()
        self._per_account: Counter[int] = Counter()
        self._listeners: list[asyncio.Server] = []
        self.addresses: dict[str, tuple[str, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, implicit in (("imap", False), ("imaps", True)):
            host, port = _host_port(getattr(self.settings.listen, name))
            listener = await loop.create_server(
                lambda implicit=implicit: Link(self, implicit_tls=implicit),  # type: ignore[misc]
                host,
                port,
                ssl=self.context if implicit else None,
                ssl_handshake_timeout=30 if implicit else None,
                reuse_address=True,
            )
            self._listeners.append(listener)
            bound = listener.sockets[0].getsockname()
            self.addresses[name] = (str(bound[0]), int(bound[1]))
            log.info("IMAP%s listening on %s:%s", "S" if implicit else "", bound[0], bound[1])

    @property
    def port(self) -> int:
        return self.addresses["imap"][1]

    @property
    def tls_port(self) -> int:
        return self.addresses["imaps"][1]

    def _accept(self, link: Link) -> None:
        conn = Connection(self, link)
        if len(self.connections) >= self.limits.max_connections or self._per_address[conn.peer] >= (
            self.limits.max_connections_per_address
        ):
            link.write(response.untagged_status("BYE", "Too many connections; try again later", "UNAVAILABLE"))
            link.close()
            return
        self._per_address[conn.peer] += 1
        self.connections.add(conn)
        conn.task = asyncio.get_running_loop().create_task(conn.run(), name=f"imap {conn.peer}")
        self._tasks.add(conn.task)
        conn.task.add_done_callback(self._tasks.discard)

    def _release(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self._per_address[conn.peer] -= 1
            if self._per_address[conn.peer] <= 0:
                del self._per_address[conn.peer]
        self.release_account(conn)

    def claim_account(self, conn: Connection, mailbox_id: int) -> bool:
        if self._per_account[mailbox_id] >= self.limits.max_connections_per_account:
            return False
        self._per_account[mailbox_id] += 1
        return True

    def release_account(self, conn: Connection) -> None:
        if conn.mailbox_id:
            self._per_account[conn.mailbox_id] -= 1
            if self._per_account[conn.mailbox_id] <= 0:
                del self._per_account[conn.mailbox_id]
            conn.mailbox_id = 0

    def close(self) -> None:
        """Stop listening and say BYE to every client (those in the middle of a command finish it first)."""
        for listener in self._listeners:
            listener.close()
        for conn in list(self.connections):
            conn.closing = True
            conn.wakeup.set()
            if not conn.busy and conn.task is not None:
                conn.task.cancel()

    async def wait_closed(self, grace: float = 10.0) -> None:
        """Wait for the listeners and the connections (cancelled after ``grace`` seconds)."""
        for listener in self._listeners:
            await listener.wait_closed()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)

    async def __aenter__(self) -> ImapServer:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
        await self.wait_closed()


async def start_imap(
    settings: Settings,
    db: Database,
    store: api.MailStoreAPI,
    *,
    limits: ImapLimits | None = None,
    context: ssl.SSLContext | None = None,
) -> ImapServer:
    """Start the IMAP (STARTTLS) and IMAPS listeners of ``settings.listen``; ``close()`` / ``await wait_closed()``
    stop them."""
    server = ImapServer(settings, db, store, limits=limits, context=context)
    await server.start()
    return server
