"""carnet.pki.smime.envelope: AuthEnvelopedData / EnvelopedData structure, round trips, failures and limits."""

from __future__ import annotations

import base64
import os
from datetime import timedelta

import pytest
import testpki
from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from testpki import NOW, build_test_pki, new_key

from carnet.pki.smime import envelope
from carnet.pki.smime.envelope import (
    DecryptError,
    DecryptionKey,
    EncryptError,
    MalformedEnvelopeError,
    decrypt_data,
    decrypt_message,
    encrypt_data,
    encrypt_message,
    is_enveloped,
)

ENTITY = b"Content-Type: text/plain; charset=utf-8\r\n\r\nOrdonnance: 1 bo\xc3\xaete de parac\xc3\xa9tamol\r\n"
MESSAGE = (
    b"From: Dr Alice Martin <alice@carnet.test>\r\n"
    b"To: bob@carnet.test\r\n"
    b"Subject: Compte rendu\r\n"
    b"MIME-Version: 1.0\r\n" + ENTITY
)


@pytest.fixture(scope="module")
def pki() -> testpki.TestPki:
    return build_test_pki()


def key_of(issued: object) -> DecryptionKey:
    return DecryptionKey(issued.key, issued.cert)  # type: ignore[attr-defined]


def parse(der: bytes) -> cms.ContentInfo:
    return cms.ContentInfo.load(der)


# ---------------------------------------------------------------------------------------------------------------
# Structure of what we produce


