"""Proof against a real peer: OpenSSL's ``cms`` command opens what carnet encrypts, and carnet what OpenSSL encrypts.

Every test runs ``openssl`` (3.x) in a subprocess on files in ``tmp_path``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import testpki
from testpki import build_test_pki

from carnet.pki.smime.envelope import (
    DecryptError,
    DecryptionKey,
    decrypt_data,
    decrypt_message,
    encrypt_data,
    encrypt_message,
)

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
ENTITY = b"Content-Type: text/plain; charset=utf-8\r\n\r\nR\xc3\xa9sultats d'analyse: normaux.\r\n"
MESSAGE = b"From: alice@carnet.test\r\nTo: bob@carnet.test\r\nSubject: Analyses\r\nMIME-Version: 1.0\r\n" + ENTITY
PEOPLE = ("alice", "bob", "carol_ec")


@pytest.fixture(scope="module")
def pki() -> testpki.TestPki:
    return build_test_pki()


@pytest.fixture(scope="module")
def files(pki: testpki.TestPki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """``name -> (key.pem, cert.pem)`` for alice, bob (RSA) and carol (P-256)."""
    directory = tmp_path_factory.mktemp("openssl-envelope")
    return {name: getattr(pki, name).write(directory, name) for name in PEOPLE}


def openssl(*args: str | Path, stdin: bytes | None = None) -> bytes:
    result = subprocess.run([OPENSSL, *map(str, args)], input=stdin, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def key_of(pki: testpki.TestPki, name: str) -> DecryptionKey:
    issued = getattr(pki, name)
    return DecryptionKey(issued.key, issued.cert)


def test_openssl_is_3x() -> None:
    assert openssl("version").startswith(b"OpenSSL 3.")


# ---------------------------------------------------------------------------------------------------------------
# carnet → OpenSSL


@pytest.mark.parametrize("legacy", [False, True], ids=["gcm-oaep", "cbc-pkcs1"])
def test_openssl_decrypts_what_carnet_encrypts_for_each_recipient(
    pki: testpki.TestPki, files: dict[str, tuple[Path, Path]], tmp_path: Path, legacy: bool
) -> None:
    envelope = tmp_path / "envelope.der"
    envelope.write_bytes(encrypt_data(ENTITY, [pki.alice.cert, pki.bob.cert, pki.carol_ec.cert], legacy=legacy))
    for name in PEOPLE:
        key, cert = files[name]
        clear = openssl("cms", "-decrypt", "-binary", "-inform", "DER", "-in", envelope, "-inkey", key, "-recip", cert)
        assert clear == ENTITY, name


def test_openssl_reports_the_carnet_structure(pki: testpki.TestPki, tmp_path: Path) -> None:
    envelope = tmp_path / "envelope.der"
    envelope.write_bytes(encrypt_data(ENTITY, [pki.alice.cert, pki.carol_ec.cert]))
    dump = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", envelope).decode()
    assert "id-smime-ct-authEnvelopedData" in dump
    assert "aes-256-gcm" in dump
    assert "rsaesOaep" in dump and "sha256" in dump
    assert "dhSinglePass-stdDH-sha256kdf-scheme" in dump
    assert "id-aes256-wrap" in dump


@pytest.mark.parametrize("legacy", [False, True], ids=["gcm", "cbc"])
def test_openssl_decrypts_a_carnet_smime_message(
    pki: testpki.TestPki, files: dict[str, tuple[Path, Path]], tmp_path: Path, legacy: bool
) -> None:
    """``openssl cms -decrypt`` reads the S/MIME message itself (headers, base64 body): RFC 8551 §3.3 framing."""
    message = tmp_path / "message.eml"
    message.write_bytes(encrypt_message(MESSAGE, [pki.bob.cert], legacy=legacy))
    key, cert = files["bob"]
    clear = openssl("cms", "-decrypt", "-binary", "-in", message, "-inkey", key, "-recip", cert)
    assert clear == ENTITY


# ---------------------------------------------------------------------------------------------------------------
# OpenSSL → carnet


# ``-keyopt`` applies to the preceding ``-recip``: the options come after the certificate.
OPENSSL_CIPHERS = {
    "gcm-oaep": ["-aes-256-gcm", "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"],
    "gcm-pkcs1": ["-aes-256-gcm"],
    "cbc-256": ["-aes-256-cbc"],
    "cbc-128": ["-aes-128-cbc"],
}
EXPECTED = {
    "gcm-oaep": ("aes256_gcm", True),
    "gcm-pkcs1": ("aes256_gcm", True),
    "cbc-256": ("aes256_cbc", False),
    "cbc-128": ("aes128_cbc", False),
}


@pytest.mark.parametrize("variant", list(OPENSSL_CIPHERS))
def test_carnet_decrypts_what_openssl_encrypts(
    pki: testpki.TestPki, files: dict[str, tuple[Path, Path]], tmp_path: Path, variant: str
) -> None:
    clear = tmp_path / "clear.txt"
    clear.write_bytes(ENTITY)
    der = openssl(
        "cms", "-encrypt", "-binary", "-outform", "DER", "-in", clear, "-recip", files["alice"][1],
        *OPENSSL_CIPHERS[variant],
    )  # fmt: skip
    if variant == "gcm-oaep":
        assert b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x07" in der  # id-RSAES-OAEP really used
    result = decrypt_data(der, [key_of(pki, "alice")])
    assert result.content == ENTITY
    assert (result.algorithm, result.integrity_protected) == EXPECTED[variant]


@pytest.mark.parametrize("cipher", ["-aes-256-gcm", "-aes-256-cbc"])
def test_carnet_decrypts_openssl_ec_key_agreement(
    pki: testpki.TestPki, files: dict[str, tuple[Path, Path]], tmp_path: Path, cipher: str
) -> None:
    """RFC 5753 with OpenSSL's own KDF and wrap choices for a P-256 certificate."""
    clear = tmp_path / "clear.txt"
    clear.write_bytes(ENTITY)
    der = openssl("cms", "-encrypt", "-binary", "-outform", "DER", "-in", clear, cipher, "-recip", files["carol_ec"][1])
    assert decrypt_data(der, [key_of(pki, "carol_ec")]).content == ENTITY


