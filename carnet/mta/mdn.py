"""Message disposition notifications (RFC 8098), sent automatically on delivery to a local mailbox.

When a delivered message carries ``Disposition-Notification-To`` (RFC 8098 §2.1), carnet answers from the
recipient's mailbox, signed with the recipient's key, with the disposition
``automatic-action/MDN-sent-automatically; processed`` (§3.2.6.2, §3.2.6.3: the message was processed by the
recipient's platform; "displayed" is sent by the reader's client, or by the webmail once the reader consents,
through :func:`build_report` too). The MDN goes to the first address of the
field with a null envelope sender (§2.1). Never in reply to an MDN or a DSN (``multipart/report`` of either
kind, §2.1), nor to a message with ``Auto-Submitted`` other than ``no`` (RFC 3834 §2), nor to one with a null
envelope sender (the answer to a notification is never a notification).
"""

from __future__ import annotations

import quopri
import secrets
from email.header import Header

from carnet.mta import headers
from carnet.pki.smime import canon
from carnet.pki.smime.binding import parse_mailbox


def report_type(entity: bytes) -> str | None:
    """``delivery-status``/``disposition-notification``/… when ``entity`` is a multipart/report, else None."""
    try:
        header, _ = canon.split_header_body(entity)
        mime_type, params = canon.content_type(header)
    except ValueError:
        return None
    if mime_type != "multipart/report":
        return None
    return params.get("report-type", "").lower() or "unknown"


def requested(original_header: bytes, inner_entity: bytes, envelope_sender: str) -> str | None:
    """The address to send a "processed" MDN to, or None when none must be sent (see module docstring)."""
    if not envelope_sender:
        return None
    auto = (headers.get(original_header, "auto-submitted") or "no").split(";")[0].strip().lower()
    if auto != "no":
        return None
    if report_type(inner_entity) is not None or report_type(original_header + b"\r\n") is not None:
        return None
    value = headers.get(original_header, "disposition-notification-to")
    if not value:
        return None
    first = value.split(",")[0]
    try:
        return parse_mailbox(first.strip())
    except Exception:  # an unparseable field: no MDN (RFC 8098 §2.1 lets us ignore it)
        return None


def build_report(
    *,
    reporter: str,
    to: str,
    original_header: bytes,
    disposition: str,
    subject_label: str,
    human_text: str,
    reporting_ua: str,
    original_recipient: str | None,
    automatic: bool,
) -> bytes:
    """An unsigned MDN (RFC 8098 §3) from ``reporter`` to ``to`` about the message whose header is given: a
    multipart/report with the human-readable ``human_text`` (UTF-8, quoted-printable), the
    message/disposition-notification part with ``disposition`` (§3.2.6), and the original header
    (text/rfc822-headers; 8bit when it holds RFC 6532 UTF-8). ``automatic`` adds ``Auto-Submitted: auto-replied``
    (RFC 3834 §5); a manually sent MDN has none."""
    boundary = f"carnet-mdn-{secrets.token_hex(12)}"
    original_id = headers.get(original_header, "message-id")
    if original_id is not None and headers.MSG_ID.fullmatch(original_id) is None:
        original_id = None  # not a msg-id: neither copied into In-Reply-To nor reported
    subject = " ".join((headers.get(original_header, "subject") or "").split())
    domain = reporter.rpartition("@")[2]
    lines = [
        f"From: <{reporter}>",
        f"To: <{to}>",
        _subject_field(f"Disposition notification ({subject_label}): {subject}"[:900]),
        f"Date: {headers.date_now()}",
        f"Message-ID: {headers.new_message_id(domain)}",
        *(["Auto-Submitted: auto-replied"] if automatic else []),
    ]
    if original_id:
        lines += [f"In-Reply-To: {original_id}", f"References: {original_id}"]
    lines += [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=disposition-notification; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        quopri.encodestring(human_text.encode()).decode("ascii").replace("\n", "\r\n").rstrip("\r\n"),
        "",
        f"--{boundary}",
        "Content-Type: message/disposition-notification",
        "",
        f"Reporting-UA: {reporting_ua}",
    ]
    if original_recipient:
        lines.append(f"Original-Recipient: rfc822; {original_recipient}")
    lines.append(f"Final-Recipient: rfc822; {reporter}")
    if original_id:
        lines.append(f"Original-Message-ID: {original_id}")
    lines += [
        f"Disposition: {disposition}",
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        *([] if original_header.isascii() else ["Content-Transfer-Encoding: 8bit"]),  # RFC 6532 header: as is
        "",
    ]
    return "\r\n".join(lines).encode() + b"\r\n" + original_header + f"\r\n--{boundary}--\r\n".encode()


def build_mdn(
    *, recipient: str, to: str, original_header: bytes, reporting_ua: str, original_recipient: str | None
) -> bytes:
    """An unsigned "processed" MDN from ``recipient`` to ``to``, sent automatically on delivery (§3.2.6.3)."""
    return build_report(
        reporter=recipient,
        to=to,
        original_header=original_header,
        disposition="automatic-action/MDN-sent-automatically; processed",
        subject_label="processed",
        human_text=f"The message sent to {recipient} was received and processed by its messaging platform.\n"
        "This does not mean that the recipient has read it.\n",
        reporting_ua=f"{reporting_ua}; carnet",
        original_recipient=original_recipient,
        automatic=True,
    )


def _subject_field(value: str) -> str:
    """``Subject:`` with RFC 2047 encoded-words when the text is not ASCII."""
    if value.isascii():
        return f"Subject: {value}"
    return "Subject: " + Header(value, "utf-8", header_name="Subject").encode(linesep="\r\n")