def test_default_is_auth_enveloped_aes256_gcm_with_rsa_oaep_sha256(pki: testpki.TestPki) -> None:
    info = parse(encrypt_data(ENTITY, [pki.alice.cert]))
    assert info["content_type"].native == "authenticated_enveloped_data"
    content = info["content"]
    assert content["version"].native == "v0"
    algorithm = content["auth_encrypted_content_info"]["content_encryption_algorithm"]
    assert algorithm["algorithm"].native == "aes256_gcm"
    parameters = envelope._GcmParameters.load(algorithm["parameters"].dump())
    assert len(parameters["aes_nonce"].native) == 12
    assert parameters["aes_icv_len"].native == 16
    assert len(content["mac"].native) == 16
    assert len(content["auth_encrypted_content_info"]["encrypted_content"].native) == len(ENTITY)
    (recipient,) = content["recipient_infos"]
    assert recipient.name == "ktri"
    ktri = recipient.chosen
    assert ktri["version"].native == "v0"
    key_algorithm = ktri["key_encryption_algorithm"]
    assert key_algorithm["algorithm"].native == "rsaes_oaep"
    assert key_algorithm["parameters"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert key_algorithm["parameters"]["mask_gen_algorithm"]["parameters"]["algorithm"].native == "sha256"
    rid = ktri["rid"]
    assert rid.name == "issuer_and_serial_number"
    assert rid.chosen["serial_number"].native == pki.alice.cert.serial_number
    assert rid.chosen["issuer"].dump() == pki.alice.cert.issuer.public_bytes()


def test_legacy_is_enveloped_aes256_cbc_with_rsa_pkcs1v15(pki: testpki.TestPki) -> None:
    info = parse(encrypt_data(ENTITY, [pki.alice.cert], legacy=True))
    assert info["content_type"].native == "enveloped_data"
    content = info["content"]
    assert content["version"].native == "v0"
    algorithm = content["encrypted_content_info"]["content_encryption_algorithm"]
    assert algorithm["algorithm"].native == "aes256_cbc"
    assert len(algorithm["parameters"].native) == 16
    (recipient,) = content["recipient_infos"]
    assert recipient.chosen["key_encryption_algorithm"]["algorithm"].native == "rsaes_pkcs1v15"


def test_ec_recipient_gets_key_agree_recipient_info_per_rfc5753(pki: testpki.TestPki) -> None:
    info = parse(encrypt_data(ENTITY, [pki.carol_ec.cert]))
    (recipient,) = info["content"]["recipient_infos"]
    assert recipient.name == "kari"
    kari = recipient.chosen
    assert kari["version"].native == "v3"
    assert kari["originator"].name == "originator_key"
    originator = kari["originator"].chosen
    assert originator["algorithm"]["algorithm"].native == "ec"
    assert isinstance(originator["algorithm"]["parameters"], core.Void)
    assert originator["public_key"].contents[1] == 0x04  # uncompressed point
    scheme = kari["key_encryption_algorithm"]
    assert scheme["algorithm"].dotted == "1.3.132.1.11.1"  # dhSinglePass-stdDH-sha256kdf-scheme
    wrap = cms.KeyEncryptionAlgorithm.load(scheme["parameters"].dump())
    assert wrap["algorithm"].native == "aes256_wrap"
    (encrypted_key,) = kari["recipient_encrypted_keys"]
    assert encrypted_key["rid"].chosen["serial_number"].native == pki.carol_ec.cert.serial_number
    assert len(encrypted_key["encrypted_key"].native) == 40  # 32-byte CEK wrapped (RFC 3394)


def test_legacy_with_an_ec_recipient_is_enveloped_data_version_2(pki: testpki.TestPki) -> None:
    info = parse(encrypt_data(ENTITY, [pki.alice.cert, pki.carol_ec.cert], legacy=True))
    assert info["content"]["version"].native == "v2"  # RFC 5652 §6.1: a v3 RecipientInfo is present


def test_each_encryption_uses_a_fresh_key_and_nonce(pki: testpki.TestPki) -> None:
    first = parse(encrypt_data(ENTITY, [pki.alice.cert]))["content"]
    second = parse(encrypt_data(ENTITY, [pki.alice.cert]))["content"]
    assert first["mac"].native != second["mac"].native
    assert (
        first["auth_encrypted_content_info"]["encrypted_content"].native
        != second["auth_encrypted_content_info"]["encrypted_content"].native
    )


# ---------------------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("legacy", [False, True], ids=["gcm", "cbc"])
@pytest.mark.parametrize("who", ["alice", "carol_ec"])
def test_round_trip(pki: testpki.TestPki, legacy: bool, who: str) -> None:
    recipient = getattr(pki, who)
    result = decrypt_data(encrypt_data(ENTITY, [recipient.cert], legacy=legacy), [key_of(recipient)])
    assert result.content == ENTITY
    assert result.algorithm == ("aes256_cbc" if legacy else "aes256_gcm")
    assert result.integrity_protected is (not legacy)


@pytest.mark.parametrize("legacy", [False, True], ids=["gcm", "cbc"])
def test_several_recipients_each_decrypt(pki: testpki.TestPki, legacy: bool) -> None:
    der = encrypt_data(ENTITY, [pki.alice.cert, pki.bob.cert, pki.carol_ec.cert], legacy=legacy)
    assert len(parse(der)["content"]["recipient_infos"]) == 3
    for who in (pki.alice, pki.bob, pki.carol_ec):
        assert decrypt_data(der, [key_of(who)]).content == ENTITY


def test_the_right_key_is_picked_among_several(pki: testpki.TestPki) -> None:
    der = encrypt_data(ENTITY, [pki.bob.cert])
    assert decrypt_data(der, [key_of(pki.alice), key_of(pki.carol_ec), key_of(pki.bob)]).content == ENTITY


def test_duplicate_recipients_get_one_recipient_info(pki: testpki.TestPki) -> None:
    der = encrypt_data(ENTITY, [pki.alice.cert, pki.alice.cert])
    assert len(parse(der)["content"]["recipient_infos"]) == 1


def test_empty_and_large_contents_round_trip(pki: testpki.TestPki) -> None:
    for data in (b"", os.urandom(1_000_003)):
        for legacy in (False, True):
            assert decrypt_data(encrypt_data(data, [pki.bob.cert], legacy=legacy), [key_of(pki.bob)]).content == data


def test_subject_key_identifier_recipient_is_understood(pki: testpki.TestPki) -> None:
    """RFC 5652 §6.2.1: rid may be [0] subjectKeyIdentifier (we send issuerAndSerialNumber but read both)."""
    info = parse(encrypt_data(ENTITY, [pki.alice.cert]))
    ktri = info["content"]["recipient_infos"][0].chosen
    ski = pki.alice.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    ktri["rid"] = cms.RecipientIdentifier(name="subject_key_identifier", value=ski)
    ktri["version"] = "v2"
    rebuilt = cms.ContentInfo({"content_type": info["content_type"].native, "content": info["content"]}).dump(True)
    assert decrypt_data(rebuilt, [key_of(pki.alice)]).content == ENTITY


def _cek_of(der: bytes, issued: object) -> bytes:
    ktri = parse(der)["content"]["recipient_infos"][0].chosen
    oaep = asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    return issued.key.decrypt(ktri["encrypted_key"].native, oaep)  # type: ignore[attr-defined]


def _rebuild_gcm(der: bytes, cek: bytes, *, tag_length: int, attrs: cms.CMSAttributes | None) -> bytes:
    info = parse(der)
    content = info["content"]
    nonce = os.urandom(12)
    aad = attrs.dump() if attrs is not None else None
    encryptor = Cipher(algorithms.AES(cek), modes.GCM(nonce)).encryptor()
    if aad is not None:
        encryptor.authenticate_additional_data(aad)
    ciphertext = encryptor.update(ENTITY) + encryptor.finalize()
    content["auth_encrypted_content_info"]["content_encryption_algorithm"] = {
        "algorithm": "aes256_gcm",
        "parameters": envelope._GcmParameters({"aes_nonce": nonce, "aes_icv_len": tag_length}),
    }
    content["auth_encrypted_content_info"]["encrypted_content"] = ciphertext
    content["mac"] = encryptor.tag[:tag_length]
    if attrs is not None:
        content["auth_attrs"] = attrs
    return cms.ContentInfo({"content_type": "authenticated_enveloped_data", "content": content}).dump(True)


def test_gcm_with_short_icv_and_authenticated_attributes(pki: testpki.TestPki) -> None:
    """RFC 5084 §3.2 ICV lengths 12-16; RFC 5083 §2.1 authAttrs are GCM additional data (DER, SET OF tag)."""
    der = encrypt_data(ENTITY, [pki.alice.cert])
    cek = _cek_of(der, pki.alice)
    attrs = cms.CMSAttributes([{"type": "content_type", "values": ["data"]}])
    rebuilt = _rebuild_gcm(der, cek, tag_length=12, attrs=attrs)
    assert len(parse(rebuilt)["content"]["mac"].native) == 12
    assert decrypt_data(rebuilt, [key_of(pki.alice)]).content == ENTITY
    # The additional data is authenticated: a changed attribute fails the tag.
    tampered = parse(rebuilt)
    tampered["content"]["auth_attrs"] = cms.CMSAttributes(
        [{"type": "content_type", "values": ["signed_data"]}]
    )
    with pytest.raises(DecryptError, match="decryption failed"):
        decrypt_data(tampered.dump(True), [key_of(pki.alice)])


# ---------------------------------------------------------------------------------------------------------------
# Failures


def test_wrong_recipient_says_who_the_message_is_for(pki: testpki.TestPki) -> None:
    der = encrypt_data(ENTITY, [pki.bob.cert])
    with pytest.raises(DecryptError, match="not encrypted for our key") as caught:
        decrypt_data(der, [key_of(pki.alice)])
    assert not isinstance(caught.value, MalformedEnvelopeError)
    assert f"serial {pki.bob.cert.serial_number:x}" in str(caught.value)
    assert "Dr Alice Martin" in str(caught.value)


def test_no_key_at_all(pki: testpki.TestPki) -> None:
    with pytest.raises(DecryptError, match="no decryption key was given"):
        decrypt_data(encrypt_data(ENTITY, [pki.bob.cert]), [])


def test_same_serial_under_another_issuer_is_not_a_match(pki: testpki.TestPki) -> None:
    info = parse(encrypt_data(ENTITY, [pki.alice.cert]))
    rid = info["content"]["recipient_infos"][0].chosen["rid"].chosen
    rid["issuer"] = asn1_x509.Name.load(x509.Name.from_rfc4514_string("CN=Other CA,O=Elsewhere,C=FR").public_bytes())
    rebuilt = info.dump(True)
    with pytest.raises(DecryptError, match="not encrypted for our key"):
        decrypt_data(rebuilt, [key_of(pki.alice)])


def _flip(der: bytes, needle: bytes, offset: int = 0) -> bytes:
    position = der.index(needle) + offset
    return der[:position] + bytes([der[position] ^ 0x01]) + der[position + 1 :]


def test_gcm_flipped_ciphertext_byte_fails_authentication(pki: testpki.TestPki) -> None:
    der = encrypt_data(ENTITY, [pki.alice.cert])
    ciphertext = parse(der)["content"]["auth_encrypted_content_info"]["encrypted_content"].native
    with pytest.raises(DecryptError, match="authentication tag mismatch") as caught:
        decrypt_data(_flip(der, ciphertext, 7), [key_of(pki.alice)])
    assert not isinstance(caught.value, MalformedEnvelopeError)


def test_gcm_flipped_tag_fails(pki: testpki.TestPki) -> None:
    der = encrypt_data(ENTITY, [pki.alice.cert])
    mac = parse(der)["content"]["mac"].native
    with pytest.raises(DecryptError, match="authentication tag mismatch"):
        decrypt_data(_flip(der, mac, 15), [key_of(pki.alice)])


@pytest.mark.parametrize("who", ["alice", "carol_ec"])
def test_corrupt_wrapped_key_fails_like_a_bad_tag(pki: testpki.TestPki, who: str) -> None:
    """RFC 3218 §2.3.2: a key-transport failure is not distinguishable from a content failure."""
    recipient = getattr(pki, who)
    der = encrypt_data(ENTITY, [recipient.cert])
    info = parse(der)
    chosen = info["content"]["recipient_infos"][0].chosen
    holder = chosen if who == "alice" else chosen["recipient_encrypted_keys"][0]
    encrypted_key = holder["encrypted_key"].native
    ciphertext = info["content"]["auth_encrypted_content_info"]["encrypted_content"].native
    with pytest.raises(DecryptError) as key_failure:
        decrypt_data(_flip(der, encrypted_key, 3), [key_of(recipient)])
    with pytest.raises(DecryptError) as content_failure:
        decrypt_data(_flip(der, ciphertext, 3), [key_of(recipient)])
    assert str(key_failure.value) == str(content_failure.value)
    assert type(key_failure.value) is type(content_failure.value) is DecryptError


def test_cbc_corrupt_pkcs1_key_never_reveals_padding(pki: testpki.TestPki) -> None:
    """PKCS#1 v1.5 (Bleichenbacher): a broken block yields a random CEK; the outcome is a uniform failure or noise."""
    der = encrypt_data(ENTITY, [pki.alice.cert], legacy=True)
    encrypted_key = parse(der)["content"]["recipient_infos"][0].chosen["encrypted_key"].native
    outcomes = set()
    for offset in range(0, 256, 16):
        try:
            result = decrypt_data(_flip(der, encrypted_key, offset), [key_of(pki.alice)])
        except DecryptError as exc:
            assert type(exc) is DecryptError
            outcomes.add(str(exc))
        else:
            assert result.content != ENTITY
    assert len(outcomes) <= 1


def test_cbc_tampering_is_not_detected_but_flagged_unprotected(pki: testpki.TestPki) -> None:
    """The reason AuthEnvelopedData is the default: CBC decrypts altered ciphertext to altered plaintext."""
    der = encrypt_data(ENTITY, [pki.alice.cert], legacy=True)
    ciphertext = parse(der)["content"]["encrypted_content_info"]["encrypted_content"].native
    result = decrypt_data(_flip(der, ciphertext, 0), [key_of(pki.alice)])  # first block: second block garbled
    assert result.content != ENTITY
    assert result.integrity_protected is False


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", os.urandom(64), b"-----BEGIN PKCS7-----\n", b"\x30\x03\x06\x01\x00"],
    ids=["empty", "zero", "random", "pem", "tiny-seq"],
)
def test_garbage_is_malformed(pki: testpki.TestPki, data: bytes) -> None:
    with pytest.raises(MalformedEnvelopeError):
        decrypt_data(data, [key_of(pki.alice)])


