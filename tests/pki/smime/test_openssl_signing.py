"""Interoperability with OpenSSL 3 (``openssl cms``): each side verifies what the other signs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import testpki
from cryptography.hazmat.primitives import serialization
from testpki import build_test_pki, pem

from carnet.pki.smime.credentials import SignerCredential
from carnet.pki.smime.result import Status
from carnet.pki.smime.sign import RsaPadding, sign_message
from carnet.pki.smime.validation import ChainValidator, TrustStore
from carnet.pki.smime.verify import verify_message

OPENSSL = "/usr/bin/openssl"
ENTITY = (
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nOrdonnance \xc3\xa9tablie\r\n"
)


@dataclass
class Files:
    directory: Path
    root: Path
    intermediate: Path
    root_and_crls: Path


@pytest.fixture(scope="module")
def pki() -> testpki.TestPki:
    return build_test_pki()


@pytest.fixture(scope="module")
def files(pki: testpki.TestPki, tmp_path_factory: pytest.TempPathFactory) -> Files:
    directory = tmp_path_factory.mktemp("openssl")
    for name in ("alice", "bob", "carol_ec", "revoked"):
        getattr(pki, name).write(directory, name)
    (directory / "root.pem").write_bytes(pem(pki.root.cert))
    (directory / "intermediate.pem").write_bytes(pem(pki.intermediate.cert))
    # openssl cms has no -CRLfile: CRLs go in the -CAfile bundle, next to the anchor
    crls = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in pki.crls)
    (directory / "root-and-crls.pem").write_bytes(pem(pki.root.cert) + crls)
    return Files(directory, directory / "root.pem", directory / "intermediate.pem", directory / "root-and-crls.pem")


@pytest.fixture
def validator(pki: testpki.TestPki) -> ChainValidator:
    crls = [c.public_bytes(serialization.Encoding.DER) for c in pki.crls]
    return ChainValidator(TrustStore([pki.root.cert], crls=crls))


def openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, timeout=60, check=False)


def message_from(address: str) -> bytes:
    return f"From: {address}\r\nTo: bob@carnet.test\r\nSubject: interop\r\nMIME-Version: 1.0\r\n".encode() + ENTITY


# ---------------------------------------------------------------------------------------------------------------
# OpenSSL verifies what carnet signs


CARNET_SIGNERS = [
    ("alice", "pkcs1v15", "sha256"),
    ("alice", "pss", "sha256"),
    ("alice", "pss", "sha512"),
    ("alice", "pkcs1v15", "sha384"),
    ("carol_ec", "pkcs1v15", "sha256"),
    ("carol_ec", "pkcs1v15", "sha384"),
]


@pytest.mark.parametrize(("signer", "padding", "digest"), CARNET_SIGNERS)
@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
def test_openssl_verifies_carnet(
    pki: testpki.TestPki, files: Files, signer: str, padding: RsaPadding, digest: str, detached: bool
) -> None:
    issued = getattr(pki, signer)
    credential = SignerCredential(issued.key, issued.cert, tuple(issued.chain))
    signed = sign_message(
        message_from("x@carnet.test"), credential, detached=detached, rsa_padding=padding, digest=digest
    )
    path = files.directory / f"carnet-{signer}-{padding}-{digest}-{detached}.eml"
    path.write_bytes(signed)
    out = path.with_suffix(".out")
    done = openssl("cms", "-verify", "-purpose", "smimesign", "-in", path, "-CAfile", files.root, "-out", out)
    assert done.returncode == 0, done.stderr.decode()
    assert b"Verification successful" in done.stderr
    # OpenSSL hands back the canonical (7-bit) entity carnet signed
    assert out.read_bytes().startswith(b"Content-Type: text/plain; charset=utf-8\r\n")
    assert b"Ordonnance =C3=A9tablie" in out.read_bytes()
    with_crls = openssl("cms", "-verify", "-in", path, "-CAfile", files.root_and_crls, "-crl_check_all", "-out", out)
    assert with_crls.returncode == 0, with_crls.stderr.decode()


def test_openssl_rejects_tampered_carnet_output(pki: testpki.TestPki, files: Files) -> None:
    credential = SignerCredential(pki.alice.key, pki.alice.cert, tuple(pki.alice.chain))
    signed = sign_message(message_from("alice@carnet.test"), credential)
    path = files.directory / "tampered.eml"
    path.write_bytes(signed.replace(b"Ordonnance", b"Ordonnancf"))
    done = openssl("cms", "-verify", "-in", path, "-CAfile", files.root, "-out", files.directory / "t.out")
    assert done.returncode != 0


def test_openssl_agrees_on_revocation(pki: testpki.TestPki, files: Files) -> None:
    credential = SignerCredential(pki.revoked.key, pki.revoked.cert, tuple(pki.revoked.chain))
    path = files.directory / "revoked.eml"
    path.write_bytes(sign_message(message_from("revoked@carnet.test"), credential))
    done = openssl("cms", "-verify", "-in", path, "-CAfile", files.root_and_crls, "-crl_check_all", "-out", "/dev/null")
    assert done.returncode != 0
    assert b"revoked" in done.stderr


# ---------------------------------------------------------------------------------------------------------------
# carnet verifies what OpenSSL signs


OPENSSL_VARIANTS = {
    "default": ("alice", []),
    "sha384": ("alice", ["-md", "sha384"]),
    "sha512": ("alice", ["-md", "sha512"]),
    "rsa-pss": ("alice", ["-keyopt", "rsa_padding_mode:pss"]),
    "rsa-pss-sha384": ("alice", ["-md", "sha384", "-keyopt", "rsa_padding_mode:pss"]),
    "ecdsa": ("carol_ec", []),
    "ecdsa-sha512": ("carol_ec", ["-md", "sha512"]),
    "nodetach": ("alice", ["-nodetach"]),
    "nodetach-stream-ber": ("alice", ["-nodetach", "-stream"]),
    "noattr": ("alice", ["-noattr"]),
    "noattr-nodetach": ("carol_ec", ["-noattr", "-nodetach"]),
    "keyid": ("alice", ["-keyid"]),
}


@pytest.mark.parametrize("variant", list(OPENSSL_VARIANTS))
async def test_carnet_verifies_openssl(
    pki: testpki.TestPki, files: Files, validator: ChainValidator, variant: str
) -> None:
    signer, extra = OPENSSL_VARIANTS[variant]
    address = f"{'carol' if signer == 'carol_ec' else signer}@carnet.test"
    content = files.directory / f"content-{variant}.txt"
    content.write_bytes(ENTITY.replace(b"\r\n", b"\n"))  # OpenSSL canonicalises to CRLF itself
    out = files.directory / f"openssl-{variant}.eml"
    done = openssl(
        "cms", "-sign", "-in", content, "-signer", files.directory / f"{signer}.pem",
        "-inkey", files.directory / f"{signer}.key", "-certfile", files.intermediate,
        "-from", address, "-to", "bob@carnet.test", "-subject", variant, "-out", out, *extra,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    result = await verify_message(out.read_bytes(), validator)
    assert result.status is Status.VALID, result.detail
    assert result.content == ENTITY
    assert result.from_address == address
    assert result.signer is not None and result.signer.chain_status == "ok"
    if "-noattr" in extra:
        assert result.signer.signing_time is None
    else:
        assert result.signer.signing_time is not None


async def test_carnet_verifies_openssl_multiple_signers(
    pki: testpki.TestPki, files: Files, validator: ChainValidator
) -> None:
    content = files.directory / "content-multi.txt"
    content.write_bytes(ENTITY)
    out = files.directory / "openssl-multi.eml"
    d = files.directory
    done = openssl(
        "cms", "-sign", "-in", content, "-signer", d / "alice.pem", "-inkey", d / "alice.key",
        "-signer", d / "carol_ec.pem", "-inkey", d / "carol_ec.key", "-certfile", files.intermediate,
        "-from", "carol@carnet.test", "-out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    result = await verify_message(out.read_bytes(), validator)
    assert result.status is Status.VALID, result.detail
    assert result.signer is not None and result.signer.emails == ["carol@carnet.test"]
    statuses = {s.emails[0]: s.status for s in result.signers}
    assert statuses == {"alice@carnet.test": Status.FROM_MISMATCH, "carol@carnet.test": Status.VALID}


async def test_carnet_verifies_openssl_with_a_revoked_co_signer(
    pki: testpki.TestPki, files: Files, validator: ChainValidator
) -> None:
    content = files.directory / "content-corev.txt"
    content.write_bytes(ENTITY)
    out = files.directory / "openssl-corev.eml"
    d = files.directory
    done = openssl(
        "cms", "-sign", "-in", content, "-signer", d / "revoked.pem", "-inkey", d / "revoked.key",
        "-signer", d / "bob.pem", "-inkey", d / "bob.key", "-certfile", files.intermediate,
        "-from", "bob@carnet.test", "-out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    result = await verify_message(out.read_bytes(), validator)
    assert result.status is Status.VALID
    assert {s.emails[0]: s.status for s in result.signers}["revoked@carnet.test"] is Status.REVOKED


async def test_carnet_verifies_legacy_openssl_smime(
    pki: testpki.TestPki, files: Files, validator: ChainValidator
) -> None:
    """``openssl smime`` writes ``application/x-pkcs7-signature`` and a quoted micalg."""
    content = files.directory / "content-smime.txt"
    content.write_bytes(ENTITY)
    out = files.directory / "openssl-smime.eml"
    d = files.directory
    done = openssl(
        "smime", "-sign", "-in", content, "-signer", d / "alice.pem", "-inkey", d / "alice.key",
        "-certfile", files.intermediate, "-from", "alice@carnet.test", "-out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert b"application/x-pkcs7-signature" in out.read_bytes()
    result = await verify_message(out.read_bytes(), validator)
    assert result.status is Status.VALID, result.detail


async def test_tampered_openssl_message_is_detected(
    pki: testpki.TestPki, files: Files, validator: ChainValidator
) -> None:
    content = files.directory / "content-tamper.txt"
    content.write_bytes(ENTITY)
    out = files.directory / "openssl-tamper.eml"
    d = files.directory
    done = openssl(
        "cms", "-sign", "-in", content, "-signer", d / "alice.pem", "-inkey", d / "alice.key",
        "-certfile", files.intermediate, "-from", "alice@carnet.test", "-out", out,
    )  # fmt: skip
    assert done.returncode == 0
    result = await verify_message(out.read_bytes().replace(b"Ordonnance", b"Prescription"), validator)
    assert result.status is Status.TAMPERED
