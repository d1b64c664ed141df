"""ENABLE (RFC 5161) of IMAP4rev2 (RFC 9051 §6.3.1), UTF8=ACCEPT (RFC 6855 §3), CONDSTORE and QRESYNC
(RFC 7162 §3.1, §3.2.3 — QRESYNC implies CONDSTORE).

CONDSTORE is also enabled implicitly by the "CONDSTORE-enabling commands" of RFC 7162 §3.1 (SELECT (CONDSTORE),
FETCH … MODSEQ / CHANGEDSINCE, SEARCH MODSEQ, STORE UNCHANGEDSINCE); from then on flag updates carry MODSEQ. The
handlers of those commands set it; the MODSEQ machinery itself lives in the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carnet.mailbox.imap.parser import Command, Enable

if TYPE_CHECKING:
    from carnet.mailbox.imap.server import Connection


async def enable(conn: Connection, cmd: Command) -> str:
    """ENABLE (RFC 5161 §3.1): ``* ENABLED`` lists what this command newly enabled; unknown names are ignored."""
    args: Enable = cmd.args
    enabled: list[str] = []
    for name in args.capabilities:
        if name == "IMAP4REV2" and not conn.rev2:
            conn.rev2 = conn.utf8 = True  # rev2 names are UTF-8 (RFC 9051 §5.1)
            enabled.append("IMAP4rev2")
        elif name == "UTF8=ACCEPT" and not (conn.utf8 and "UTF8=ACCEPT" in conn.enabled):
            conn.utf8 = True
            enabled.append("UTF8=ACCEPT")
        elif name == "CONDSTORE" and "CONDSTORE" not in conn.enabled:
            conn.condstore = True
            enabled.append("CONDSTORE")
        elif name == "QRESYNC" and not conn.qresync:
            conn.qresync = conn.condstore = True
            enabled.append("QRESYNC")
    conn.enabled.update(e.upper() for e in enabled)
    conn.untagged("ENABLED" + "".join(f" {name}" for name in enabled))
    return "ENABLE completed"