def test_truncations_are_malformed_never_a_crash(pki: testpki.TestPki) -> None:
    der = encrypt_data(ENTITY, [pki.alice.cert, pki.carol_ec.cert])
    for length in range(0, len(der), 37):
        with pytest.raises(MalformedEnvelopeError):
            decrypt_data(der[:length], [key_of(pki.alice)])


def test_signed_data_is_not_enveloped(pki: testpki.TestPki) -> None:
    signed = cms.ContentInfo(
        {
            "content_type": "signed_data",
            "content": {
                "version": "v1",
                "digest_algorithms": [],
                "encap_content_info": {"content_type": "data"},
                "signer_infos": [],
            },
        }
    ).dump()
    with pytest.raises(MalformedEnvelopeError, match="not enveloped"):
        decrypt_data(signed, [key_of(pki.alice)])


def test_mode_and_structure_must_agree(pki: testpki.TestPki) -> None:
    """RFC 5083: AuthEnvelopedData needs an authenticated mode; CBC inside it is refused."""
    info = parse(encrypt_data(ENTITY, [pki.alice.cert]))
    info["content"]["auth_encrypted_content_info"]["content_encryption_algorithm"] = {
        "algorithm": "aes256_cbc",
        "parameters": b"\0" * 16,
    }
    with pytest.raises(MalformedEnvelopeError, match="not allowed"):
        decrypt_data(info.dump(True), [key_of(pki.alice)])


