"""Any-state and not-authenticated commands: CAPABILITY, NOOP, LOGOUT (RFC 9051 §6.1), ID (RFC 2971), STARTTLS,
LOGIN and AUTHENTICATE PLAIN with SASL-IR (RFC 9051 §6.2, RFC 4616, RFC 4959).

Passwords are checked by the directory's one authentication service (:func:`carnet.directory.auth.authenticate`),
whose throttling is shared with SMTP and the webmail and holds across processes. Its answers map to RFC 5530 codes:
wrong credentials ``NO [AUTHENTICATIONFAILED]``, throttled ``NO [UNAVAILABLE]`` (with the delay), disabled mailbox
``NO [CONTACTADMIN]``. Before TLS on the STARTTLS port, LOGIN and AUTHENTICATE get ``NO [PRIVACYREQUIRED]``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING

from carnet.directory.auth import BadCredentials, Disabled, Throttled
from carnet.directory.auth import authenticate as directory_authenticate
from carnet.mailbox.imap import response
from carnet.mailbox.imap.parser import Authenticate, Command, Id, Login, ParseError, decode_sasl
from carnet.mailbox.imap.response import ImapError

if TYPE_CHECKING:
    from carnet.mailbox.imap.server import Connection

from carnet.mailbox.imap.server import ConnectionClosed

log = logging.getLogger(__name__)


async def capability(conn: Connection, cmd: Command) -> str:
    """CAPABILITY (RFC 9051 §6.1.1)."""
    from carnet.mailbox.imap.server import capabilities

    conn.untagged("CAPABILITY " + " ".join(capabilities(conn)))
    return "CAPABILITY completed"


async def noop(conn: Connection, cmd: Command) -> str:
    """NOOP (RFC 9051 §6.1.2): the dispatcher sends the pending updates, EXPUNGE included."""
    return "NOOP completed"


async def logout(conn: Connection, cmd: Command) -> str:
    """LOGOUT (RFC 9051 §6.1.3)."""
    from carnet.mailbox.imap.server import LOGOUT

    conn.write(response.untagged_status("BYE", "carnet IMAP server logging out"))
    if conn.selected is not None:
        conn.selected.close()
        conn.selected = None
    conn.state = LOGOUT
    return "LOGOUT completed"


async def id_command(conn: Connection, cmd: Command) -> str:
    """ID (RFC 2971 §3.1): the client's fields are logged; the server answers its name and version."""
    args: Id = cmd.args
    if args.params:
        conn.client_id = {k[:30]: (v[:1024] if v else v) for k, v in args.params}
        log.info("IMAP client %s: %s", conn.peer, conn.client_id)
    conn.untagged(b"ID (\"name\" \"carnet\" \"version\" " + response.quoted(conn.server.version.encode())
                  + b" \"vendor\" \"carnet\")")
    return "ID completed"


async def starttls(conn: Connection, cmd: Command) -> object:
    """STARTTLS (RFC 9051 §6.2.1). Pipelined commands after it are discarded (they came before TLS)."""
    if conn.tls:
        raise ImapError("TLS is already active", status="BAD")
    conn.write(response.tagged(cmd.tag, "OK", "Begin TLS negotiation now"))
    data = b"".join(conn._out)
    conn._out.clear()
    conn._out_size = 0
    conn.link.write(data)
    try:
        await conn.link.start_tls(conn.server.context)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        log.info("STARTTLS with %s failed: %s", conn.peer, exc)
        raise ConnectionClosed() from None
    conn.tls = True
    return response.ANSWERED


def _require_tls(conn: Connection) -> None:
    if not conn.tls:
        raise ImapError("use STARTTLS first: passwords are never accepted in clear text", "PRIVACYREQUIRED")


async def login(conn: Connection, cmd: Command) -> tuple[str, str]:
    """LOGIN (RFC 9051 §6.2.3)."""
    _require_tls(conn)
    args: Login = cmd.args
    return await _authenticate(conn, args.user, args.password)


async def authenticate(conn: Connection, cmd: Command) -> tuple[str, str]:
    """AUTHENTICATE PLAIN (RFC 9051 §6.2.2, RFC 4616) with an initial response (SASL-IR, RFC 4959 §3)."""
    _require_tls(conn)
    args: Authenticate = cmd.args
    if args.mechanism != "PLAIN":
        raise ImapError(f"unsupported authentication mechanism {args.mechanism}; use PLAIN")
    message = args.initial
    if message is None:
        conn.write(response.continuation(""))
        await conn.flush()
        try:
            async with asyncio.timeout(conn.server.limits.unauthenticated_timeout):
                line = await conn.read_line(16 * 1024)
        except TimeoutError:
            conn.write(response.untagged_status("BYE", "Autologout; no SASL response"))
            await conn.flush()
            raise ConnectionClosed() from None
        if line == b"*":
            raise ImapError("authentication cancelled", status="BAD")  # RFC 9051 §6.2.2
        try:
            message = decode_sasl(line)
        except ParseError as exc:
            raise ImapError(str(exc), status="BAD") from None
    fields = message.split(b"\x00")
    if len(fields) != 3:
        raise ImapError("PLAIN response is authzid NUL authcid NUL password (RFC 4616 §2)", status="BAD")
    try:
        authzid, authcid, password = (f.decode("utf-8") for f in fields)
    except UnicodeDecodeError:
        raise ImapError("PLAIN credentials are not UTF-8", status="BAD") from None
    if authzid and authzid.lower() != authcid.lower():
        raise ImapError("acting as another user is not allowed", "AUTHORIZATIONFAILED")
    return await _authenticate(conn, authcid, password)


async def _authenticate(conn: Connection, login: str, password: str) -> tuple[str, str]:
    from carnet.mailbox.imap.server import AUTHENTICATED, capabilities

    try:
        principal = await directory_authenticate(conn.server.db, login, password, client_ip=conn.peer,
                                                 protocol="imap")
    except Throttled as exc:
        raise ImapError(f"too many failed logins; try again in {exc.retry_after} s", "UNAVAILABLE") from None
    except BadCredentials:
        raise ImapError("invalid login or password", "AUTHENTICATIONFAILED") from None
    except Disabled:
        raise ImapError("this mailbox is disabled", "CONTACTADMIN") from None
    if not conn.server.claim_account(conn, principal.mailbox_id):
        raise ImapError("too many connections to this mailbox; close some first", "LIMIT")
    conn.mailbox_id = principal.mailbox_id
    try:
        await conn.store.ensure_account(principal.mailbox_id)
    except BaseException:
        conn.server.release_account(conn)
        raise
    conn.principal = principal
    conn.state = AUTHENTICATED
    log.info("IMAP login %s from %s", principal.address, conn.peer)
    return "Logged in", "CAPABILITY " + " ".join(capabilities(conn))
