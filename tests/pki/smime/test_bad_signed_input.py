"""verify_message on hostile, broken and borderline input: every case has its defined status, nothing raises."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest
import testpki
from asn1crypto import algos, cms
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testpki import build_test_pki

from carnet.pki.smime.canon import base64_body
from carnet.pki.smime.credentials import SignerCredential
from carnet.pki.smime.result import SmimeResult, Status
from carnet.pki.smime.sign import sign_data, sign_message
from carnet.pki.smime.validation import ChainValidator, TrustStore
from carnet.pki.smime.verify import VerifyLimits, verify_message

ENTITY = b"Content-Type: text/plain\r\n\r\nResultats d'analyse: normaux\r\n"


@pytest.fixture(scope="module")
def pki() -> testpki.TestPki:
    return build_test_pki()


@pytest.fixture(scope="module")
def validator(pki: testpki.TestPki) -> ChainValidator:
    crls = [c.public_bytes(serialization.Encoding.DER) for c in pki.crls]
    return ChainValidator(TrustStore([pki.root.cert], crls=crls))


def credential(issued: testpki.Issued) -> SignerCredential:
    return SignerCredential(issued.key, issued.cert, tuple(issued.chain))


def outer(address: str = "alice@carnet.test") -> bytes:
    return f"From: {address}\r\nTo: bob@carnet.test\r\nSubject: analyse\r\nMIME-Version: 1.0\r\n".encode()


def detached(cms_der: bytes, entity: bytes = ENTITY, address: str = "alice@carnet.test") -> bytes:
    return (
        outer(address)
        + b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary=ZZ\r\n'
        + b"\r\n--ZZ\r\n"
        + entity
        + b"\r\n--ZZ\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64_body(cms_der)
        + b"--ZZ--\r\n"
    )


def opaque(cms_der: bytes, address: str = "alice@carnet.test") -> bytes:
    return (
        outer(address)
        + b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64_body(cms_der)
    )


def edit_signer_info(cms_der: bytes, **changes: object) -> bytes:
    """Re-encode ``cms_der`` with fields of its first SignerInfo replaced (asn1crypto values or natives)."""
    info = cms.ContentInfo.load(cms_der)
    signer_info = info["content"]["signer_infos"][0]
    for name, value in changes.items():
        signer_info[name] = value
    return info.dump(force=True)


def resign_attributes(issued: testpki.Issued, cms_der: bytes, attributes: list[dict[str, object]]) -> bytes:
    """Replace the signed attributes by ``attributes`` and sign them properly (RSA PKCS#1 v1.5, SHA-256)."""
    attrs = cms.CMSAttributes(attributes)
    signature = issued.key.sign(attrs.dump(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg,arg-type]
    return edit_signer_info(cms_der, signed_attrs=attrs, signature=signature)


async def check(
    message: bytes, validator: ChainValidator, expected: Status, detail: str = "", **kw: object
) -> SmimeResult:
    result = await verify_message(message, validator, **kw)  # type: ignore[arg-type]
    assert result.status is expected, result.detail
    assert detail in result.detail
    return result


# ---------------------------------------------------------------------------------------------------------------
# Garbage


async def test_random_bytes(validator: ChainValidator) -> None:
    rng = random.Random(8551)
    for _ in range(20):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
        assert (await verify_message(noise, validator)).status in (Status.MALFORMED, Status.UNSIGNED)
        await check(opaque(noise), validator, Status.MALFORMED, "CMS does not parse")
        await check(detached(noise), validator, Status.MALFORMED, "CMS does not parse")


async def test_random_bytes_with_a_header_like_shape_are_malformed(validator: ChainValidator) -> None:
    await check(b"\x00\xff garbage without a colon\r\n\r\nbody", validator, Status.MALFORMED, "malformed header line")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
async def test_truncated_der(pki: testpki.TestPki, validator: ChainValidator, cut: float) -> None:
    der = sign_data(ENTITY, credential(pki.alice), detached=False)
    await check(opaque(der[: int(len(der) * cut)]), validator, Status.MALFORMED)
    der = sign_data(ENTITY, credential(pki.alice))
    await check(detached(der[: int(len(der) * cut)]), validator, Status.MALFORMED)


async def test_trailing_garbage_after_der(pki: testpki.TestPki, validator: ChainValidator) -> None:
    der = sign_data(ENTITY, credential(pki.alice))
    await check(detached(der + b"\x00junk"), validator, Status.MALFORMED)


async def test_not_bytes(validator: ChainValidator) -> None:
    await check("From: a@b.c\r\n\r\nx", validator, Status.MALFORMED, "must be bytes")  # type: ignore[arg-type]
    await check(None, validator, Status.MALFORMED)  # type: ignore[arg-type]


async def test_content_info_that_is_not_signed_data(validator: ChainValidator) -> None:
    data = cms.ContentInfo({"content_type": "data", "content": b"x"}).dump()
    await check(opaque(data), validator, Status.MALFORMED, "not signed-data")


async def test_signed_data_without_signers(pki: testpki.TestPki, validator: ChainValidator) -> None:
    info = cms.ContentInfo.load(sign_data(ENTITY, credential(pki.alice)))
    info["content"]["signer_infos"] = []
    await check(detached(info.dump(force=True)), validator, Status.MALFORMED, "no SignerInfo")


# ---------------------------------------------------------------------------------------------------------------
# MIME structure


async def test_multipart_signed_structure_errors(pki: testpki.TestPki, validator: ChainValidator) -> None:
    good = detached(sign_data(ENTITY, credential(pki.alice)))
    await check(good.replace(b'pkcs7-signature"', b'pgp-signature"'), validator, Status.MALFORMED, "not S/MIME")
    await check(good.replace(b"; boundary=ZZ", b""), validator, Status.MALFORMED, "without boundary")
    await check(good.replace(b"--ZZ--", b"--ZZ"), validator, Status.MALFORMED, "close delimiter")
    three = good.replace(b"--ZZ--\r\n", b"--ZZ\r\n\r\nextra\r\n--ZZ--\r\n")
    await check(three, validator, Status.MALFORMED, "exactly 2")
    wrong_second = good.replace(b"Content-Type: application/pkcs7-signature", b"Content-Type: text/plain")
    await check(wrong_second, validator, Status.MALFORMED, "second part")
    bad_base64 = good.replace(
        b"Content-Transfer-Encoding: base64\r\n\r\nMI", b"Content-Transfer-Encoding: base64\r\n\r\n*!"
    )
    await check(bad_base64, validator, Status.MALFORMED)
    unknown_cte = good.replace(b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: x-uuencode")
    await check(unknown_cte, validator, Status.MALFORMED, "Content-Transfer-Encoding")


async def test_two_content_types_at_top(pki: testpki.TestPki, validator: ChainValidator) -> None:
    good = detached(sign_data(ENTITY, credential(pki.alice)))
    await check(b"Content-Type: text/plain\r\n" + good, validator, Status.MALFORMED, "more than one Content-Type")


# ---------------------------------------------------------------------------------------------------------------
# Integrity


async def test_flipped_content_byte_is_tampered(pki: testpki.TestPki, validator: ChainValidator) -> None:
    await check(
        detached(sign_data(ENTITY, credential(pki.alice)), entity=ENTITY.replace(b"normaux", b"normauX")),
        validator,
        Status.TAMPERED,
        "message digest mismatch",
    )
    der = sign_data(ENTITY, credential(pki.alice), detached=False)
    at = der.index(b"normaux")
    flipped = der[:at] + bytes([der[at] ^ 0x01]) + der[at + 1 :]
    await check(opaque(flipped), validator, Status.TAMPERED)


async def test_signature_over_other_content(pki: testpki.TestPki, validator: ChainValidator) -> None:
    other = b"Content-Type: text/plain\r\n\r\nResultats d'analyse: anormaux\r\n"
    with_attributes = sign_data(other, credential(pki.alice))
    await check(detached(with_attributes), validator, Status.TAMPERED)
    without_attributes = sign_data(other, credential(pki.alice), signed_attributes=False)
    await check(detached(without_attributes), validator, Status.BAD_SIGNATURE)


@pytest.mark.parametrize(("signer", "rsa_padding"), [("alice", "pkcs1v15"), ("alice", "pss"), ("carol_ec", "pkcs1v15")])
@pytest.mark.parametrize("signed_attributes", [True, False])
async def test_flipped_signature_byte_is_bad_signature(
    pki: testpki.TestPki, validator: ChainValidator, signer: str, rsa_padding: str, signed_attributes: bool
) -> None:
    der = sign_data(
        ENTITY,
        credential(getattr(pki, signer)),
        rsa_padding=rsa_padding,
        signed_attributes=signed_attributes,  # type: ignore[arg-type]
    )
    signature = bytearray(cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signature"].native)
    signature[len(signature) // 2] ^= 0x40
    address = "carol@carnet.test" if signer == "carol_ec" else "alice@carnet.test"
    message = detached(edit_signer_info(der, signature=bytes(signature)), address=address)
    await check(message, validator, Status.BAD_SIGNATURE)


async def test_content_type_attribute_must_match(pki: testpki.TestPki, validator: ChainValidator) -> None:
    info = cms.ContentInfo.load(sign_data(ENTITY, credential(pki.alice), detached=False))
    info["content"]["encap_content_info"]["content_type"] = "1.2.840.113549.1.9.16.1.4"  # id-ct-TSTInfo
    await check(opaque(info.dump(force=True)), validator, Status.TAMPERED, "content-type attribute")


async def test_missing_message_digest_attribute(pki: testpki.TestPki, validator: ChainValidator) -> None:
    der = sign_data(ENTITY, credential(pki.alice))
    forged = resign_attributes(pki.alice, der, [{"type": "content_type", "values": ["data"]}])
    await check(detached(forged), validator, Status.MALFORMED, "lack content-type or message-digest")


async def test_duplicate_message_digest_attribute(pki: testpki.TestPki, validator: ChainValidator) -> None:
    import hashlib

    digest = hashlib.sha256(ENTITY).digest()
    der = sign_data(ENTITY, credential(pki.alice))
    attributes = [
        {"type": "content_type", "values": ["data"]},
        {"type": "message_digest", "values": [digest]},
        {"type": "message_digest", "values": [b"\x00" * 32]},
    ]
    await check(detached(resign_attributes(pki.alice, der, attributes)), validator, Status.MALFORMED, "once")


async def test_forged_signing_time_is_reported_not_trusted(pki: testpki.TestPki, validator: ChainValidator) -> None:
    import hashlib

    moment = datetime(2001, 1, 1, tzinfo=UTC)
    attributes = [
        {"type": "content_type", "values": ["data"]},
        {"type": "message_digest", "values": [hashlib.sha256(ENTITY).digest()]},
        {"type": "signing_time", "values": [cms.Time({"utc_time": moment})]},
    ]
    der = resign_attributes(pki.alice, sign_data(ENTITY, credential(pki.alice)), attributes)
    result = await check(detached(der), validator, Status.VALID)
    assert result.signer is not None and result.signer.signing_time == moment


# ---------------------------------------------------------------------------------------------------------------
# Algorithms


async def test_sha1_digest_is_refused(pki: testpki.TestPki, validator: ChainValidator) -> None:
    der = edit_signer_info(sign_data(ENTITY, credential(pki.alice)), digest_algorithm={"algorithm": "sha1"})
    await check(detached(der), validator, Status.MALFORMED, "unsupported digest algorithm sha1")


async def test_unknown_signature_algorithm(pki: testpki.TestPki, validator: ChainValidator) -> None:
    der = edit_signer_info(sign_data(ENTITY, credential(pki.alice)), signature_algorithm={"algorithm": "sha256_dsa"})
    await check(detached(der), validator, Status.MALFORMED, "unsupported signature algorithm")


async def test_pss_without_parameters_is_refused(pki: testpki.TestPki, validator: ChainValidator) -> None:
    der = sign_data(ENTITY, credential(pki.alice), rsa_padding="pss")
    der = edit_signer_info(der, signature_algorithm=algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss"}))
    await check(detached(der), validator, Status.MALFORMED, "RSASSA-PSS without parameters")


async def test_signature_algorithm_digest_mismatch(pki: testpki.TestPki, validator: ChainValidator) -> None:
    der = edit_signer_info(sign_data(ENTITY, credential(pki.alice)), signature_algorithm={"algorithm": "sha512_rsa"})
    await check(detached(der), validator, Status.MALFORMED, "does not match digest")


async def test_ecdsa_algorithm_with_rsa_key(pki: testpki.TestPki, validator: ChainValidator) -> None:
    der = edit_signer_info(sign_data(ENTITY, credential(pki.alice)), signature_algorithm={"algorithm": "sha256_ecdsa"})
    await check(detached(der), validator, Status.MALFORMED, "not EC")


async def test_id_ec_public_key_as_signature_algorithm(pki: testpki.TestPki, validator: ChainValidator) -> None:
    der = sign_data(ENTITY, credential(pki.carol_ec))
    der = edit_signer_info(der, signature_algorithm={"algorithm": "1.2.840.10045.2.1"})
    await check(detached(der, address="carol@carnet.test"), validator, Status.VALID)


async def test_signer_certificate_absent(pki: testpki.TestPki, validator: ChainValidator) -> None:
    info = cms.ContentInfo.load(sign_data(ENTITY, credential(pki.alice)))
    info["content"]["certificates"] = [
        c for c in info["content"]["certificates"] if "Persons CA" in str(c.chosen.subject.native)
    ]
    await check(detached(info.dump(force=True)), validator, Status.UNTRUSTED, "not included")


# ---------------------------------------------------------------------------------------------------------------
# Certificates


@pytest.mark.parametrize(
    ("name", "address", "status"),
    [
        ("expired", "old@carnet.test", Status.EXPIRED),
        ("not_yet_valid", "future@carnet.test", Status.NOT_YET_VALID),
        ("revoked", "revoked@carnet.test", Status.REVOKED),
        ("wrong_eku", "tls@carnet.test", Status.WRONG_USAGE),
        ("stranger", "stranger@elsewhere.test", Status.UNTRUSTED),
    ],
)
@pytest.mark.parametrize("form", ["detached", "opaque"])
async def test_certificate_problems(
    pki: testpki.TestPki, validator: ChainValidator, name: str, address: str, status: Status, form: str
) -> None:
    message = outer(address) + ENTITY
    signed = sign_message(message, credential(getattr(pki, name)), detached=form == "detached")
    result = await check(signed, validator, status)
    assert result.content == ENTITY  # still reported, for display with a warning
    assert result.signer is not None and result.signer.emails == [address]


async def test_self_signed_signer(pki: testpki.TestPki, validator: ChainValidator) -> None:
    lonely = testpki.make_ca("lonely@carnet.test", slot=20)
    signed = sign_message(outer() + ENTITY, SignerCredential(lonely.key, lonely.cert))
    await check(signed, validator, Status.UNTRUSTED)


# ---------------------------------------------------------------------------------------------------------------
# Limits


async def test_oversized_message(pki: testpki.TestPki, validator: ChainValidator) -> None:
    signed = sign_message(outer() + ENTITY, credential(pki.alice))
    await check(signed, validator, Status.MALFORMED, "exceeds", limits=VerifyLimits(max_message_size=len(signed) - 1))
    await check(signed + b" " * (50 * 1024 * 1024), validator, Status.MALFORMED, "exceeds")


async def test_too_many_signers_and_certificates(pki: testpki.TestPki, validator: ChainValidator) -> None:
    signed = sign_message(outer() + ENTITY, credential(pki.alice))
    await check(signed, validator, Status.MALFORMED, "SignerInfos", limits=VerifyLimits(max_signers=0))
    await check(signed, validator, Status.MALFORMED, "certificates", limits=VerifyLimits(max_certificates=1))


async def test_header_limits(validator: ChainValidator) -> None:
    many = b"".join(b"X-F%d: v\r\n" % i for i in range(1001)) + b"\r\nbody"
    await check(many, validator, Status.MALFORMED, "header fields")
    huge = b"Subject: " + b"x" * (300 * 1024) + b"\r\n\r\nbody"
    await check(huge, validator, Status.MALFORMED, "header block")


# ---------------------------------------------------------------------------------------------------------------
# Fuzzing: nothing raises, ever


@pytest.fixture(scope="module")
def signed_samples(pki: testpki.TestPki) -> list[bytes]:
    message = outer() + ENTITY
    return [
        sign_message(message, credential(pki.alice)),
        sign_message(message, credential(pki.alice), detached=False),
        sign_message(message, credential(pki.alice), rsa_padding="pss"),
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_messages_never_raise(
    validator: ChainValidator, signed_samples: list[bytes], data: st.DataObject
) -> None:
    sample = bytearray(data.draw(st.sampled_from(signed_samples)))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, len(sample) - 1))
        if action == "flip":
            sample[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del sample[at:]
        elif action == "insert":
            sample[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            del sample[at : at + data.draw(st.integers(1, 64))]
        if not sample:
            sample = bytearray(b"\r\n")
    result = asyncio.run(verify_message(bytes(sample), validator))
    assert isinstance(result, SmimeResult)
    assert isinstance(result.status, Status)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=st.binary(max_size=2048))
def test_arbitrary_cms_never_raises(validator: ChainValidator, noise: bytes) -> None:
    for message in (opaque(noise), detached(noise), noise):
        result = asyncio.run(verify_message(message, validator))
        assert result.status in (Status.MALFORMED, Status.UNSIGNED)