def test_unsupported_content_cipher(pki: testpki.TestPki) -> None:
    info = parse(encrypt_data(ENTITY, [pki.alice.cert], legacy=True))
    info["content"]["encrypted_content_info"]["content_encryption_algorithm"] = {
        "algorithm": "tripledes_3key",
        "parameters": b"\0" * 8,
    }
    with pytest.raises(MalformedEnvelopeError, match="unsupported content-encryption algorithm 'tripledes_3key'"):
        decrypt_data(info.dump(True), [key_of(pki.alice)])


# ---------------------------------------------------------------------------------------------------------------
# Limits and recipient checks


def test_recipient_count_limit_on_decrypt(pki: testpki.TestPki, monkeypatch: pytest.MonkeyPatch) -> None:
    der = encrypt_data(ENTITY, [pki.alice.cert, pki.bob.cert, pki.carol_ec.cert])
    monkeypatch.setattr(envelope, "MAX_RECIPIENTS", 2)
    with pytest.raises(MalformedEnvelopeError, match="exceed the limit of 2"):
        decrypt_data(der, [key_of(pki.alice)])


def test_recipient_count_limit_on_encrypt(pki: testpki.TestPki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope, "MAX_RECIPIENTS", 2)
    with pytest.raises(EncryptError, match="3 recipients exceed the limit of 2"):
        encrypt_data(ENTITY, [pki.alice.cert, pki.bob.cert, pki.carol_ec.cert])


