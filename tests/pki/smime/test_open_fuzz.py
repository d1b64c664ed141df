"""Property: open_message never raises and always returns a Status, whatever bytes arrive.

Inputs are random bytes and mutations of valid messages — signed (detached and opaque), encrypted (GCM and CBC, RSA
and EC recipients), signed-then-encrypted and triple-wrapped: byte flips, truncations, insertions, header-field
mutations, and the same operations applied to the DER inside a base64 body.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json

from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testpki import build_test_pki

from carnet.pki.smime.credentials import SignerCredential
from carnet.pki.smime.envelope import DecryptionKey, encrypt_message
from carnet.pki.smime.open import open_message
from carnet.pki.smime.result import SmimeResult, Status
from carnet.pki.smime.sign import sign_message
from carnet.pki.smime.validation import ChainValidator, TrustStore

MESSAGE = (
    b"From: Dr Alice Martin <alice@carnet.test>\r\nTo: bob@carnet.test\r\nSubject: CR\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nBonjour\r\n"
    b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--b1--\r\n"
)
HEADER_MUTATIONS = [
    b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data",
    b"Content-Type: application/pkcs7-mime; smime-type=signed-data",
    b"Content-Type: application/pkcs7-mime",
    b"Content-Type: application/x-pkcs7-mime; smime-type=authEnveloped-data",
    b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"",
    b"Content-Type: multipart/signed; boundary=\"\"",
    b"Content-Type: multipart/signed; boundary*0*=utf-8''%FF; boundary*1=x",
    b"Content-Transfer-Encoding: quoted-printable",
    b"Content-Transfer-Encoding: x-unknown",
    b"Content-Transfer-Encoding: binary",
    b"From: <>",
    b"From: a@b, c@d",
    b"From: \"bob@carnet.test\" <alice@carnet.test>",
    b"MIME-Version: 1.0",
    b"\t folded",
    b"",
    b"no colon here",
]


@functools.cache
def fixtures() -> tuple[list[bytes], list[DecryptionKey], ChainValidator]:
    pki = build_test_pki()
    alice = SignerCredential(pki.alice.key, pki.alice.cert, tuple(pki.alice.chain))
    bob_ec = SignerCredential(pki.carol_ec.key, pki.carol_ec.cert, tuple(pki.carol_ec.chain))
    detached = sign_message(MESSAGE, alice)
    opaque = sign_message(MESSAGE, alice, detached=False)
    samples = [
        MESSAGE,
        detached,
        opaque,
        sign_message(MESSAGE, bob_ec),
        encrypt_message(MESSAGE, [pki.bob.cert]),
        encrypt_message(MESSAGE, [pki.carol_ec.cert], legacy=True),
        encrypt_message(detached, [pki.bob.cert, pki.carol_ec.cert]),
        encrypt_message(opaque, [pki.bob.cert], legacy=True),
        sign_message(encrypt_message(detached, [pki.bob.cert]), alice, detached=False),
    ]
    keys = [DecryptionKey(pki.bob.key, pki.bob.cert), DecryptionKey(pki.carol_ec.key, pki.carol_ec.cert)]
    crls = [crl.public_bytes(serialization.Encoding.DER) for crl in pki.crls]
    validator = ChainValidator(TrustStore([pki.root.cert], [pki.intermediate.cert], crls))
    return samples, keys, validator


def _split(message: bytes) -> tuple[bytes, bytes]:
    header, separator, body = message.partition(b"\r\n\r\n")
    return header, body if separator else b""


def _mutate_bytes(data: bytes, op: str, position: int, payload: bytes) -> bytes:
    if not data:
        return payload
    index = position % len(data)
    if op == "flip":
        return data[:index] + bytes([data[index] ^ (payload[0] if payload else 0x01) or 0x01]) + data[index + 1 :]
    if op == "truncate":
        return data[:index]
    if op == "insert":
        return data[:index] + payload + data[index:]
    return data[:index] + data[index + len(payload) + 1 :]  # delete a run


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    samples, _, _ = fixtures()
    kind = draw(st.sampled_from(["random", "bytes", "header", "der"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    message = draw(st.sampled_from(samples))
    op = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    position = draw(st.integers(min_value=0, max_value=1 << 20))
    payload = draw(st.binary(min_size=1, max_size=16))
    if kind == "bytes":
        return _mutate_bytes(message, op, position, payload)
    header, body = _split(message)
    if kind == "header":
        lines = header.split(b"\r\n")
        index = position % len(lines)
        replacement = draw(st.sampled_from(HEADER_MUTATIONS))
        if op == "delete":
            del lines[index]
        elif op == "insert":
            lines.insert(index, replacement)
        else:
            lines[index] = replacement
        return b"\r\n".join(lines) + b"\r\n\r\n" + body
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
    except ValueError:
        return _mutate_bytes(message, op, position, payload)
    mutated = _mutate_bytes(der, op, position, payload)
    return header + b"\r\n\r\n" + base64.encodebytes(mutated).replace(b"\n", b"\r\n")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(message=messages())
def test_open_message_never_raises(message: bytes) -> None:
    _, keys, validator = fixtures()
    result = asyncio.run(open_message(message, keys=keys, validator=validator))
    assert isinstance(result, SmimeResult)
    assert isinstance(result.status, Status)
    json.dumps(result.to_dict())  # always reportable
    if result.status is Status.MALFORMED:
        assert result.detail


def test_valid_samples_open_as_expected() -> None:
    """The unmutated samples are what the mutations start from: they really are valid or unsigned."""
    samples, keys, validator = fixtures()
    statuses = [asyncio.run(open_message(sample, keys=keys, validator=validator)).status for sample in samples]
    assert statuses == [
        Status.UNSIGNED,
        Status.VALID,
        Status.VALID,
        Status.FROM_MISMATCH,  # carol signs a message From alice
        Status.UNSIGNED,
        Status.UNSIGNED,
        Status.VALID,
        Status.VALID,
        Status.VALID,
    ]
