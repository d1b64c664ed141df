"""carnet.pki.smime.sign / verify: round trips over every supported algorithm, form and CMS option."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
import testpki
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from testpki import build_test_pki, make_leaf

from carnet.pki.smime.asn1util import read_tlv
from carnet.pki.smime.canon import base64_body, split_header_body
from carnet.pki.smime.credentials import SignerCredential
from carnet.pki.smime.result import Status
from carnet.pki.smime.sign import sign_data, sign_message
from carnet.pki.smime.validation import ChainValidator, TrustStore
from carnet.pki.smime.verify import MalformedError, verify_message, verify_signed_data

ENTITY = (
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nBonjour=20!\r\n"
)
OUTER = b"From: Dr Alice Martin <alice@carnet.test>\r\nTo: bob@carnet.test\r\nSubject: Compte rendu\r\n"
MESSAGE = OUTER + b"MIME-Version: 1.0\r\n" + ENTITY


@pytest.fixture(scope="module")
def pki() -> testpki.TestPki:
    return build_test_pki()


@pytest.fixture(scope="module")
def trust(pki: testpki.TestPki) -> TrustStore:
    return TrustStore([pki.root.cert], crls=[c.public_bytes(serialization.Encoding.DER) for c in pki.crls])


@pytest.fixture
def validator(trust: TrustStore) -> ChainValidator:
    return ChainValidator(trust)


def credential(issued: testpki.Issued) -> SignerCredential:
    return SignerCredential(issued.key, issued.cert, tuple(issued.chain))


def message_from(address: str, entity: bytes = ENTITY) -> bytes:
    return f"From: {address}\r\nTo: bob@carnet.test\r\nSubject: test\r\nMIME-Version: 1.0\r\n".encode() + entity


def wrap_detached(outer: bytes, entity: bytes, cms_der: bytes, micalg: str | None = "sha-256") -> bytes:
    """A multipart/signed message around ``entity`` with ``cms_der`` as its signature (RFC 8551 §3.5.3)."""
    micalg_param = f"; micalg={micalg}" if micalg is not None else ""
    content_type = f'multipart/signed; protocol="application/pkcs7-signature"{micalg_param}; boundary=BB'
    return (
        outer
        + b"MIME-Version: 1.0\r\n"
        + f"Content-Type: {content_type}\r\n".encode()
        + b"\r\n--BB\r\n"
        + entity
        + b"\r\n--BB\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64_body(cms_der)
        + b"--BB--\r\n"
    )


def wrap_opaque(
    outer: bytes, cms_der: bytes, content_type: bytes = b"application/pkcs7-mime; smime-type=signed-data"
) -> bytes:
    return (
        outer
        + b"MIME-Version: 1.0\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64_body(cms_der)
    )


def combine_signers(*ders: bytes) -> bytes:
    """One SignedData holding the SignerInfos and certificates of several single-signer SignedData."""
    signed = [cms.ContentInfo.load(der)["content"] for der in ders]
    certificates, seen = [], set()
    for sd in signed:
        for choice in sd["certificates"]:
            if choice.dump() not in seen:
                seen.add(choice.dump())
                certificates.append(choice)
    digests = {sd["digest_algorithms"][0]["algorithm"].native for sd in signed}
    combined = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": name} for name in sorted(digests)],
            "encap_content_info": signed[0]["encap_content_info"],
            "certificates": certificates,
            "signer_infos": [si for sd in signed for si in sd["signer_infos"]],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": combined}).dump()


# ---------------------------------------------------------------------------------------------------------------
# Round trips


RSA_SCHEMES = [("pkcs1v15", "rsassa_pkcs1v15"), ("pss", "rsassa_pss")]


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
@pytest.mark.parametrize(("padding", "algorithm"), RSA_SCHEMES)
async def test_rsa_round_trip(
    pki: testpki.TestPki, validator: ChainValidator, digest: str, detached: bool, padding: str, algorithm: str
) -> None:
    signed = sign_message(MESSAGE, credential(pki.alice), detached=detached, digest=digest, rsa_padding=padding)  # type: ignore[arg-type]
    result = await verify_message(signed, validator)
    assert result.status is Status.VALID, result.detail
    assert result.content == ENTITY
    assert result.from_address == "alice@carnet.test"
    assert result.signer is not None
    assert result.signer.digest_algorithm == digest
    assert result.signer.signature_algorithm == algorithm
    assert result.signer.revocation == "good"
    assert result.warnings == []


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
async def test_ecdsa_p256_round_trip(
    pki: testpki.TestPki, validator: ChainValidator, digest: str, detached: bool
) -> None:
    signed = sign_message(message_from("carol@carnet.test"), credential(pki.carol_ec), detached=detached, digest=digest)
    result = await verify_message(signed, validator)
    assert result.status is Status.VALID, result.detail
    assert result.signer is not None
    assert result.signer.signature_algorithm == "ecdsa"
    assert result.signer.digest_algorithm == digest


def test_pss_needs_an_rsa_key(pki: testpki.TestPki) -> None:
    with pytest.raises(ValueError, match="RSA-PSS"):
        sign_data(b"x", credential(pki.carol_ec), rsa_padding="pss")


def test_unsupported_digest_is_refused(pki: testpki.TestPki) -> None:
    with pytest.raises(ValueError, match="unsupported digest"):
        sign_data(b"x", credential(pki.alice), digest="sha1")


def test_credential_refuses_a_foreign_key(pki: testpki.TestPki) -> None:
    with pytest.raises(ValueError, match="does not belong"):
        SignerCredential(pki.bob.key, pki.alice.cert)


def test_signed_message_layout(pki: testpki.TestPki) -> None:
    signed = sign_message(MESSAGE.replace(b"\r\n", b"\n"), credential(pki.alice), digest="sha384")
    headers, body = split_header_body(signed)
    assert headers.startswith(OUTER + b"MIME-Version: 1.0\r\n")
    assert b'protocol="application/pkcs7-signature"; micalg=sha-384' in headers
    assert b"\r\n" + ENTITY + b"\r\n--" in body
    assert b"\n" not in signed.replace(b"\r\n", b"")
    opaque = sign_message(MESSAGE, credential(pki.alice), detached=False)
    assert b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n" in opaque


async def test_binary_attachment_in_an_lf_message(pki: testpki.TestPki, validator: ChainValidator) -> None:
    """RFC 8551 §3.1.2: a binary part is base64-encoded from its raw bytes, bare CR/LF included."""
    raw = b"%PDF-1.7\n\x00\xff\r\x80binary\r\n\n\rend"
    message = (
        b"From: alice@carnet.test\nSubject: scan\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/mixed; boundary=MIX\n\n"
        b"--MIX\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nCi-joint \xc3\xa0 lire\n"
        b"--MIX\nContent-Type: application/pdf\nContent-Transfer-Encoding: binary\n\n" + raw + b"\n--MIX--\n"
    )
    signed = sign_message(message, credential(pki.alice))
    assert signed.isascii()
    result = await verify_message(signed, validator)
    assert result.status is Status.VALID, result.detail
    pdf_part = result.content.split(b"--MIX\r\n")[2]
    headers, body = split_header_body(pdf_part)
    assert b"Content-Transfer-Encoding: base64" in headers
    assert base64.b64decode(body.split(b"\r\n--MIX--")[0]) == raw


def test_sign_data_structure(pki: testpki.TestPki) -> None:
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    info = cms.ContentInfo.load(sign_data(b"data", credential(pki.alice), detached=False, signing_time=moment))
    signed = info["content"]
    assert signed["version"].native == "v1"
    assert signed["encap_content_info"]["content"].native == b"data"
    certs = {c.chosen.subject.native["common_name"] for c in signed["certificates"]}
    assert certs == {"Dr Alice Martin", "Carnet Test Persons CA"}  # the chain, never the root
    si = signed["signer_infos"][0]
    assert si["sid"].name == "issuer_and_serial_number"
    attributes = {a["type"].native: a["values"][0] for a in si["signed_attrs"]}
    assert set(attributes) == {"content_type", "signing_time", "message_digest", "smime_capabilities"}
    assert attributes["signing_time"].native == moment
    assert [c["capability_id"].native for c in attributes["smime_capabilities"]][:2] == ["aes256_gcm", "aes128_gcm"]
    # DER: re-encoding the parsed structure gives the same bytes
    assert cms.ContentInfo.load(info.dump()).dump(force=True) == info.dump()


def test_pss_parameters_follow_rfc_4056(pki: testpki.TestPki) -> None:
    info = cms.ContentInfo.load(sign_data(b"x", credential(pki.alice), digest="sha384", rsa_padding="pss"))
    params = info["content"]["signer_infos"][0]["signature_algorithm"]["parameters"]
    assert params["hash_algorithm"]["algorithm"].native == "sha384"
    assert params["mask_gen_algorithm"]["algorithm"].native == "mgf1"
    assert params["mask_gen_algorithm"]["parameters"]["algorithm"].native == "sha384"
    assert params["salt_length"].native == 48


@pytest.mark.parametrize("issued_name", ["alice", "carol_ec"])
@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
async def test_without_signed_attributes(
    pki: testpki.TestPki, validator: ChainValidator, issued_name: str, detached: bool
) -> None:
    issued = getattr(pki, issued_name)
    address = issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    outer = f"From: {address.get_values_for_type(x509.RFC822Name)[0]}\r\n".encode()
    der = sign_data(ENTITY, credential(issued), detached=detached, signed_attributes=False)
    assert "signed_attrs" not in cms.ContentInfo.load(der)["content"]["signer_infos"][0].native or (
        cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signed_attrs"].native is None
    )
    message = wrap_detached(outer, ENTITY, der) if detached else wrap_opaque(outer, der)
    result = await verify_message(message, validator)
    assert result.status is Status.VALID, result.detail
    assert result.content == ENTITY
    assert result.signer is not None and result.signer.signing_time is None


async def test_verify_signed_data_directly(pki: testpki.TestPki, validator: ChainValidator) -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    der = sign_data(b"payload", credential(pki.alice), signing_time=moment)
    signers, content = await verify_signed_data(der, b"payload", validator)
    assert content == b"payload"
    assert [s.status for s in signers] == [Status.VALID]
    assert signers[0].signing_time == moment
    opaque = sign_data(b"payload", credential(pki.alice), detached=False)
    assert (await verify_signed_data(opaque, None, validator))[1] == b"payload"
    with pytest.raises(MalformedError, match="no content"):
        await verify_signed_data(der, None, validator)
    with pytest.raises(MalformedError, match="detached content was given too"):
        await verify_signed_data(opaque, b"payload", validator)


def to_indefinite_ber(der: bytes) -> bytes:
    """Re-encode ContentInfo, SignedData and its certificate set with BER indefinite lengths (X.690 §8.1.3.6)."""
    _, ci_start, _ = read_tlv(der, 0)
    _, _, oid_end = read_tlv(der, ci_start)  # contentType
    _, explicit_start, _ = read_tlv(der, oid_end)  # [0] EXPLICIT
    _, sd_start, sd_end = read_tlv(der, explicit_start)  # SignedData
    fields, pos = [], sd_start
    while pos < sd_end:
        tag, start, end = read_tlv(der, pos)
        fields.append(b"\xa0\x80" + der[start:end] + b"\x00\x00" if tag == 0xA0 else der[pos:end])
        pos = end
    return b"\x30\x80" + der[ci_start:oid_end] + b"\xa0\x80\x30\x80" + b"".join(fields) + b"\x00\x00" * 3


async def test_ber_indefinite_lengths_are_accepted(pki: testpki.TestPki, validator: ChainValidator) -> None:
    der = sign_data(ENTITY, credential(pki.alice))
    ber = to_indefinite_ber(der)
    assert ber != der and b"\xa0\x80" in ber
    signers, _ = await verify_signed_data(ber, ENTITY, validator)
    assert [s.status for s in signers] == [Status.VALID]


async def test_far_future_signing_time_uses_generalized_time(pki: testpki.TestPki, validator: ChainValidator) -> None:
    moment = datetime(2051, 6, 1, tzinfo=UTC)
    der = sign_data(b"p", credential(pki.alice), signing_time=moment)
    signers, _ = await verify_signed_data(der, b"p", validator)
    assert signers[0].signing_time == moment


# ---------------------------------------------------------------------------------------------------------------
# What the verifier reports about the signer


async def test_signer_info_is_filled(pki: testpki.TestPki, validator: ChainValidator) -> None:
    result = await verify_message(sign_message(MESSAGE, credential(pki.alice)), validator)
    signer = result.signer
    assert signer is not None
    assert signer.subject == "CN=Dr Alice Martin,O=Carnet Test PKI,C=FR"
    assert signer.common_name == "Dr Alice Martin"
    assert signer.emails == ["alice@carnet.test"]
    assert signer.issuer == "CN=Carnet Test Persons CA,O=Carnet Test PKI,C=FR"
    assert int(signer.serial, 16) == pki.alice.cert.serial_number
    assert signer.fingerprint_sha256 == pki.alice.cert.fingerprint(pki.alice.cert.signature_hash_algorithm).hex()  # type: ignore[arg-type]
    assert signer.chain == [
        "CN=Dr Alice Martin,O=Carnet Test PKI,C=FR",
        "CN=Carnet Test Persons CA,O=Carnet Test PKI,C=FR",
        "CN=Carnet Test Root,O=Carnet Test PKI,C=FR",
    ]
    assert signer.chain_status == "ok"
    assert signer.revocation == "good"
    assert signer.signing_time is not None
    assert abs(signer.signing_time - datetime.now(UTC)) < timedelta(minutes=5)
    assert result.to_dict()["signer"]["emails"] == ["alice@carnet.test"]


@pytest.mark.parametrize(
    ("attribute", "value"),
    [(NameOID.SERIAL_NUMBER, "810001234567"), (NameOID.USER_ID, "810009876543")],
    ids=["serialNumber", "UID"],
)
async def test_national_identifier_is_read_from_the_subject(
    pki: testpki.TestPki, validator: ChainValidator, attribute: x509.ObjectIdentifier, value: str
) -> None:
    doctor = make_leaf(
        pki.intermediate, "dr.house@carnet.test", slot=8, subject_extra=[x509.NameAttribute(attribute, value)]
    )
    result = await verify_message(sign_message(message_from("dr.house@carnet.test"), credential(doctor)), validator)
    assert result.status is Status.VALID, result.detail
    assert result.signer is not None and result.signer.national_id == value


# ---------------------------------------------------------------------------------------------------------------
# Forms and spellings


async def test_message_saved_with_lf_line_endings_still_verifies(
    pki: testpki.TestPki, validator: ChainValidator, tmp_path: object
) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "signed.eml"
    for detached in (True, False):
        signed = sign_message(MESSAGE, credential(pki.alice), detached=detached)
        path.write_bytes(signed.replace(b"\r\n", b"\n"))
        result = await verify_message(path.read_bytes(), validator)
        assert result.status is Status.VALID, result.detail
        assert result.content == ENTITY


async def test_mbox_separator_line_is_ignored(pki: testpki.TestPki, validator: ChainValidator) -> None:
    signed = sign_message(MESSAGE, credential(pki.alice))
    mbox = b"From alice@carnet.test Mon Mar  2 10:00:00 2026\n" + signed.replace(b"\r\n", b"\n")
    assert (await verify_message(mbox, validator)).status is Status.VALID


@pytest.mark.parametrize("micalg", ["sha-256", "sha256", "SHA-256", '"sha-256"', None])
async def test_micalg_spellings_are_tolerated(
    pki: testpki.TestPki, validator: ChainValidator, micalg: str | None
) -> None:
    der = sign_data(ENTITY, credential(pki.alice))
    result = await verify_message(wrap_detached(OUTER, ENTITY, der, micalg=micalg), validator)
    assert result.status is Status.VALID, result.detail
    assert result.warnings == []


async def test_wrong_micalg_is_only_a_warning(pki: testpki.TestPki, validator: ChainValidator) -> None:
    der = sign_data(ENTITY, credential(pki.alice))
    result = await verify_message(wrap_detached(OUTER, ENTITY, der, micalg="sha-512"), validator)
    assert result.status is Status.VALID
    assert result.warnings == ["micalg 'sha-512' does not announce sha256"]


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/x-pkcs7-mime; smime-type=signed-data; name=smime.p7m",
        b"application/pkcs7-mime; name=smime.p7m",
        b'application/octet-stream; name="smime.p7m"',
    ],
)
async def test_opaque_spellings(pki: testpki.TestPki, validator: ChainValidator, content_type: bytes) -> None:
    der = sign_data(ENTITY, credential(pki.alice), detached=False)
    result = await verify_message(wrap_opaque(OUTER, der, content_type), validator)
    assert result.status is Status.VALID, result.detail
    assert result.content == ENTITY


async def test_x_pkcs7_signature_protocol(pki: testpki.TestPki, validator: ChainValidator) -> None:
    der = sign_data(ENTITY, credential(pki.alice))
    message = wrap_detached(OUTER, ENTITY, der).replace(b"pkcs7-signature", b"x-pkcs7-signature")
    assert (await verify_message(message, validator)).status is Status.VALID


async def test_signer_identified_by_subject_key_identifier(pki: testpki.TestPki, validator: ChainValidator) -> None:
    info = cms.ContentInfo.load(sign_data(ENTITY, credential(pki.alice)))
    ski = pki.alice.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    signer_info = info["content"]["signer_infos"][0]
    signer_info["sid"] = cms.SignerIdentifier({"subject_key_identifier": ski})
    signer_info["version"] = "v3"
    info["content"]["version"] = "v3"
    result = await verify_message(wrap_detached(OUTER, ENTITY, info.dump(force=True)), validator)
    assert result.status is Status.VALID, result.detail


@pytest.mark.parametrize("algorithm", ["sha256_rsa", "rsassa_pkcs1v15"])
async def test_sha_with_rsa_encryption_oid_is_accepted(
    pki: testpki.TestPki, validator: ChainValidator, algorithm: str
) -> None:
    """RFC 5754 §3.2: signatureAlgorithm may be rsaEncryption or sha256WithRSAEncryption."""
    info = cms.ContentInfo.load(sign_data(ENTITY, credential(pki.alice)))
    info["content"]["signer_infos"][0]["signature_algorithm"] = {"algorithm": algorithm}
    result = await verify_message(wrap_detached(OUTER, ENTITY, info.dump(force=True)), validator)
    assert result.status is Status.VALID, result.detail
    assert result.signer is not None and result.signer.signature_algorithm == "rsassa_pkcs1v15"


async def test_new_crl_revokes_a_signer_verified_before(pki: testpki.TestPki) -> None:
    crls = [c.public_bytes(serialization.Encoding.DER) for c in pki.crls]
    trust = TrustStore([pki.root.cert], crls=crls)
    validator = ChainValidator(trust)
    signed = sign_message(message_from("bob@carnet.test"), credential(pki.bob))
    assert (await verify_message(signed, validator)).status is Status.VALID
    assert (await verify_message(signed, validator)).status is Status.VALID
    assert validator.hits == 1
    later = testpki.NOW - timedelta(minutes=10)
    trust.add_crl(
        testpki.make_crl(pki.intermediate, [pki.bob.cert], this_update=later).public_bytes(serialization.Encoding.DER)
    )
    result = await verify_message(signed, validator)
    assert result.status is Status.REVOKED
    assert result.signer is not None and result.signer.revocation == "revoked"


async def test_unsigned_message(validator: ChainValidator) -> None:
    result = await verify_message(MESSAGE, validator)
    assert result.status is Status.UNSIGNED
    assert result.content == ENTITY
    assert result.from_address == "alice@carnet.test"
    assert result.signers == []


async def test_enveloped_smime_type_is_not_for_verify(validator: ChainValidator) -> None:
    message = OUTER + b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nAAAA\r\n"
    result = await verify_message(message, validator)
    assert result.status is Status.MALFORMED
    assert "open_message" in result.detail


# ---------------------------------------------------------------------------------------------------------------
# Several signers


async def test_two_valid_signers_one_binds(pki: testpki.TestPki, validator: ChainValidator) -> None:
    cms_der = combine_signers(
        sign_data(ENTITY, credential(pki.bob)), sign_data(ENTITY, credential(pki.alice), digest="sha384")
    )
    result = await verify_message(wrap_detached(OUTER, ENTITY, cms_der, micalg="sha-256,sha-384"), validator)
    assert result.status is Status.VALID, result.detail
    assert result.signer is not None and result.signer.emails == ["alice@carnet.test"]
    statuses = {s.emails[0]: s.status for s in result.signers}
    assert statuses == {"bob@carnet.test": Status.FROM_MISMATCH, "alice@carnet.test": Status.VALID}


async def test_one_bad_signer_does_not_spoil_a_good_one(pki: testpki.TestPki, validator: ChainValidator) -> None:
    cms_der = combine_signers(
        sign_data(ENTITY, credential(pki.revoked)),
        sign_data(ENTITY, credential(pki.alice)),
        sign_data(b"other content", credential(pki.bob)),
    )
    result = await verify_message(wrap_detached(OUTER, ENTITY, cms_der), validator)
    assert result.status is Status.VALID
    statuses = {s.emails[0]: s.status for s in result.signers}  # SET OF SignerInfo: DER order, not ours
    assert statuses == {
        "revoked@carnet.test": Status.REVOKED,
        "alice@carnet.test": Status.VALID,
        "bob@carnet.test": Status.TAMPERED,
    }


async def test_no_valid_signer_reports_the_most_serious(pki: testpki.TestPki, validator: ChainValidator) -> None:
    cms_der = combine_signers(sign_data(ENTITY, credential(pki.stranger)), sign_data(ENTITY, credential(pki.revoked)))
    result = await verify_message(wrap_detached(OUTER, ENTITY, cms_der), validator)
    assert result.status is Status.REVOKED
    assert result.signer is not None and result.signer.emails == ["revoked@carnet.test"]


async def test_check_from_false_accepts_any_valid_signer(pki: testpki.TestPki, validator: ChainValidator) -> None:
    signed = sign_message(message_from("someone@else.test"), credential(pki.alice))
    assert (await verify_message(signed, validator)).status is Status.FROM_MISMATCH
    assert (await verify_message(signed, validator, check_from=False)).status is Status.VALID


def test_base64_body_lines() -> None:
    body = base64_body(bytes(200))
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert base64.b64decode(body) == bytes(200)
