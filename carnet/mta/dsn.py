"""Delivery status notifications (RFC 3464, with RFC 3461 envelope parameters and RFC 6522 multipart/report).

carnet writes a DSN when a remote recipient fails permanently or its queue lifetime ends (``Action: failed``),
when one has waited longer than ``mta.delay_dsn_after`` (``Action: delayed``, once), and when relayed mail is
accepted for some recipients but not others (``Action: failed`` for those). Only if the recipient's ``NOTIFY``
asks for it (absent: FAILURE and DELAY, RFC 3461 §4.1) and the envelope sender is not null (RFC 5321 §4.5.5: no
DSN about a DSN). The report is sent with a null envelope sender from ``postmaster@DOMAIN`` and, like everything
carnet emits, signed by the gateway (with the postmaster certificate of the organisations CA).

Original content returned: the header only (``text/rfc822-headers``, RFC 6522 §4) unless ``RET=FULL``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from carnet.mta import headers

NOTIFY_DEFAULT = frozenset({"FAILURE", "DELAY"})


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """One ``per-recipient-fields`` block (RFC 3464 §2.3)."""

    recipient: str
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # RFC 3463 code, e.g. "5.1.1"
    diagnostic: str = ""  # the remote SMTP reply, when there was one
    remote_mta: str = ""
    orcpt: str | None = None
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None


def wants(notify: str | None, action: str) -> bool:
    """Whether a recipient's NOTIFY (RFC 3461 §4.1) asks for a DSN of ``action``."""
    requested = {n.strip().upper() for n in notify.split(",")} if notify else set(NOTIFY_DEFAULT)
    if "NEVER" in requested:
        return False
    needed = {"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS", "relayed": "SUCCESS"}[action]
    return needed in requested


def xtext_decode(value: str) -> str:
    """RFC 3461 §4: ``+XX`` hexadecimal escapes of xtext."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "+" and i + 2 < len(value) + 1:
            try:
                out.append(chr(int(value[i + 1 : i + 3], 16)))
                i += 3
                continue
            except ValueError:
                pass
        out.append(value[i])
        i += 1
    return "".join(out)


def _date(moment: datetime) -> str:
    return format_datetime(moment.replace(microsecond=0))


def build_dsn(
    *,
    reporting_mta: str,
    postmaster: str,
    to: str,
    original: bytes,
    recipients: Sequence[RecipientStatus],
    arrival: datetime,
    envid: str | None = None,
    ret: str | None = None,
) -> bytes:
    """An unsigned RFC 3464 report about ``original`` for ``recipients`` (all of the same kind of action)."""
    delayed = all(r.action == "delayed" for r in recipients)
    boundary = f"carnet-dsn-{secrets.token_hex(12)}"
    subject = "Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"
    original_header, _ = headers.split_message(original)
    original_id = headers.get(original_header, "message-id") if original_header else None
    original_subject = headers.get(original_header, "subject") if original_header else None
    domain = postmaster.rpartition("@")[2]
    lines = [
        f"From: Mail Delivery System <{postmaster}>",
        f"To: <{to}>",
        f"Subject: {subject}",
        f"Date: {headers.date_now()}",
        f"Message-ID: {headers.new_message_id(domain)}",
        "Auto-Submitted: auto-replied",
    ]
    if original_id:
        lines.append(f"In-Reply-To: {original_id}")
        lines.append(f"References: {original_id}")
    lines += [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated delivery status notification (RFC 3464).",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
    ]
    about = f' "{original_subject}"' if original_subject else ""
    if delayed:
        lines.append(f"Your message{about} has not been delivered yet to:")
    else:
        lines.append(f"Your message{about} could not be delivered to:")
    lines.append("")
    for r in recipients:
        lines.append(f"  <{r.recipient}>: {r.diagnostic or r.status}")
    lines.append("")
    lines.append("carnet will keep trying until the date given below." if delayed else "No further attempt is made.")
    lines += ["", f"--{boundary}", "Content-Type: message/delivery-status", ""]
    lines.append(f"Reporting-MTA: dns; {reporting_mta}")
    if envid:
        lines.append(f"Original-Envelope-Id: {envid}")
    lines.append(f"Arrival-Date: {_date(arrival)}")
    for r in recipients:
        lines.append("")
        if r.orcpt:
            lines.append(f"Original-Recipient: {r.orcpt}")
        lines.append(f"Final-Recipient: rfc822; {r.recipient}")
        lines.append(f"Action: {r.action}")
        lines.append(f"Status: {r.status}")
        if r.remote_mta:
            lines.append(f"Remote-MTA: dns; {r.remote_mta}")
        if r.diagnostic:
            lines.append(f"Diagnostic-Code: smtp; {' '.join(r.diagnostic.split())[:900]}")
        if r.last_attempt:
            lines.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")
        if r.will_retry_until:
            lines.append(f"Will-Retry-Until: {_date(r.will_retry_until)}")
    lines.append("")
    if (ret or "").upper() == "FULL":
        lines += [f"--{boundary}", "Content-Type: message/rfc822", ""]
        text = "\r\n".join(lines).encode() + b"\r\n" + original
        if not original.endswith(b"\r\n"):
            text += b"\r\n"
    else:
        lines += [f"--{boundary}", "Content-Type: text/rfc822-headers", ""]
        text = "\r\n".join(lines).encode() + b"\r\n" + original_header
    return text + f"\r\n--{boundary}--\r\n".encode()
