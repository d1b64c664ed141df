"""Building what the webmail sends: a reply (RFC 5322 §3.6, MIME RFC 2045/2046/2183/2231) and a "displayed" MDN.

:func:`build_message` makes an unsigned RFC 5322 message with CRLF line endings, ready for the MTA's submission
path, which adds the ``Message-ID`` (RFC 6409 §8.3), signs and encrypts (RFC 8551). Every part is 7-bit clean:
the text is quoted-printable UTF-8 and attachments are base64 (RFC 2045 §6.7, §6.8), so the signed content
survives any relay unchanged (RFC 8551 §3.1.2/§3.1.3: 7-bit transfer encodings for signed data).

Attachments (:func:`check_upload`) are limited to PDF, PNG and JPEG, recognised by their magic numbers, never by
the name or the type the browser declared: a document that is not one of them (HTML, SVG, an executable…) is
refused, however it is named. File names are cleaned (base name, no control or bidirectional-format characters,
at most :data:`MAX_FILENAME` characters, the extension of the sniffed type) and written with RFC 2231 parameter
encoding when they are not ASCII (via :mod:`email`).

Header fields come from the user (subject, display name) or from stored messages (In-Reply-To, References): a CR,
LF or other control character in them is refused (``ComposeError("header")``), so no field can be injected.

:func:`build_displayed_mdn` answers a ``Disposition-Notification-To`` request once the reader, having seen the
message, agreed to send a receipt: disposition ``manual-action/MDN-sent-manually; displayed`` (RFC 8098 §3.2.6).
It is built by :func:`carnet.mta.mdn.build_report`, as the platform's automatic "processed" MDN is, but carries no
``Auto-Submitted`` field: the reader sent it, it is not an automatic response (RFC 3834 §5, "auto-replied" is for
automatic responses). Never about an MDN or DSN (RFC 8098 §2.1): such an original is refused.
"""

from __future__ import annotations

import email.policy
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import Final

from carnet.mta import headers
from carnet.mta.mdn import build_report, report_type

ALLOWED_TYPES: Final = frozenset({"application/pdf", "image/png", "image/jpeg"})
MAX_ATTACHMENT: Final = 10 * 1024 * 1024
MAX_TOTAL: Final = 20 * 1024 * 1024
MAX_ATTACHMENTS: Final = 10
MAX_BODY: Final = 200_000  # characters
MAX_SUBJECT: Final = 250  # characters
MAX_FILENAME: Final = 120  # characters
MAX_REFERENCES: Final = 20  # message ids kept in References