def test_size_limit(pki: testpki.TestPki, monkeypatch: pytest.MonkeyPatch) -> None:
    der = encrypt_data(ENTITY, [pki.alice.cert])
    monkeypatch.setattr(envelope, "MAX_ENVELOPE_BYTES", len(der) - 1)
    with pytest.raises(MalformedEnvelopeError, match="exceeds the limit"):
        decrypt_data(der, [key_of(pki.alice)])
    with pytest.raises(EncryptError, match="exceeds the limit"):
        encrypt_data(b"x" * len(der), [pki.alice.cert])


def test_no_recipient_is_an_error() -> None:
    with pytest.raises(EncryptError, match="no recipient"):
        encrypt_data(ENTITY, [])


def _cert_with_usage(key_kind: str, *, encipherment: bool, agreement: bool) -> x509.Certificate:
    key = new_key(key_kind, 40)
    name = x509.Name.from_rfc4514_string("CN=usage test")
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.KeyUsage(True, False, encipherment, False, agreement, False, False, False, False), critical=True
        )
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )


def test_key_usage_must_allow_key_management() -> None:
    """RFC 8550 §4.4.2: keyEncipherment for RSA, keyAgreement for EC, when keyUsage is present."""
    with pytest.raises(EncryptError, match="keyEncipherment"):
        encrypt_data(ENTITY, [_cert_with_usage("rsa2048", encipherment=False, agreement=False)])
    with pytest.raises(EncryptError, match="keyAgreement"):
        encrypt_data(ENTITY, [_cert_with_usage("p256", encipherment=False, agreement=False)])
    assert encrypt_data(ENTITY, [_cert_with_usage("p256", encipherment=False, agreement=True)])


