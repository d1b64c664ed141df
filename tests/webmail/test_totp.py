"""TOTP second factor (RFC 6238) and KeyVault secret sealing."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from carnet.pki import keys
from carnet.pki.keys import KeyVault, SealedKeyError
from carnet.webmail import totp

#: RFC 6238 Appendix B: the SHA-1 seed is the ASCII string "12345678901234567890"; 8-digit codes, we use 6.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"), (1234567890, "89005924")]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def vault() -> KeyVault:
    return KeyVault(b"webmail test key-encryption secret")


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


# Secrets and URIs ---------------------------------------------------------------------------------------------


def test_new_secret_is_160_bits_of_base32() -> None:
    secret = totp.new_secret()
    assert len(secret) == 32
    assert len(base64.b32decode(secret)) == 20
    assert totp.new_secret() != secret


def test_provisioning_uri_follows_the_key_uri_format() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "camille.dupont@carnet.test", totp.ISSUER)
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert parts.path == "/carnet:camille.dupont%40carnet.test"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["carnet"]
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert (parsed.secret, parsed.digits, parsed.interval, parsed.digest().name) == (secret, 6, 30, "sha1")


# Verification -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "expected"), RFC_VECTORS)
def test_rfc6238_test_vectors(seconds: int, expected: str) -> None:
    six = expected[-6:]  # RFC 4226 §5.3: the 6-digit code is the same truncation, modulo 10^6
    assert pyotp.TOTP(RFC_SECRET).at(seconds) == six
    assert totp.verify(RFC_SECRET, six, last_step=None, now=at(seconds)) == seconds // 30


def test_current_step_and_one_step_of_drift_are_accepted() -> None:
    secret = totp.new_secret()
    now = at(1_700_000_015)
    step = 1_700_000_015 // 30
    for offset in (-1, 0, 1):
        assert totp.verify(secret, code_at(secret, step + offset), last_step=None, now=now) == step + offset


def test_two_steps_of_drift_are_refused() -> None:
    secret = totp.new_secret()
    now = at(1_700_000_015)
    step = 1_700_000_015 // 30
    current = code_at(secret, step)
    for offset in (-2, 2):
        code = code_at(secret, step + offset)
        if code != current and code not in (code_at(secret, step - 1), code_at(secret, step + 1)):
            assert totp.verify(secret, code, last_step=None, now=now) is None


def test_a_code_is_accepted_once() -> None:
    secret = totp.new_secret()
    now = at(1_700_000_000)
    code = pyotp.TOTP(secret).at(now)
    step = totp.verify(secret, code, last_step=None, now=now)
    assert step is not None
    assert totp.verify(secret, code, last_step=step, now=now) is None
    assert totp.verify(secret, code, last_step=step, now=now + timedelta(seconds=20)) is None
    # an earlier step's code is refused once a later step was used
    previous = code_at(secret, step - 1)
    assert totp.verify(secret, previous, last_step=step, now=now) is None
    assert totp.verify(secret, code, last_step=step - 1, now=now) == step


def test_the_next_code_is_accepted_after_one_was_used() -> None:
    secret = totp.new_secret()
    now = at(1_700_000_000)
    step = totp.verify(secret, pyotp.TOTP(secret).at(now), last_step=None, now=now)
    assert step is not None
    later = now + timedelta(seconds=30)
    assert totp.verify(secret, pyotp.TOTP(secret).at(later), last_step=step, now=later) == step + 1


def test_spaces_are_ignored() -> None:
    secret = totp.new_secret()
    now = at(1_700_000_000)
    code = pyotp.TOTP(secret).at(now)
    assert totp.verify(secret, f" {code[:3]} {code[3:]} ", last_step=None, now=now) is not None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda c: c[:5],  # too short
        lambda c: c + "0",  # too long
        lambda c: c[:5] + "a",
        lambda c: c.translate(str.maketrans("0123456789", "０１２３４５６７８９")),  # full-width digits
        lambda c: c.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),  # Arabic-Indic digits
        lambda c: "",
        lambda c: c[:3] + "-" + c[3:],
        lambda c: c + "\n",
    ],
)
def test_malformed_codes_are_refused(mangle: object) -> None:
    secret = totp.new_secret()
    now = at(1_700_000_000)
    code = pyotp.TOTP(secret).at(now)
    assert callable(mangle)
    assert totp.verify(secret, mangle(code), last_step=None, now=now) is None


def test_wrong_code_is_refused() -> None:
    secret = totp.new_secret()
    now = at(1_700_000_000)
    step = 1_700_000_000 // 30
    window = {code_at(secret, s) for s in (step - 1, step, step + 1)}
    wrong = next(c for c in ("000000", "123456", "999999", "314159") if c not in window)
    assert totp.verify(secret, wrong, last_step=None, now=now) is None


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        totp.verify(totp.new_secret(), "123456", last_step=None, now=datetime(2026, 1, 1))


def test_default_now_is_the_current_time() -> None:
    secret = totp.new_secret()
    assert totp.verify(secret, pyotp.TOTP(secret).now(), last_step=None) is not None


# QR code ------------------------------------------------------------------------------------------------------


def test_qr_svg_is_a_standalone_accessible_svg_without_scripts() -> None:
    uri = totp.provisioning_uri(totp.new_secret(), "camille.dupont@carnet.test", totp.ISSUER)
    svg = totp.qr_svg(uri, title="Code QR <carnet> & co")
    assert svg.startswith(b"<?xml")
    root = ET.fromstring(svg)  # noqa: S314  (our own output, the subject of the test)
    assert root.tag == f"{SVG}svg"
    title = root.find(f"{SVG}title")
    assert title is not None
    assert title.text == "Code QR <carnet> & co"
    tags = {element.tag.removeprefix(SVG) for element in root.iter()}
    assert tags <= {"svg", "title", "g", "path"}
    for element in root.iter():
        for name, value in element.attrib.items():
            assert "href" not in name
            assert not name.startswith("on")
            assert "url(" not in value
    assert b"<script" not in svg.lower()
    assert b'stroke="#000"' in svg


# Sealing ------------------------------------------------------------------------------------------------------


def test_secret_sealing_round_trip(vault: KeyVault) -> None:
    blob = vault.seal_secret(b"\x00secret bytes\xff", "totp:7")
    assert blob[0] == keys.SEALED_SECRET_VERSION
    assert b"secret bytes" not in blob
    assert vault.open_secret(blob, "totp:7") == b"\x00secret bytes\xff"
    assert vault.seal_secret(b"same", "totp:7") != vault.seal_secret(b"same", "totp:7")  # random nonces


def test_secret_does_not_open_for_another_owner_or_secret(vault: KeyVault) -> None:
    blob = vault.seal_secret(b"seed", "totp:7")
    with pytest.raises(SealedKeyError):
        vault.open_secret(blob, "totp:8")
    with pytest.raises(SealedKeyError):
        KeyVault(b"another key-encryption secret").open_secret(blob, "totp:7")
    with pytest.raises(SealedKeyError):
        vault.seal_secret(b"seed", "")


def test_altered_or_unknown_secret_blobs_are_refused(vault: KeyVault) -> None:
    blob = vault.seal_secret(b"seed", "totp:7")
    altered = blob[:-1] + bytes([blob[-1] ^ 1])
    for bad in (altered, b"\x02" + blob[1:], blob[:20], b""):
        with pytest.raises(SealedKeyError):
            vault.open_secret(bad, "totp:7")


def test_keys_and_secrets_do_not_open_as_each_other(vault: KeyVault) -> None:
    key = keys.generate_key("p256")
    key_blob = vault.seal(key, "totp:7")
    with pytest.raises(SealedKeyError):
        vault.open_secret(key_blob, "totp:7")
    secret_blob = vault.seal_secret(b"seed", "cert:01")
    with pytest.raises(SealedKeyError):
        vault.open(secret_blob, "cert:01")


def test_totp_seal_and_open(vault: KeyVault) -> None:
    secret = totp.new_secret()
    blob = totp.seal(vault, secret, 42)
    assert totp.open_(vault, blob, 42) == secret
    assert vault.open_secret(blob, "totp:42") == secret.encode()
    with pytest.raises(SealedKeyError):
        totp.open_(vault, blob, 43)
