"""Key generation and the key vault: AES-256-GCM under a scrypt-derived KEK, AAD bound to the owner."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from carnet.config import load_settings
from carnet.pki import keys
from carnet.pki.keys import KeyVault, SealedKeyError, UnsupportedKeyType, generate_key, key_type_of


def _pkcs8(key: keys.PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(("key_type", "kind", "size"), [("rsa2048", rsa.RSAPrivateKey, 2048),
                                                        ("rsa3072", rsa.RSAPrivateKey, 3072),
                                                        ("p256", ec.EllipticCurvePrivateKey, 256)])
def test_generate_each_key_type(key_type: str, kind: type, size: int) -> None:
    key = generate_key(key_type)
    assert isinstance(key, kind)
    assert key.key_size == size
    assert key_type_of(key) == key_type
    assert key_type_of(key.public_key()) == key_type


def test_unsupported_key_type_is_a_typed_error() -> None:
    with pytest.raises(UnsupportedKeyType, match="rsa1024"):
        generate_key("rsa1024")
    with pytest.raises(UnsupportedKeyType):
        key_type_of(ec.generate_private_key(ec.SECP384R1()))


@pytest.mark.parametrize("key_type", ["rsa2048", "p256"])
def test_seal_and_open_round_trip(key_type: str) -> None:
    vault = KeyVault(b"a long random key-encryption secret")
    key = generate_key(key_type)
    blob = vault.seal(key, "cert:abc123")
    assert blob[0] == keys.SEALED_KEY_VERSION
    assert _pkcs8(key) not in blob
    opened = vault.open(blob, "cert:abc123")
    assert _pkcs8(opened) == _pkcs8(key)


def test_each_seal_uses_a_fresh_nonce() -> None:
    vault = KeyVault(b"secret-one")
    key = generate_key("p256")
    first, second = vault.seal(key, "ca:persons"), vault.seal(key, "ca:persons")
    assert first[1:13] != second[1:13]
    assert first != second


def test_wrong_secret_fails_with_a_typed_error() -> None:
    blob = KeyVault(b"the right secret").seal(generate_key("p256"), "ca:persons")
    with pytest.raises(SealedKeyError, match="does not open"):
        KeyVault(b"the wrong secret").open(blob, "ca:persons")


@pytest.mark.parametrize("position", [1, 12, 13, 40, -1])
def test_tampered_blob_fails(position: int) -> None:
    vault = KeyVault(b"secret")
    blob = bytearray(vault.seal(generate_key("p256"), "ca:persons"))
    blob[position] ^= 0x01
    with pytest.raises(SealedKeyError):
        vault.open(bytes(blob), "ca:persons")


def test_blob_moved_to_another_owner_does_not_open() -> None:
    vault = KeyVault(b"secret")
    blob = vault.seal(generate_key("p256"), "cert:01")
    with pytest.raises(SealedKeyError, match="cert:02"):
        vault.open(blob, "cert:02")
    with pytest.raises(SealedKeyError):
        vault.open(blob, "ca:persons")


@pytest.mark.parametrize("blob", [b"", b"\x01" + b"\x00" * 20, b"\x02" + b"\x00" * 64])
def test_unknown_or_truncated_format_fails(blob: bytes) -> None:
    with pytest.raises(SealedKeyError, match="known format"):
        KeyVault(b"secret").open(blob, "ca:persons")


def test_empty_secret_and_owner_refused() -> None:
    with pytest.raises(SealedKeyError):
        KeyVault(b"")
    with pytest.raises(SealedKeyError):
        KeyVault(b"secret").seal(generate_key("p256"), "")


def test_kek_is_derived_once_per_process_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = keys.Scrypt

    def counting_scrypt(**kwargs: object) -> object:
        calls.append(1)
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(keys, "Scrypt", counting_scrypt)
    secret = b"a secret used by this test only"
    KeyVault(secret)
    KeyVault(secret)
    assert len(calls) == 1
    KeyVault(secret + b"!")
    assert len(calls) == 2


def test_repr_and_logs_leak_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = b"super-secret-value-42"
    vault = KeyVault(secret)
    key = generate_key("rsa2048")
    vault.open(vault.seal(key, "cert:1"), "cert:1")
    assert "super-secret" not in repr(vault)
    assert keys._derive_kek(secret).hex() not in repr(vault)
    assert "PRIVATE" not in repr(key)
    assert caplog.text == ""


def test_vault_from_settings_uses_the_configured_or_generated_secret(tmp_path: Path) -> None:
    key = generate_key("p256")
    configured = load_settings(data_dir=tmp_path / "a", key_secret="configured secret")
    blob = KeyVault.from_settings(configured).seal(key, "cert:1")
    assert KeyVault(b"configured secret").open(blob, "cert:1")

    generated = load_settings(data_dir=tmp_path / "b")
    blob = KeyVault.from_settings(generated).seal(key, "cert:1")
    assert (tmp_path / "b" / "secrets" / "kek").stat().st_mode & 0o777 == 0o600
    assert KeyVault.from_settings(load_settings(data_dir=tmp_path / "b")).open(blob, "cert:1")
    with pytest.raises(SealedKeyError):
        KeyVault.from_settings(configured).open(blob, "cert:1")
