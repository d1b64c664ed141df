"""The webmail's second factor: time-based one-time passwords (TOTP, RFC 6238, on HOTP, RFC 4226).

Parameters are the ones every authenticator app supports: HMAC-SHA-1, 6 digits, a 30-second time step
(RFC 6238 §4, §5.2; RFC 4226 §5.3-5.4), and a 160-bit random secret (RFC 4226 §4 R6 recommends 160 bits),
shown base32 in an ``otpauth://`` URI (Google Authenticator "Key Uri Format") and as a QR code.

:func:`verify` accepts the code of the current step or of one step either side (RFC 6238 §5.2 recommends at most
one step of network delay / clock drift) and returns the matched step, which the caller stores: a later code is
accepted only for a strictly later step, so a code is never accepted twice (RFC 6238 §5.2: "the verifier MUST NOT
accept the second attempt of the OTP after the successful validation has been issued for the first OTP").

The secret is kept sealed in the database by :meth:`carnet.pki.keys.KeyVault.seal_secret` under the owner label
``totp:<mailbox id>`` (:func:`seal`, :func:`open_`): a blob copied onto another mailbox's row does not open.
"""

from __future__ import annotations

import hmac
import io
import re
from datetime import datetime
from typing import Final

import pyotp
import segno

from carnet.pki.keys import KeyVault, SealedKeyError

ISSUER: Final = "carnet"
DIGITS: Final = 6
INTERVAL: Final = 30  # seconds, RFC 6238 §5.2
#: Steps accepted either side of the current one (RFC 6238 §5.2: "at most one time step").
DRIFT_STEPS: Final = 1
_CODE = re.compile(r"[0-9]{6}")


def new_secret() -> str:
    """A fresh random secret, 32 base32 characters = 160 bits (RFC 4226 §4 R6), from the OS CSPRNG."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://totp/<issuer>:<account>?secret=…&issuer=…`` URI (Key Uri Format) for authenticator apps.

    SHA-1, 6 digits and 30 s are the format's defaults, hence not spelt out in the URI.
    """
    return _totp(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str, *, title: str) -> bytes:
    """``uri`` as a standalone SVG QR code (UTF-8, XML declaration), dark modules on white, with a ``<title>``.

    segno writes only ``<svg>``, ``<title>`` and one ``<path>``: no script, no external reference. Error correction
    level M (ISO/IEC 18004 §6.5.1) survives a screen's glare; the quiet zone is the standard 4 modules (§6.3.8).
    """
    qr = segno.make(uri, error="m", micro=False)
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=5, border=4, dark="#000", light="#fff", title=title, xmldecl=True, encoding="utf-8")
    return out.getvalue()


def verify(secret: str, code: str, *, last_step: int | None, now: datetime | None = None) -> int | None:
    """The time step (RFC 6238 §4.2 ``T``) ``code`` belongs to, or None when it is not accepted.

    Accepted: exactly 6 ASCII digits once spaces are removed, equal to the code of the current step or of one step
    either side (RFC 6238 §5.2), for a step strictly after ``last_step`` (replay refused, §5.2). The current step is
    preferred when a code matches several. Every candidate is compared in constant time (``hmac.compare_digest``).
    ``now`` must be timezone-aware (default: the current time).
    """
    cleaned = code.replace(" ", "")
    if not cleaned.isascii() or _CODE.fullmatch(cleaned) is None:
        return None
    when = datetime.now().astimezone() if now is None else now
    if when.tzinfo is None:
        raise ValueError("verify() needs a timezone-aware datetime")
    current = int(when.timestamp()) // INTERVAL
    totp = _totp(secret)
    matched: int | None = None
    for step in (current, current - 1, current + 1):
        fresh = last_step is None or step > last_step
        equal = hmac.compare_digest(totp.generate_otp(step).encode(), cleaned.encode())
        if equal and fresh and matched is None:
            matched = step
    return matched


def seal(vault: KeyVault, secret: str, mailbox_id: int) -> bytes:
    """The secret sealed for mailbox ``mailbox_id`` (owner label ``totp:<id>``)."""
    return vault.seal_secret(secret.encode("ascii"), _owner(mailbox_id))


def open_(vault: KeyVault, blob: bytes, mailbox_id: int) -> str:
    """The secret sealed by :func:`seal` for ``mailbox_id``; :class:`SealedKeyError` if it does not open."""
    raw = vault.open_secret(blob, _owner(mailbox_id))
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise SealedKeyError(f"sealed TOTP secret of mailbox {mailbox_id} is not base32 text") from None


def _owner(mailbox_id: int) -> str:
    return f"totp:{mailbox_id}"


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)