def test_decryption_key_must_match_its_certificate(pki: testpki.TestPki) -> None:
    with pytest.raises(ValueError, match="does not match the certificate"):
        DecryptionKey(pki.alice.key, pki.bob.cert)


# ---------------------------------------------------------------------------------------------------------------
# Messages


@pytest.mark.parametrize("legacy", [False, True], ids=["gcm", "cbc"])
def test_encrypt_message_keeps_outer_headers_outside(pki: testpki.TestPki, legacy: bool) -> None:
    encrypted = encrypt_message(MESSAGE, [pki.bob.cert], legacy=legacy)
    header, _, body = encrypted.partition(b"\r\n\r\n")
    assert b"From: Dr Alice Martin <alice@carnet.test>\r\n" in header
    assert b"Subject: Compte rendu\r\n" in header
    assert header.count(b"MIME-Version: 1.0") == 1
    smime_type = b"enveloped-data" if legacy else b"authEnveloped-data"
    assert (
        b"Content-Type: application/pkcs7-mime; smime-type=" + smime_type + b"; name=smime.p7m\r\n" in header + b"\r\n"
    )
    assert b"Content-Transfer-Encoding: base64" in header
    assert b"text/plain" not in encrypted and b"Ordonnance" not in encrypted
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert is_enveloped(encrypted)
    content = decrypt_data(base64.b64decode(body), [key_of(pki.bob)]).content
    assert content == ENTITY


@pytest.mark.parametrize("legacy", [False, True], ids=["gcm", "cbc"])
def test_decrypt_message_reattaches_outer_headers(pki: testpki.TestPki, legacy: bool) -> None:
    encrypted = encrypt_message(MESSAGE, [pki.alice.cert, pki.carol_ec.cert], legacy=legacy)
    for who in (pki.alice, pki.carol_ec):
        message, decrypted = decrypt_message(encrypted, [key_of(who)])
        assert message.startswith(b"From: Dr Alice Martin <alice@carnet.test>\r\n")
        assert message.endswith(ENTITY)
        assert b"pkcs7" not in message
        assert decrypted.integrity_protected is (not legacy)


