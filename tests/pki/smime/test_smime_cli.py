"""``carnet smime …`` through ``carnet.cli.main`` and a real subprocess, and the file loaders behind it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import testpki
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from testpki import NOW, build_test_pki, pem

from carnet.cli import main
from carnet.pki.smime.loading import (
    LoadError,
    load_certificate,
    load_certificates,
    load_crls,
    load_pkcs12,
    load_private_key,
    read_file,
)

ENTITY = b"Content-Type: text/plain; charset=utf-8\r\n\r\nRendez-vous confirm\xc3\xa9 le 12 juin.\r\n"
MESSAGE = b"From: alice@carnet.test\r\nTo: bob@carnet.test\r\nSubject: RDV\r\nMIME-Version: 1.0\r\n" + ENTITY
PASSWORD = b"s3cret-p12"


@pytest.fixture(scope="module")
def pki() -> testpki.TestPki:
    return build_test_pki()


@pytest.fixture(scope="module")
def work(pki: testpki.TestPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of PEM/DER/PKCS#12 files, as a user would have them."""
    directory = tmp_path_factory.mktemp("smime-cli")
    for name in ("alice", "bob", "carol_ec"):
        getattr(pki, name).write(directory, name)
    (directory / "root.pem").write_bytes(pem(pki.root.cert))
    (directory / "intermediate.pem").write_bytes(pem(pki.intermediate.cert))
    (directory / "crls.pem").write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in pki.crls))
    protection = serialization.BestAvailableEncryption(PASSWORD)
    chain = [pki.intermediate.cert]
    p12 = pkcs12.serialize_key_and_certificates(b"alice", pki.alice.key, pki.alice.cert, chain, protection)
    (directory / "alice.p12").write_bytes(p12)
    (directory / "bob-encrypted.key").write_bytes(
        pki.bob.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD),
        )
    )
    (directory / "message.eml").write_bytes(MESSAGE)
    (directory / "garbage.bin").write_bytes(b"\x00not a key nor a certificate\xff")
    return directory


def run(
    argv: list[str | Path], capsysbinary: pytest.CaptureFixture[bytes], stdin: bytes | None = None
) -> tuple[int, bytes, bytes]:
    """``carnet.cli.main`` with ``stdin`` bytes; returns (exit status, stdout, stderr)."""
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        try:
            status = main([str(arg) for arg in argv])
        except SystemExit as exc:  # argparse usage errors
            status = int(exc.code or 0)
    finally:
        sys.stdin = saved
    out, err = capsysbinary.readouterr()
    return status, out, err


def validation_options(work: Path) -> list[str | Path]:
    return ["--trust", work / "root.pem", "--intermediate", work / "intermediate.pem", "--crl", work / "crls.pem"]


def signed(work: Path, capsysbinary: pytest.CaptureFixture[bytes], *extra: str) -> Path:
    out = work / f"signed{'-'.join(extra)}.eml"
    status, _, err = run(
        ["smime", "sign", "--key", work / "alice.key", "--cert", work / "alice.pem", "--chain",
         work / "intermediate.pem", *extra, work / "message.eml", "-o", out],
        capsysbinary,
    )  # fmt: skip
    assert status == 0, err
    return out


# ---------------------------------------------------------------------------------------------------------------
# sign / verify


@pytest.mark.parametrize("extra", [(), ("--opaque",), ("--pss", "--digest", "sha384"), ("--digest", "sha512")])
def test_sign_then_verify(work: Path, capsysbinary: pytest.CaptureFixture[bytes], extra: tuple[str, ...]) -> None:
    message = signed(work, capsysbinary, *extra)
    content_type = b"application/pkcs7-mime" if "--opaque" in extra else b"multipart/signed"
    assert content_type in message.read_bytes()
    status, out, err = run(["smime", "verify", *validation_options(work), message], capsysbinary)
    report = json.loads(out)
    assert status == 0, report
    assert report["status"] == "valid"
    assert report["from_address"] == "alice@carnet.test"
    assert report["signer"]["digest_algorithm"] == (extra[-1] if "--digest" in extra else "sha256")
    assert err == b""


