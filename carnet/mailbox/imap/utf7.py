"""Modified UTF-7 for mailbox names of IMAP4rev1 clients (RFC 3501 §5.1.3).

Printable US-ASCII except ``&`` stands for itself; ``&`` is ``&-``; other characters are UTF-16 encoded in
modified base64 (``,`` instead of ``/``, no padding) between ``&`` and ``-``. IMAP4rev2 and ``UTF8=ACCEPT``
clients use UTF-8 names instead (RFC 9051 §5.1, RFC 6855 §3).
"""

from __future__ import annotations

import base64
import binascii

_BASE64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


class UTF7Error(ValueError):
    """A name that is not valid modified UTF-7."""


def _is_direct(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def encode(name: str) -> str:
    """UTF-8 text → modified UTF-7 (RFC 3501 §5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if _is_direct(ch):
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    """Modified UTF-7 → text; raises :class:`UTF7Error` on anything RFC 3501 §5.1.3 does not allow
    (8-bit or control characters, unterminated or non-canonical shifts, bad UTF-16)."""
    out: list[str] = []
    i = 0
    n = len(name)
    previous_shift = False
    while i < n:
        ch = name[i]
        if not _is_direct(ch):
            raise UTF7Error(f"character {ch!r} is not allowed in a modified UTF-7 name")
        if ch != "&":
            out.append(ch)
            i += 1
            previous_shift = False
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise UTF7Error("unterminated '&' shift in mailbox name")
        chunk = name[i + 1 : end]
        i = end + 1
        if not chunk:
            out.append("&")
            previous_shift = False
            continue
        if previous_shift:
            raise UTF7Error("two adjacent base64 shifts in mailbox name (not canonical)")
        if not all(c in _BASE64 for c in chunk):
            raise UTF7Error("invalid modified base64 in mailbox name")
        b64 = chunk.replace(",", "/")
        try:
            data = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise UTF7Error("invalid modified base64 in mailbox name") from None
        if len(data) % 2:
            raise UTF7Error("odd number of UTF-16 octets in mailbox name")
        try:
            text = data.decode("utf-16-be")
        except UnicodeDecodeError:
            raise UTF7Error("invalid UTF-16 in mailbox name") from None
        if any(_is_direct(c) for c in text):
            raise UTF7Error("printable ASCII encoded in base64 in mailbox name (not canonical)")
        if encode(text) != "&" + chunk + "-":
            raise UTF7Error("non-canonical modified UTF-7 in mailbox name")
        out.append(text)
        previous_shift = True
    return "".join(out)