def test_carnet_decrypts_openssl_several_recipients_and_keyid(
    pki: testpki.TestPki, files: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """Several RecipientInfos, identified by subjectKeyIdentifier (``-keyid``, RFC 5652 §6.2.1)."""
    clear = tmp_path / "clear.txt"
    clear.write_bytes(ENTITY)
    der = openssl(
        "cms", "-encrypt", "-binary", "-outform", "DER", "-keyid", "-in", clear, "-aes-256-gcm",
        "-recip", files["alice"][1], "-recip", files["bob"][1], "-recip", files["carol_ec"][1],
    )  # fmt: skip
    for name in PEOPLE:
        assert decrypt_data(der, [key_of(pki, name)]).content == ENTITY, name


@pytest.mark.parametrize("cipher", ["-aes-256-gcm", "-aes-256-cbc"])
def test_carnet_decrypts_an_openssl_smime_message(
    pki: testpki.TestPki, files: dict[str, tuple[Path, Path]], tmp_path: Path, cipher: str
) -> None:
    """OpenSSL's S/MIME output (its own headers, base64 with LF line endings) through decrypt_message."""
    clear = tmp_path / "clear.txt"
    clear.write_bytes(ENTITY)
    smime = openssl("cms", "-encrypt", "-in", clear, cipher, "-recip", files["bob"][1])
    assert b"application/pkcs7-mime" in smime or b"application/x-pkcs7-mime" in smime
    message, decrypted = decrypt_message(b"From: alice@carnet.test\r\n" + smime, [key_of(pki, "bob")])
    assert message.startswith(b"From: alice@carnet.test\r\n")
    assert message.endswith(ENTITY)
    assert decrypted.integrity_protected is (cipher == "-aes-256-gcm")


def test_openssl_message_for_someone_else(
    pki: testpki.TestPki, files: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    clear = tmp_path / "clear.txt"
    clear.write_bytes(ENTITY)
    der = openssl(
        "cms", "-encrypt", "-binary", "-outform", "DER", "-in", clear, "-aes-256-gcm", "-recip", files["bob"][1]
    )
    with pytest.raises(DecryptError, match="not encrypted for our key"):
        decrypt_data(der, [key_of(pki, "alice")])
