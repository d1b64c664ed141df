"""IDLE (RFC 2177, RFC 9051 §6.3.13): updates of the selected folder are sent as they happen — EXISTS, FETCH
flags and EXPUNGE / VANISHED all allowed (RFC 9051 §7.5.1) — until the client sends ``DONE``.

While idling the server sends ``* OK Still here`` every :attr:`ImapLimits.idle_keepalive` seconds (NATs drop
silent connections); the autologout timer (30 minutes, RFC 9051 §5.4) still applies: clients re-issue IDLE more
often than that (RFC 2177 §3). Anything other than ``DONE`` ends the IDLE with BAD.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from carnet.mailbox.imap import response
from carnet.mailbox.imap.parser import Command
from carnet.mailbox.imap.response import ImapError

if TYPE_CHECKING:
    from carnet.mailbox.imap.server import Connection


async def idle(conn: Connection, cmd: Command) -> str:
    """IDLE (RFC 2177 §3, RFC 9051 §6.3.13)."""
    from carnet.mailbox.imap.server import ConnectionClosed

    limits = conn.server.limits
    selected = conn.selected
    if selected is not None:
        await selected.send_updates(conn, expunge_ok=True)
    conn.write(response.continuation("idling"))
    await conn.flush()
    deadline = time.monotonic() + limits.autologout
    reader = asyncio.ensure_future(conn.read_line(1024))
    try:
        while True:
            waiters: set[asyncio.Future[object]] = {reader}  # type: ignore[arg-type]
            changed = asyncio.ensure_future(conn.selected.changed.wait()) if conn.selected is not None else None
            stop = asyncio.ensure_future(conn.wakeup.wait())
            waiters.add(stop)  # type: ignore[arg-type]
            if changed is not None:
                waiters.add(changed)  # type: ignore[arg-type]
            timeout = min(limits.idle_keepalive, max(0.0, deadline - time.monotonic()))
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for waiter in (changed, stop):
                if waiter is not None and not waiter.done():
                    waiter.cancel()
            if reader in done:
                line = reader.result()
                if line.upper() != b"DONE":
                    raise ImapError("IDLE ended: DONE expected", status="BAD")
                return "IDLE terminated"
            if stop in done:
                conn.write(response.untagged_status("BYE", "Server shutting down", "UNAVAILABLE"))
                await conn.flush()
                raise ConnectionClosed()
            if changed is not None and changed in done and conn.selected is not None and not conn.selected.dirty:
                conn.selected.changed.clear()
            if conn.selected is not None and conn.selected.dirty:
                await conn.selected.send_updates(conn, expunge_ok=True)
                await conn.flush()
            elif not done:
                if time.monotonic() >= deadline:
                    conn.write(response.untagged_status("BYE", "Autologout; idle for too long"))
                    await conn.flush()
                    raise ConnectionClosed()
                conn.write(response.untagged_status("OK", "Still here"))
                await conn.flush()
    finally:
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