#: (magic number, content type, extension) — PDF 1.7 (ISO 32000-1 §7.5.2), PNG (RFC 2083 §3.1), JPEG SOI + marker.
_MAGIC: Final = (
    (b"%PDF-", "application/pdf", ".pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
)
_EXTENSIONS: Final = {"application/pdf": {".pdf"}, "image/png": {".png"}, "image/jpeg": {".jpg", ".jpeg"}}
_KNOWN_EXTENSIONS: Final = frozenset({".pdf", ".png", ".jpg", ".jpeg", ".jpe", ".gif", ".svg", ".html", ".htm"})
_FALLBACK_STEM: Final = "piece-jointe"
_LANG_TAG: Final = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")  # RFC 5646 language tag, simplified
_REPLY_PREFIX: Final = re.compile(r"re\s?:", re.IGNORECASE)


class ComposeError(Exception):
    """The message cannot be built; ``code`` is a message key for the page, ``detail`` says what for the logs.

    Codes: ``attachment_type``, ``attachment_size`` (one attachment, or all together, too large),
    ``attachment_count``, ``empty_body``, ``body_length``, ``subject_length``, ``header`` (a control character in a
    header field, an unusable address or language tag), ``mdn_refused`` (an MDN about an MDN or DSN).
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


def sniff(data: bytes) -> tuple[str, str] | None:
    """(content type, extension) of ``data`` by its magic number when it is an allowed type, else None."""
    for magic, content_type, extension in _MAGIC:
        if data.startswith(magic):
            return content_type, extension
    return None


def check_upload(upload: Upload) -> Upload:
    """The upload with its sniffed type and a clean file name; :class:`ComposeError` if it cannot be sent.

    The declared ``content_type`` is ignored (RFC 2046 §4.5.2 is no defence: the browser states what it guesses).
    """
    sniffed = sniff(upload.data)
    if sniffed is None:
        raise ComposeError("attachment_type", f"{upload.filename!r} is not a PDF, PNG or JPEG document")
    if len(upload.data) > MAX_ATTACHMENT:
        raise ComposeError("attachment_size", f"{upload.filename!r} is {len(upload.data)} bytes (max {MAX_ATTACHMENT})")
    content_type, extension = sniffed
    return Upload(clean_filename(upload.filename, content_type, extension), content_type, upload.data)


def clean_filename(name: str, content_type: str, extension: str) -> str:
    """A safe file name (RFC 2183 §2.3: the receiver must not trust it, the sender may as well send a clean one)."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] not in "CZ" or ch == " ")
    name = " ".join(name.split()).strip(" .")
    stem, dot, suffix = name.rpartition(".")
    current = f".{suffix.lower()}" if dot else ""
    if current not in _EXTENSIONS[content_type]:
        if current in _KNOWN_EXTENSIONS:
            name = stem
        name = name.strip(" .")
        current = extension
    else:
        name = stem.strip(" .")
    if not name:
        name = _FALLBACK_STEM
    return name[: MAX_FILENAME - len(current)].rstrip(" .") + current


def reply_subject(subject: str) -> str:
    """``Re: subject`` unless it already starts with ``Re:`` in any case (RFC 5322 §3.6.5)."""
    subject = " ".join(subject.split())
    if _REPLY_PREFIX.match(subject):
        return subject
    return f"Re: {subject}".rstrip()


def build_message(
    *,
    from_address: str,
    from_name: str,
    to: str,
    subject: str,
    body: str,
    in_reply_to: str = "",
    references: str = "",
    attachments: Sequence[Upload] = (),
    lang: str = "fr",
) -> bytes:
    """The message as CRLF bytes (RFC 5322): Date, From, To, Subject, In-Reply-To, References, Content-Language,
    a quoted-printable UTF-8 text body and, when there are attachments, a multipart/mixed (RFC 2046 §5.1.3).

    ``references`` is the parent's References field and ``in_reply_to`` the parent's Message-ID: the new References
    is the former followed by the latter (RFC 5322 §3.6.4), without duplicates, and at most :data:`MAX_REFERENCES`
    ids: the thread's root and the last ones (trimmed from the middle, as common clients do; §3.6.4 sets no limit).
    ``in_reply_to`` is left out when it is not a msg-id. ``to`` is one address, bare or ``Name <address>``.
    ``attachments`` must have gone through :func:`check_upload`; they are checked again.
    """
    for field, value in (("From", from_address), ("From", from_name), ("To", to), ("Subject", subject)):
        _no_controls(field, value)
    _no_controls("In-Reply-To", in_reply_to)  # References is only mined for message ids (_thread)
    if len(subject) > MAX_SUBJECT:
        raise ComposeError("subject_length", f"subject is {len(subject)} characters (max {MAX_SUBJECT})")
    if len(body) > MAX_BODY:
        raise ComposeError("body_length", f"body is {len(body)} characters (max {MAX_BODY})")
    if not body.strip() and not attachments:
        raise ComposeError("empty_body", "neither text nor attachment")
    if len(attachments) > MAX_ATTACHMENTS:
        raise ComposeError("attachment_count", f"{len(attachments)} attachments (max {MAX_ATTACHMENTS})")
    checked = [check_upload(upload) for upload in attachments]
    total = sum(len(upload.data) for upload in checked)
    if total > MAX_TOTAL:
        raise ComposeError("attachment_size", f"attachments total {total} bytes (max {MAX_TOTAL})")
    if _LANG_TAG.fullmatch(lang) is None:
        raise ComposeError("header", f"Content-Language {lang!r} is not a language tag")
    # A parent whose Message-ID is not a msg-id (seen in the wild) is still answered, without In-Reply-To.
    parent_id = in_reply_to.strip() if headers.MSG_ID.fullmatch(in_reply_to.strip()) else ""

    message = EmailMessage(policy=email.policy.SMTP)
    message["Date"] = format_datetime(datetime.now().astimezone().replace(microsecond=0))
    message["From"] = _address("From", from_address, from_name)
    recipients = getaddresses([to])
    if len(recipients) != 1:
        raise ComposeError("header", f"To {to[:80]!r} is not one address")
    message["To"] = _address("To", recipients[0][1], recipients[0][0])
    message["Subject"] = subject
    if parent_id:
        message["In-Reply-To"] = parent_id
    thread = _thread(references, parent_id)
    if thread:
        message["References"] = " ".join(thread)
    message.set_content(_text(body), subtype="plain", charset="utf-8", cte="quoted-printable")
    message["Content-Language"] = lang  # RFC 3282 (set_content clears Content-* fields)
    if checked:
        message.make_mixed()  # moves the Content-* fields, Content-Language too, to the text part
        message["Content-Language"] = lang
        for upload in checked:
            maintype, _, subtype = upload.content_type.partition("/")
            message.add_attachment(upload.data, maintype=maintype, subtype=subtype, filename=upload.filename)
        for part in message.iter_parts():
            del part["MIME-Version"]  # only the top-level header carries it (RFC 2045 §4)
    return message.as_bytes(policy=email.policy.SMTP)


def build_displayed_mdn(
    *, reader: str, to: str, original_header: bytes, original_recipient: str | None = None
) -> bytes:
    """An unsigned ``displayed`` MDN (RFC 8098 §3) from ``reader`` to ``to`` about the message whose header is given.

    To be built only after the reader chose to send it (``MDN-sent-manually``, RFC 8098 §3.2.6.1). The human part
    says, in French then English, that the message was displayed — not that it was read or understood (§3.2.6.2).
    """
    for field, value in (("From", reader), ("To", to), ("Original-Recipient", original_recipient or "")):
        _no_controls(field, value)
        if value and ("@" not in value or any(ch in value for ch in ' <>,;"')):
            raise ComposeError("header", f"{field} {value[:80]!r} is not an address")
    if not reader or not to:
        raise ComposeError("header", "an MDN needs a reader and a recipient")
    if not original_header.endswith(b"\r\n"):
        original_header += b"\r\n"
    if report_type(original_header + b"\r\n") is not None:
        raise ComposeError("mdn_refused", "no MDN about a report (RFC 8098 §2.1)")
    human = "\n".join(
        [
            f"Le message envoyé à {reader} a été affiché à l'écran de son destinataire.",
            "Cela ne garantit pas qu'il ait été lu ni compris.",
            "",
            f"The message sent to {reader} has been displayed on its recipient's screen.",
            "This is no guarantee that it has been read or understood.",
            "",
        ]
    )
    try:
        return build_report(
            reporter=reader,
            to=to,
            original_header=original_header,
            disposition="manual-action/MDN-sent-manually; displayed",
            subject_label="displayed",
            human_text=human,
            reporting_ua=f"{reader.rpartition('@')[2]}; carnet webmail",
            original_recipient=original_recipient,
            automatic=False,
        )
    except headers.HeaderError as exc:
        raise ComposeError("header", f"original header: {exc}") from None


def _no_controls(field: str, value: str) -> None:
    """Refuse CR, LF and every other control character (tab aside) in a header field's value (RFC 5322 §2.2)."""
    if any(unicodedata.category(ch) == "Cc" and ch != "\t" for ch in value) or "\u2028" in value or "\u2029" in value:
        raise ComposeError("header", f"{field} contains a control character")


def _address(field: str, addr_spec: str, display_name: str) -> Address:
    addr_spec = addr_spec.strip()
    local, at, domain = addr_spec.rpartition("@")
    if not at or not local or not domain or any(ch in addr_spec for ch in ' <>,;:"()[]\\'):
        raise ComposeError("header", f"{field} {addr_spec[:80]!r} is not an address")
    try:
        return Address(display_name=" ".join(display_name.split()), username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise ComposeError("header", f"{field} {addr_spec[:80]!r}: {exc}") from None


def _thread(references: str, parent_id: str) -> list[str]:
    """The References of a reply: the parent's, then the parent, without duplicates, root + the last ids."""
    ids: list[str] = []
    for token in [*headers.MSG_ID.findall(references), parent_id]:
        if token and token not in ids:
            ids.append(token)
    if len(ids) > MAX_REFERENCES:
        ids = [ids[0], *ids[-(MAX_REFERENCES - 1) :]]
    return ids


def _text(body: str) -> str:
    """The body with LF line ends (the policy writes CRLF) and a final line end."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"