def test_verify_tampered_exits_1(work: Path, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.eml"
    tampered.write_bytes(signed(work, capsysbinary).read_bytes().replace(b"12 juin", b"13 juin"))
    report_file = tmp_path / "report.json"
    status, out, _ = run(["smime", "verify", *validation_options(work), tampered, "-o", report_file], capsysbinary)
    assert status == 1
    assert out == b""
    assert json.loads(report_file.read_bytes())["status"] == "tampered"


def test_verify_options_at_hard_fail_and_from(
    work: Path, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    message = signed(work, capsysbinary)
    trust_only = ["--trust", work / "root.pem", "--intermediate", work / "intermediate.pem"]
    status, out, _ = run(["smime", "verify", *trust_only, message], capsysbinary)
    assert (status, json.loads(out)["signer"]["revocation"]) == (1, "unknown")  # no CRL: hard fail
    status, out, _ = run(["smime", "verify", *trust_only, "--no-hard-fail", message], capsysbinary)
    assert status == 0, out

    past = (NOW - timedelta(days=20)).replace(tzinfo=None).isoformat()  # naive: read as UTC
    status, out, _ = run(["smime", "verify", *validation_options(work), "--at", past, message], capsysbinary)
    assert status == 1
    assert json.loads(out)["status"] != "valid"

    forged = tmp_path / "forged.eml"
    forged.write_bytes(message.read_bytes().replace(b"From: alice@carnet.test", b"From: bob@carnet.test"))
    status, out, _ = run(["smime", "verify", *validation_options(work), forged], capsysbinary)
    assert (status, json.loads(out)["status"]) == (1, "from_mismatch")
    status, out, _ = run(["smime", "verify", *validation_options(work), "--no-check-from", forged], capsysbinary)
    assert (status, json.loads(out)["status"]) == (0, "valid")


def test_sign_with_p12_and_password_on_stdin(work: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, err = run(
        ["smime", "sign", "--p12", work / "alice.p12", "--password-stdin", work / "message.eml"],
        capsysbinary,
        stdin=PASSWORD + b"\n",
    )
    assert status == 0, err
    assert b"multipart/signed" in out
    status, report, _ = run(["smime", "verify", *validation_options(work)], capsysbinary, stdin=out)
    assert status == 0, report


def test_stdin_to_stdout_is_binary_safe(work: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, encrypted, _ = run(["smime", "encrypt", "--recipient", work / "bob.pem"], capsysbinary, stdin=MESSAGE)
    assert status == 0
    status, decrypted, _ = run(
        ["smime", "decrypt", "--key", work / "bob.key", "--cert", work / "bob.pem"], capsysbinary, stdin=encrypted
    )
    assert status == 0
    assert decrypted.startswith(b"From: alice@carnet.test\r\n")
    assert decrypted.endswith(ENTITY)  # the UTF-8 byte survives both ways


# ---------------------------------------------------------------------------------------------------------------
# encrypt / decrypt / open


def test_encrypt_several_recipients_then_each_decrypts(
    work: Path, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    bundle = tmp_path / "recipients.pem"
    bundle.write_bytes((work / "bob.pem").read_bytes() + (work / "carol_ec.pem").read_bytes())
    encrypted = tmp_path / "encrypted.eml"
    status, _, _ = run(
        ["smime", "encrypt", "--recipient", bundle, "--recipient", work / "alice.pem", work / "message.eml",
         "-o", encrypted],
        capsysbinary,
    )  # fmt: skip
    assert status == 0
    assert b"smime-type=authEnveloped-data" in encrypted.read_bytes()
    for name in ("alice", "bob", "carol_ec"):
        status, out, err = run(
            ["smime", "decrypt", "--key", work / f"{name}.key", "--cert", work / f"{name}.pem", encrypted],
            capsysbinary,
        )
        assert (status, err) == (0, b""), name
        assert out.endswith(ENTITY)


def test_legacy_decrypt_warns(work: Path, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> None:
    encrypted = tmp_path / "legacy.eml"
    status, _, _ = run(
        ["smime", "encrypt", "--legacy", "--recipient", work / "bob.pem", work / "message.eml", "-o", encrypted],
        capsysbinary,
    )
    assert status == 0 and b"smime-type=enveloped-data" in encrypted.read_bytes()
    status, out, err = run(
        ["smime", "decrypt", "--key", work / "bob-encrypted.key", "--cert", work / "bob.pem", "--password-stdin",
         encrypted],
        capsysbinary,
        stdin=PASSWORD + b"\n",
    )  # fmt: skip
    assert status == 0 and out.endswith(ENTITY)
    assert b"no integrity protection" in err


def test_decrypt_with_the_wrong_key_exits_1(
    work: Path, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    encrypted = tmp_path / "for-bob.eml"
    run(["smime", "encrypt", "--recipient", work / "bob.pem", work / "message.eml", "-o", encrypted], capsysbinary)
    status, out, err = run(
        ["smime", "decrypt", "--key", work / "alice.key", "--cert", work / "alice.pem", encrypted], capsysbinary
    )
    assert status == 1 and out == b""
    assert err.count(b"\n") == 1 and b"not encrypted for our key" in err


def test_sign_encrypt_open(work: Path, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> None:
    encrypted = tmp_path / "signed-encrypted.eml"
    status, _, _ = run(
        ["smime", "encrypt", "--recipient", work / "carol_ec.pem", signed(work, capsysbinary), "-o", encrypted],
        capsysbinary,
    )
    assert status == 0
    content = tmp_path / "content.eml"
    status, out, _ = run(
        ["smime", "open", *validation_options(work), "--key", work / "bob.key", "--cert", work / "bob.pem",
         "--key", work / "carol_ec.key", "--cert", work / "carol_ec.pem", encrypted, "--content", content],
        capsysbinary,
    )  # fmt: skip
    report = json.loads(out)
    assert status == 0, report
    assert (report["status"], report["encrypted"], report["encryption_algorithm"]) == ("valid", True, "aes256_gcm")
    assert report["content_length"] == len(content.read_bytes()) > 0
    assert content.read_bytes().endswith(b"12 juin.\r\n")
    # Without the key: decrypt_failed, exit 1; with the PKCS#12 of someone else: same.
    status, out, _ = run(["smime", "open", *validation_options(work), encrypted], capsysbinary)
    assert (status, json.loads(out)["status"]) == (1, "decrypt_failed")
    status, out, _ = run(
        ["smime", "open", *validation_options(work), "--p12", work / "alice.p12", "--password-stdin", encrypted],
        capsysbinary,
        stdin=PASSWORD + b"\n",
    )
    assert (status, json.loads(out)["status"]) == (1, "decrypt_failed")


# ---------------------------------------------------------------------------------------------------------------
# Usage errors: one line on stderr, exit 2


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["smime", "verify", "{work}/message.eml"], b"--trust"),
        (["smime", "verify", "--trust", "{work}/missing.pem", "{work}/message.eml"], b"missing.pem: no such file"),
        (["smime", "verify", "--trust", "{work}/garbage.bin", "{work}/message.eml"], b"not a PEM or DER certificate"),
        (["smime", "verify", "--trust", "{work}/root.pem", "--at", "yesterday", "{work}/message.eml"], b"ISO-8601"),
        (["smime", "verify", "--trust", "{work}/root.pem", "--crl", "{work}/root.pem", "{work}/message.eml"], b"CRL"),
        (["smime", "sign", "--key", "{work}/alice.key", "{work}/message.eml"], b"--key and --cert, or --p12"),
        (["smime", "sign", "--key", "{work}/garbage.bin", "--cert", "{work}/alice.pem"], b"not a PEM or DER private"),
        (["smime", "sign", "--key", "{work}/bob.key", "--cert", "{work}/alice.pem"], b"does not belong"),
        (["smime", "sign", "--p12", "{work}/alice.p12", "--password-stdin"], b"needs the message as a file"),
        (["smime", "decrypt", "--key", "{work}/bob-encrypted.key", "--cert", "{work}/bob.pem"], b"password is needed"),
        (["smime", "decrypt", "--key", "{work}/alice.key", "--cert", "{work}/bob.pem"], b"does not match"),
        (["smime", "decrypt", "{work}/message.eml"], b"--key and --cert, or --p12"),
        (["smime", "encrypt", "--recipient", "{work}/alice.key", "{work}/message.eml"], b"no CERTIFICATE block"),
        (["smime", "sign", "--digest", "md5", "--p12", "{work}/alice.p12"], b"invalid choice"),
    ],
)
def test_usage_errors(
    work: Path, capsysbinary: pytest.CaptureFixture[bytes], argv: list[str], expected: bytes
) -> None:
    status, out, err = run([arg.format(work=work) for arg in argv], capsysbinary, stdin=b"")
    assert status == 2
    assert out == b""
    assert err.startswith(b"carnet") and err.count(b"\n") == 1, err
    assert expected in err


# ---------------------------------------------------------------------------------------------------------------
# A real process


def carnet_command() -> list[str]:
    script = Path(sys.executable).with_name("carnet")
    return [str(script)] if script.exists() else [sys.executable, "-m", "carnet"]


def test_real_subprocess_round_trip(work: Path, tmp_path: Path) -> None:
    carnet = carnet_command()
    sign = subprocess.run(
        [*carnet, "smime", "sign", "--key", work / "alice.key", "--cert", work / "alice.pem", "--chain",
         work / "intermediate.pem"],
        input=MESSAGE, capture_output=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert sign.returncode == 0, sign.stderr
    encrypt = subprocess.run(
        [*carnet, "smime", "encrypt", "--recipient", work / "bob.pem"],
        input=sign.stdout, capture_output=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert encrypt.returncode == 0, encrypt.stderr
    opened = subprocess.run(
        [*carnet, "smime", "open", *map(str, validation_options(work)), "--key", work / "bob.key", "--cert",
         work / "bob.pem"],
        input=encrypt.stdout, capture_output=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stdout + opened.stderr
    report = json.loads(opened.stdout)
    assert (report["status"], report["encrypted"]) == ("valid", True)
    usage = subprocess.run(
        [*carnet, "smime", "open", "--trust", work / "nowhere.pem"],
        input=b"", capture_output=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert usage.returncode == 2
    assert usage.stderr.count(b"\n") == 1 and b"nowhere.pem" in usage.stderr


# ---------------------------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize(
    ("encoding", "fmt"),
    [
        (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8),
        (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8),
        (serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL),  # PKCS#1 / SEC 1
        (serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL),
    ],
    ids=["pkcs8-pem", "pkcs8-der", "traditional-pem", "traditional-der"],
)
@pytest.mark.parametrize("who", ["alice", "carol_ec"])
def test_load_private_key_formats(
    pki: testpki.TestPki, encoding: serialization.Encoding, fmt: serialization.PrivateFormat, who: str
) -> None:
    key = getattr(pki, who).key
    data = key.private_bytes(encoding, fmt, serialization.NoEncryption())
    assert load_private_key(data).private_numbers() == key.private_numbers()
    protection = serialization.BestAvailableEncryption(b"pw")
    encrypted = key.private_bytes(encoding, serialization.PrivateFormat.PKCS8, protection)
    assert load_private_key(encrypted, "pw").private_numbers() == key.private_numbers()
    with pytest.raises(LoadError, match=r"k\.pem: the private key is encrypted; a password is needed"):
        load_private_key(encrypted, source="k.pem")
    with pytest.raises(LoadError, match="wrong password"):
        load_private_key(encrypted, b"not it")


def test_load_private_key_errors(pki: testpki.TestPki) -> None:
    with pytest.raises(LoadError, match=r"^x\.key: not a PEM or DER private key$"):
        load_private_key(b"garbage", source="x.key")
    with pytest.raises(LoadError, match="no PRIVATE KEY block"):
        load_private_key(pem(pki.alice.cert))
    plain = pki.alice.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert load_private_key(plain, b"unneeded").private_numbers() == pki.alice.key.private_numbers()
    assert isinstance(load_private_key(b"# comment\n" + plain + pem(pki.alice.cert)), type(pki.alice.key))


def test_load_certificates(pki: testpki.TestPki) -> None:
    assert load_certificate(pem(pki.alice.cert)) == pki.alice.cert
    assert load_certificate(pki.alice.cert.public_bytes(serialization.Encoding.DER)) == pki.alice.cert
    bundle = b"Bag Attributes: x\n" + pem(pki.alice.cert, pki.intermediate.cert, pki.root.cert)
    assert load_certificates(bundle) == [pki.alice.cert, pki.intermediate.cert, pki.root.cert]
    with pytest.raises(LoadError, match="holds 3 certificates where one is expected"):
        load_certificate(bundle)
    with pytest.raises(LoadError, match=r"^c\.pem: not a PEM or DER certificate$"):
        load_certificate(b"\x30\x03\x02\x01\x01", source="c.pem")
    broken = pem(pki.alice.cert).replace(b"\nMII", b"\nMIX", 1)
    with pytest.raises(LoadError, match="certificate #1 is corrupt"):
        load_certificates(broken)


def test_load_crls(pki: testpki.TestPki) -> None:
    both = b"".join(crl.public_bytes(serialization.Encoding.PEM) for crl in pki.crls)
    assert [crl.issuer for crl in load_crls(both)] == [crl.issuer for crl in pki.crls]
    der = pki.crls[0].public_bytes(serialization.Encoding.DER)
    assert load_crls(der)[0].issuer == pki.intermediate.cert.subject
    with pytest.raises(LoadError, match="no X509 CRL block"):
        load_crls(pem(pki.root.cert))
    with pytest.raises(LoadError, match="not a PEM or DER CRL"):
        load_crls(b"nothing")


def test_load_pkcs12(pki: testpki.TestPki, work: Path, tmp_path: Path) -> None:
    bundle = load_pkcs12((work / "alice.p12").read_bytes(), PASSWORD)
    assert bundle.certificate == pki.alice.cert
    assert bundle.chain == (pki.intermediate.cert,)
    with pytest.raises(LoadError, match="password is wrong"):
        load_pkcs12((work / "alice.p12").read_bytes(), b"nope")
    with pytest.raises(LoadError, match="needs a password"):
        load_pkcs12((work / "alice.p12").read_bytes(), None)
    # One made by OpenSSL, the way users export from other tools.
    made = tmp_path / "openssl.p12"
    subprocess.run(
        ["openssl", "pkcs12", "-export", "-inkey", work / "carol_ec.key", "-in", work / "carol_ec.pem",
         "-certfile", work / "intermediate.pem", "-passout", "pass:from-openssl", "-out", made],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    from_openssl = load_pkcs12(made.read_bytes(), "from-openssl")
    assert from_openssl.certificate == pki.carol_ec.cert
    assert from_openssl.chain == (pki.intermediate.cert,)
    only_cert = pkcs12.serialize_key_and_certificates(
        b"x", None, pki.bob.cert, None, serialization.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(LoadError, match="holds no private key"):
        load_pkcs12(only_cert, b"pw")


def test_read_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"absent\.pem: no such file"):
        read_file(tmp_path / "absent.pem")
    with pytest.raises(LoadError, match="is a directory"):
        read_file(tmp_path)
    (tmp_path / "x").write_bytes(b"\x00\x01")
    assert read_file(tmp_path / "x") == b"\x00\x01"

