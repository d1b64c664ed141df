"""carnet.pki.smime.open_message: layers (sign, encrypt, triple wrapping), the outer From, failures, OpenSSL peers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import testpki
from cryptography.hazmat.primitives import serialization
from testpki import build_test_pki, pem

from carnet.pki import smime
from carnet.pki.smime import open as open_module
from carnet.pki.smime.credentials import SignerCredential
from carnet.pki.smime.envelope import DecryptionKey, encrypt_data, encrypt_message
from carnet.pki.smime.open import MAX_LAYERS, open_message
from carnet.pki.smime.result import Status
from carnet.pki.smime.sign import sign_message
from carnet.pki.smime.validation import ChainValidator, TrustStore

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
ENTITY = b"Content-Type: text/plain; charset=utf-8\r\n\r\nCompte rendu de consultation du 3 mars.\r\n"
HEADERS = b"From: Dr Alice Martin <alice@carnet.test>\r\nTo: bob@carnet.test\r\nSubject: CR\r\n"
MESSAGE = HEADERS + b"MIME-Version: 1.0\r\n" + ENTITY


@pytest.fixture(scope="module")
def pki() -> testpki.TestPki:
    return build_test_pki()


@pytest.fixture
def validator(pki: testpki.TestPki) -> ChainValidator:
    crls = [crl.public_bytes(serialization.Encoding.DER) for crl in pki.crls]
    return ChainValidator(TrustStore([pki.root.cert], [pki.intermediate.cert], crls))


def signer(issued: testpki.Issued) -> SignerCredential:
    return SignerCredential(issued.key, issued.cert, tuple(issued.chain))


def key_of(issued: testpki.Issued) -> DecryptionKey:
    return DecryptionKey(issued.key, issued.cert)


def with_from(message: bytes, sender: bytes) -> bytes:
    """Replace the From field of a message (outer header) without touching anything else."""
    lines = message.split(b"\r\n")
    return b"\r\n".join(b"From: " + sender if line.startswith(b"From:") else line for line in lines)


# ---------------------------------------------------------------------------------------------------------------
# Layers


async def test_plain_message_is_unsigned(validator: ChainValidator) -> None:
    result = await open_message(MESSAGE, validator=validator)
    assert result.status is Status.UNSIGNED
    assert not result.encrypted
    assert result.from_address == "alice@carnet.test"
    assert result.content == ENTITY


async def test_signed_message_is_valid(pki: testpki.TestPki, validator: ChainValidator) -> None:
    result = await open_message(sign_message(MESSAGE, signer(pki.alice)), validator=validator)
    assert result.status is Status.VALID, result.detail
    assert not result.encrypted
    assert result.signer is not None and "alice@carnet.test" in result.signer.emails


@pytest.mark.parametrize("opaque", [False, True], ids=["detached", "opaque"])
async def test_signed_then_encrypted_is_valid_and_encrypted(
    pki: testpki.TestPki, validator: ChainValidator, opaque: bool
) -> None:
    message = encrypt_message(sign_message(MESSAGE, signer(pki.alice), detached=not opaque), [pki.bob.cert])
    result = await open_message(message, keys=[key_of(pki.bob)], validator=validator)
    assert result.status is Status.VALID, result.detail
    assert result.encrypted is True
    assert result.encryption_algorithm == "aes256_gcm"
    assert result.integrity_protected is True
    assert result.warnings == []
    assert result.from_address == "alice@carnet.test"
    assert result.content.endswith(b"Compte rendu de consultation du 3 mars.\r\n")
    assert len(result.signers) == 1


async def test_legacy_cbc_is_flagged_without_integrity(pki: testpki.TestPki, validator: ChainValidator) -> None:
    message = encrypt_message(sign_message(MESSAGE, signer(pki.alice)), [pki.bob.cert], legacy=True)
    result = await open_message(message, keys=[key_of(pki.bob)], validator=validator)
    assert result.status is Status.VALID, result.detail
    assert result.encryption_algorithm == "aes256_cbc"
    assert result.integrity_protected is False
    assert any("no integrity protection" in warning for warning in result.warnings)
    assert result.to_dict()["integrity_protected"] is False


async def test_encrypted_only_is_unsigned_but_decrypted(pki: testpki.TestPki, validator: ChainValidator) -> None:
    message = encrypt_message(MESSAGE, [pki.carol_ec.cert])
    result = await open_message(message, keys=[key_of(pki.carol_ec)], validator=validator)
    assert result.status is Status.UNSIGNED
    assert result.encrypted is True
    assert "decrypted" in result.detail
    assert result.content == ENTITY


async def test_triple_wrapped_sign_encrypt_sign(pki: testpki.TestPki, validator: ChainValidator) -> None:
    """RFC 2634 §1.1: inner signature, envelope, outer signature; every layer is opened and checked."""
    inner = sign_message(MESSAGE, signer(pki.alice))
    message = sign_message(encrypt_message(inner, [pki.bob.cert]), signer(pki.alice), detached=False)
    result = await open_message(message, keys=[key_of(pki.bob)], validator=validator)
    assert result.status is Status.VALID, result.detail
    assert result.encrypted is True
    assert len(result.signers) == 2
    assert result.content.endswith(b"Compte rendu de consultation du 3 mars.\r\n")


async def test_triple_wrapped_outer_signer_must_bind_to_from(pki: testpki.TestPki, validator: ChainValidator) -> None:
    inner = sign_message(MESSAGE, signer(pki.alice))
    message = sign_message(encrypt_message(inner, [pki.bob.cert]), signer(pki.bob))
    result = await open_message(message, keys=[key_of(pki.bob)], validator=validator)
    assert result.status is Status.FROM_MISMATCH
    assert "layer 1 of 2" in result.detail
    unchecked = await open_message(message, keys=[key_of(pki.bob)], validator=validator, check_from=False)
    assert unchecked.status is Status.VALID, unchecked.detail


async def test_from_is_checked_against_the_outer_header(pki: testpki.TestPki, validator: ChainValidator) -> None:
    """Changing the outer From of a signed-then-encrypted message is caught although the signature is inside."""
    message = encrypt_message(sign_message(MESSAGE, signer(pki.alice)), [pki.bob.cert])
    forged = with_from(message, b"Bob Durand <bob@carnet.test>")
    result = await open_message(forged, keys=[key_of(pki.bob)], validator=validator)
    assert result.status is Status.FROM_MISMATCH
    assert result.encrypted is True
    assert result.from_address == "bob@carnet.test"


async def test_tampered_inner_content(pki: testpki.TestPki, validator: ChainValidator) -> None:
    signed = sign_message(MESSAGE, signer(pki.alice)).replace(b"3 mars", b"4 mars")
    result = await open_message(encrypt_message(signed, [pki.bob.cert]), keys=[key_of(pki.bob)], validator=validator)
    assert result.status is Status.TAMPERED
    assert result.encrypted is True


async def test_untrusted_signer_inside_envelope(pki: testpki.TestPki, validator: ChainValidator) -> None:
    message = HEADERS.replace(b"alice@carnet.test", b"stranger@elsewhere.test") + b"MIME-Version: 1.0\r\n" + ENTITY
    wrapped = encrypt_message(sign_message(message, signer(pki.stranger)), [pki.bob.cert])
    result = await open_message(wrapped, keys=[key_of(pki.bob)], validator=validator)
    assert result.status is Status.UNTRUSTED


async def test_nesting_limit(pki: testpki.TestPki, validator: ChainValidator) -> None:
    message = MESSAGE
    for _ in range(MAX_LAYERS):
        message = encrypt_message(message, [pki.bob.cert])
    within = await open_message(message, keys=[key_of(pki.bob)], validator=validator)
    assert within.status is Status.UNSIGNED and within.content == ENTITY
    too_deep = await open_message(encrypt_message(message, [pki.bob.cert]), keys=[key_of(pki.bob)], validator=validator)
    assert too_deep.status is Status.MALFORMED
    assert f"deeper than {MAX_LAYERS}" in too_deep.detail


# ---------------------------------------------------------------------------------------------------------------
# Failures


async def test_wrong_key_is_decrypt_failed(pki: testpki.TestPki, validator: ChainValidator) -> None:
    message = encrypt_message(sign_message(MESSAGE, signer(pki.alice)), [pki.bob.cert])
    result = await open_message(message, keys=[key_of(pki.alice)], validator=validator)
    assert result.status is Status.DECRYPT_FAILED
    assert "not encrypted for our key" in result.detail
    assert result.content == b""


async def test_no_key_is_decrypt_failed(pki: testpki.TestPki, validator: ChainValidator) -> None:
    result = await open_message(encrypt_message(MESSAGE, [pki.bob.cert]), validator=validator)
    assert result.status is Status.DECRYPT_FAILED
    assert "no decryption key" in result.detail


async def test_flipped_gcm_ciphertext_is_decrypt_failed(pki: testpki.TestPki, validator: ChainValidator) -> None:
    der = bytearray(encrypt_data(ENTITY, [pki.bob.cert]))
    der[-40] ^= 0x01  # inside the ciphertext, which precedes the 16-byte mac
    message = (
        HEADERS + b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + bytes(der)
    )
    result = await open_message(message, keys=[key_of(pki.bob)], validator=validator)
    assert result.status is Status.DECRYPT_FAILED
    assert "authentication tag mismatch" in result.detail


async def test_outer_signature_kept_when_inner_decryption_fails(
    pki: testpki.TestPki, validator: ChainValidator
) -> None:
    message = sign_message(encrypt_message(MESSAGE, [pki.carol_ec.cert]), signer(pki.alice))
    result = await open_message(message, keys=[key_of(pki.bob)], validator=validator)
    assert result.status is Status.DECRYPT_FAILED
    assert len(result.signers) == 1 and result.signers[0].status is Status.VALID


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\x00\xff" * 50,
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nAAAA\r\n",
        b"Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n",
        b"Content-Type: application/pkcs7-mime; smime-type=compressed-data\r\n\r\nxx",
        b"Content-Type: multipart/signed; boundary=x\r\n\r\nnot really\r\n",
        b"\tcontinuation first\r\nFrom: a@b\r\n\r\nbody",
    ],
    ids=["empty", "binary", "enveloped-garbage", "bad-base64", "compressed", "signed-garbage", "bad-header"],
)
async def test_malformed_input_is_a_result_not_an_exception(validator: ChainValidator, message: bytes) -> None:
    result = await open_message(message, validator=validator)
    assert isinstance(result.status, Status)
    assert result.status in (Status.MALFORMED, Status.UNSIGNED, Status.DECRYPT_FAILED)
    if b"pkcs7-mime" in message or b"multipart/signed" in message or message.startswith(b"\t"):
        assert result.status is Status.MALFORMED
        assert result.detail


async def test_not_bytes_and_too_large(validator: ChainValidator, monkeypatch: pytest.MonkeyPatch) -> None:
    result = await open_message("From: a@b\r\n\r\nhi", validator=validator)  # type: ignore[arg-type]
    assert result.status is Status.MALFORMED and "bytes" in result.detail
    monkeypatch.setattr(open_module, "MAX_MESSAGE_BYTES", 10)
    result = await open_message(MESSAGE, validator=validator)
    assert result.status is Status.MALFORMED and "exceeds the limit" in result.detail


async def test_unexpected_errors_become_malformed(
    pki: testpki.TestPki, validator: ChainValidator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("verifier exploded")

    monkeypatch.setattr(open_module, "verify_message", broken)
    result = await open_message(sign_message(MESSAGE, signer(pki.alice)), validator=validator)
    assert result.status is Status.MALFORMED
    assert "RuntimeError: verifier exploded" in result.detail


def test_public_api_is_reexported() -> None:
    assert smime.open_message is open_message
    assert smime.encrypt_message is encrypt_message
    assert set(smime.__all__) >= {"open_message", "decrypt_message", "verify_message", "sign_message", "LoadError"}
    for name in smime.__all__:
        assert getattr(smime, name) is not None
    with pytest.raises(AttributeError):
        _ = smime.no_such_name


# ---------------------------------------------------------------------------------------------------------------
# OpenSSL as the peer


def openssl(*args: str | Path) -> bytes:
    result = subprocess.run([OPENSSL, *map(str, args)], capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


@pytest.fixture(scope="module")
def files(pki: testpki.TestPki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("openssl-open")
    paths: dict[str, Path] = {}
    for name in ("alice", "bob", "carol_ec"):
        paths[f"{name}.key"], paths[f"{name}.pem"] = getattr(pki, name).write(directory, name)
    paths["intermediate.pem"] = directory / "intermediate.pem"
    paths["intermediate.pem"].write_bytes(pem(pki.intermediate.cert))
    paths["root.pem"] = directory / "root.pem"
    paths["root.pem"].write_bytes(pem(pki.root.cert))
    paths["entity"] = directory / "entity.txt"
    paths["entity"].write_bytes(ENTITY)
    return paths


@pytest.mark.parametrize(
    "cipher",
    [
        ["-aes-256-gcm"],
        ["-aes-256-cbc"],
    ],
    ids=["gcm", "cbc"],
)
@pytest.mark.parametrize("recipient", ["bob", "carol_ec"])
async def test_openssl_sign_then_encrypt_opens_valid(
    pki: testpki.TestPki,
    validator: ChainValidator,
    files: dict[str, Path],
    tmp_path: Path,
    cipher: list[str],
    recipient: str,
) -> None:
    signed = tmp_path / "signed.eml"
    sign = ["-signer", files["alice.pem"], "-inkey", files["alice.key"], "-certfile", files["intermediate.pem"]]
    signed.write_bytes(openssl("cms", "-sign", "-in", files["entity"], *sign, "-md", "sha256"))
    enveloped = openssl("cms", "-encrypt", "-in", signed, *cipher, "-recip", files[f"{recipient}.pem"])
    message = HEADERS + enveloped
    result = await open_message(message, keys=[key_of(getattr(pki, recipient))], validator=validator)
    assert result.status is Status.VALID, result.detail
    assert result.encrypted is True
    assert result.integrity_protected is (cipher == ["-aes-256-gcm"])
    assert b"Compte rendu de consultation du 3 mars." in result.content


async def test_openssl_triple_wrap_opens_valid(
    pki: testpki.TestPki, validator: ChainValidator, files: dict[str, Path], tmp_path: Path
) -> None:
    """OpenSSL signs, encrypts and signs again (opaque outer signature); carnet opens all three layers."""
    sign = ["-signer", files["alice.pem"], "-inkey", files["alice.key"], "-certfile", files["intermediate.pem"]]
    signed = tmp_path / "signed.eml"
    signed.write_bytes(openssl("cms", "-sign", "-in", files["entity"], *sign))
    enveloped = tmp_path / "enveloped.eml"
    enveloped.write_bytes(openssl("cms", "-encrypt", "-in", signed, "-aes-256-gcm", "-recip", files["bob.pem"]))
    outer = openssl("cms", "-sign", "-nodetach", "-in", enveloped, *sign)
    result = await open_message(HEADERS + outer, keys=[key_of(pki.bob)], validator=validator)
    assert result.status is Status.VALID, result.detail
    assert result.encrypted is True
    assert len(result.signers) == 2


async def test_openssl_reads_carnet_sign_then_encrypt(
    pki: testpki.TestPki, files: dict[str, Path], tmp_path: Path
) -> None:
    """The reverse: carnet signs and encrypts; OpenSSL decrypts, then verifies against the test root."""
    message = tmp_path / "message.eml"
    message.write_bytes(encrypt_message(sign_message(MESSAGE, signer(pki.alice)), [pki.bob.cert]))
    decrypted = tmp_path / "decrypted.eml"
    decrypted.write_bytes(
        openssl("cms", "-decrypt", "-in", message, "-inkey", files["bob.key"], "-recip", files["bob.pem"])
    )
    verified = openssl(
        "cms", "-verify", "-in", decrypted, "-CAfile", files["root.pem"], "-purpose", "smimesign",
    )  # fmt: skip
    assert verified.replace(b"\r\n", b"\n").endswith(b"Compte rendu de consultation du 3 mars.\n")
