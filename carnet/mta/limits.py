"""Checks every received message passes before the gateway sees it, each answered with its SMTP reply.

- Line endings (RFC 5321 §2.3.8: CR and LF only ever as CRLF in SMTP). A bare CR or bare LF anywhere in the
  data is refused and the connection closed, whatever line the client meant it to end: that is how SMTP
  smuggling (a second message hidden behind ``\\n.\\n``, ``\\r.\\r``, ``\\n.\\r\\n`` …, CVE-2023-51764 and
  relatives) is stopped — the receiver's and the sender's views of where the message ends can only differ if such
  a sequence is there.
- Header block size, MIME nesting depth and MIME part count (RFC 2046 §5.1, RFC 2046 §5.2.1 for message/rfc822):
  bounded so that neither the S/MIME layer nor the store analyses unbounded structures.

Size (RFC 1870) and recipients (RFC 5321 §4.5.3.1.8) are enforced by the SMTP session as the envelope arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

from carnet.config import MtaLimits
from carnet.pki.smime import canon


@dataclass(frozen=True, slots=True)
class Refusal:
    """An SMTP reply refusing a message (``code`` 4xx/5xx, enhanced status, text) and whether to hang up."""

    code: int
    status: str
    text: str
    close: bool = False

    def reply(self) -> str:
        return f"{self.code} {self.status} {self.text}"


BARE_LINE_ENDING = Refusal(
    521, "5.5.2", "bare CR or LF in message data refused (RFC 5321 §2.3.8); closing the connection", close=True
)


def has_bare_line_ending(data: bytes) -> bool:
    """True when ``data`` holds a CR not followed by LF or an LF not preceded by CR (three C-speed scans)."""
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


def check_message(data: bytes, limits: MtaLimits) -> Refusal | None:
    """Everything a received message must satisfy; None when it does."""
    if has_bare_line_ending(data):
        return BARE_LINE_ENDING
    if len(data) > limits.max_message_size:
        return Refusal(552, "5.3.4", f"message exceeds the maximum size of {limits.max_message_size} octets")
    end = data.find(b"\r\n\r\n")
    header_size = len(data) if end < 0 else end + 2
    if header_size > limits.max_header_size:
        return Refusal(552, "5.3.4", f"header block exceeds {limits.max_header_size} octets")
    try:
        _Walker(limits).walk(data, 1)
    except _TooComplex as exc:
        return Refusal(554, "5.6.0", str(exc))
    except (canon.MimeError, ValueError):
        return None  # a broken MIME structure is the S/MIME layer's to report, not a limit
    return None


class _TooComplex(Exception):
    pass


class _Walker:
    def __init__(self, limits: MtaLimits) -> None:
        self.limits = limits
        self.parts = 0

    def walk(self, entity: bytes, depth: int) -> None:
        self.parts += 1
        if self.parts > self.limits.max_mime_parts:
            raise _TooComplex(f"message has more than {self.limits.max_mime_parts} MIME parts")
        if depth > self.limits.max_mime_depth:
            raise _TooComplex(f"MIME structure nested deeper than {self.limits.max_mime_depth} levels")
        header, body = canon.split_header_body(entity)
        if b"content-type" not in header.lower():
            return
        mime_type, params = canon.content_type(header)
        if mime_type.startswith("multipart/"):
            boundary = params.get("boundary", "")
            if not boundary:
                return
            _preamble, parts, _epilogue = canon.split_multipart(body, boundary)
            for part in parts:
                self.walk(part, depth + 1)
        elif mime_type in ("message/rfc822", "message/global"):
            self.walk(body, depth + 1)