def test_encrypt_message_with_lf_line_endings(pki: testpki.TestPki) -> None:
    encrypted = encrypt_message(MESSAGE.replace(b"\r\n", b"\n"), [pki.bob.cert])
    message, _ = decrypt_message(encrypted, [key_of(pki.bob)])
    assert message.endswith(ENTITY)


def test_decrypt_message_refuses_other_types(pki: testpki.TestPki) -> None:
    assert not is_enveloped(MESSAGE)
    with pytest.raises(MalformedEnvelopeError, match="not application/pkcs7-mime"):
        decrypt_message(MESSAGE, [key_of(pki.alice)])


def test_decrypt_message_with_bad_base64(pki: testpki.TestPki) -> None:
    encrypted = encrypt_message(MESSAGE, [pki.bob.cert])
    header, _, _ = encrypted.partition(b"\r\n\r\n")
    with pytest.raises(MalformedEnvelopeError, match="base64"):
        decrypt_message(header + b"\r\n\r\n!!!! not base64 ****\r\n", [key_of(pki.bob)])


def test_is_enveloped_reads_the_cms_when_smime_type_is_missing(pki: testpki.TestPki) -> None:
    encrypted = encrypt_message(MESSAGE, [pki.bob.cert])
    without = encrypted.replace(b"smime-type=authEnveloped-data; ", b"")
    assert is_enveloped(without)
    assert decrypt_message(without, [key_of(pki.bob)])[0].endswith(ENTITY)
    signed_type = encrypted.replace(b"authEnveloped-data", b"signed-data")
    assert not is_enveloped(signed_type)


def test_binary_transfer_encoding_is_read(pki: testpki.TestPki) -> None:
    der = encrypt_data(ENTITY, [pki.bob.cert])
    message = (
        b"From: alice@carnet.test\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + der
    )
    assert decrypt_message(message, [key_of(pki.bob)])[0].endswith(ENTITY)



def test_octet_stream_p7m_spelling_is_read(pki: testpki.TestPki) -> None:
    """RFC 8551 §3.2.1: some agents label the envelope application/octet-stream with a .p7m name."""
    encrypted = encrypt_message(MESSAGE, [pki.bob.cert]).replace(
        b"application/pkcs7-mime; smime-type=authEnveloped-data; name=smime.p7m",
        b'application/octet-stream; name="SMIME.P7M"',
    )
    assert b"pkcs7-mime" not in encrypted
    assert is_enveloped(encrypted)
    assert decrypt_message(encrypted, [key_of(pki.bob)])[0].endswith(ENTITY)
    assert not is_enveloped(encrypted.replace(b"SMIME.P7M", b"report.pdf"))


def test_private_key_operations_are_bounded(pki: testpki.TestPki, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message repeating our RecipientInfo many times costs at most MAX_KEY_ATTEMPTS RSA decryptions."""
    info = parse(encrypt_data(ENTITY, [pki.alice.cert]))
    genuine = info["content"]["recipient_infos"][0]
    decoy = cms.RecipientInfo.load(genuine.dump())
    # RecipientInfos is a SET OF: DER sorts it by encoding, so the decoys' keys start with zero bytes to sort
    # before the genuine one (whose first 8 bytes are all zero with probability 2^-64).
    decoys = []
    for _ in range(20):
        decoy.chosen["encrypted_key"] = bytes(8) + os.urandom(248)
        decoys.append(cms.RecipientInfo.load(decoy.dump(True)))
    info["content"]["recipient_infos"] = [*decoys, genuine]
    crafted = info.dump(True)
    calls = []
    original = envelope._recover_cek
    monkeypatch.setattr(envelope, "_recover_cek", lambda *args: calls.append(1) or original(*args))
    with pytest.raises(DecryptError, match="decryption failed"):
        decrypt_data(crafted, [key_of(pki.alice)])
    assert len(calls) == envelope.MAX_KEY_ATTEMPTS
