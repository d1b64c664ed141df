"""carnet.pki.smime.binding: the From ↔ signer binding (RFC 8550 §3), alone and through verify_message."""

from __future__ import annotations

import pytest
import testpki
from cryptography.hazmat.primitives import serialization
from testpki import build_test_pki, make_leaf

from carnet.pki.smime.binding import BindingError, binds, parse_mailbox, sender_address
from carnet.pki.smime.credentials import SignerCredential
from carnet.pki.smime.result import Status
from carnet.pki.smime.sign import sign_message
from carnet.pki.smime.validation import ChainValidator, TrustStore
from carnet.pki.smime.verify import verify_message

ENTITY = b"Content-Type: text/plain\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def pki() -> testpki.TestPki:
    return build_test_pki()


@pytest.fixture
def validator(pki: testpki.TestPki) -> ChainValidator:
    crls = [c.public_bytes(serialization.Encoding.DER) for c in pki.crls]
    return ChainValidator(TrustStore([pki.root.cert], crls=crls))


def credential(issued: testpki.Issued) -> SignerCredential:
    return SignerCredential(issued.key, issued.cert, tuple(issued.chain))


# ---------------------------------------------------------------------------------------------------------------
# sender_address / parse_mailbox


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("alice@carnet.test", "alice@carnet.test"),
        ("Alice@Carnet.TEST", "alice@carnet.test"),
        ("Dr Alice Martin <alice@carnet.test>", "alice@carnet.test"),
        ('"Martin, Alice" <alice@carnet.test>', "alice@carnet.test"),
        ("Dr. A. Martin <alice@carnet.test>", "alice@carnet.test"),
        ("<alice@carnet.test>", "alice@carnet.test"),
        ("alice@carnet.test (Dr Martin)", "alice@carnet.test"),
        ("=?utf-8?q?H=C3=A9l=C3=A8ne_Dupr=C3=A9?= <helene@carnet.test>", "helene@carnet.test"),
        ("Alice < alice@carnet.test >", "alice@carnet.test"),
        ("H\u00e9l\u00e8ne <helene@carnet.test>", "helene@carnet.test"),
    ],
)
def test_accepted_mailboxes(value: str, address: str) -> None:
    assert parse_mailbox(value) == address


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("alice@carnet.test <bob@carnet.test>", "'@'"),
        ('"alice@carnet.test" <bob@carnet.test>', "'@'"),
        ("=?utf-8?q?alice=40carnet.test?= <bob@carnet.test>", "'@'"),
        ("=?utf-8?b?YWxpY2VAY2FybmV0LnRlc3Q=?= <bob@carnet.test>", "'@'"),
        ("=?utf-8?q?Alice_=3Calice=40carnet.test=3E?= <bob@carnet.test>", "could pass for another address"),
        ("bob@carnet.test (alice@carnet.test)", "comment"),
        ("Soins: alice@carnet.test;", "group"),
        ("Undisclosed recipients:;", "group"),
        ("alice@carnet.test, bob@carnet.test", "more than one"),
        ("Alice <alice@carnet.test>, Bob <bob@carnet.test>", "more than one"),
        ("Alice <alice@carnet.test> trailing", "after the <address>"),
        ("<alice@carnet.test> <bob@carnet.test>", "exactly one"),
        ("<@relay.test:alice@carnet.test>", "route"),
        ("alice@[192.0.2.1]", "domain literal"),
        ("alice", "no '@'"),
        ("alice @carnet.test", "white space"),
        ("a..b@carnet.test", "local part"),
        ("Al\u202eice <alice@carnet.test>", "bidirectional"),
        ("Alice\x07 <alice@carnet.test>", "control"),
        ('"unterminated <alice@carnet.test>', "unterminated"),
        ("(unterminated alice@carnet.test", "unterminated"),
    ],
)
def test_refused_mailboxes(value: str, reason: str) -> None:
    with pytest.raises(BindingError, match=reason):
        parse_mailbox(value)


def test_sender_address_needs_exactly_one_from() -> None:
    assert sender_address(b"From: alice@carnet.test\r\nTo: bob@carnet.test\r\n") == "alice@carnet.test"
    with pytest.raises(BindingError, match="no From"):
        sender_address(b"To: bob@carnet.test\r\n")
    with pytest.raises(BindingError, match="2 From header fields"):
        sender_address(b"From: alice@carnet.test\r\nfrom: alice@carnet.test\r\n")
    with pytest.raises(BindingError, match="UTF-8"):
        sender_address(b"From: \xff <alice@carnet.test>\r\n")
    assert sender_address(b"From: Alice\r\n <alice@carnet.test>\r\n") == "alice@carnet.test"
    with pytest.raises(BindingError, match="longer than"):
        sender_address(b"From: " + b"A" * 5000 + b" <alice@carnet.test>\r\n")


# ---------------------------------------------------------------------------------------------------------------
# binds


def test_binds_matches_rfc822_names_case_insensitively(pki: testpki.TestPki) -> None:
    assert binds(pki.alice.cert, "alice@carnet.test")
    assert binds(pki.alice.cert, "ALICE@carnet.TEST")
    assert not binds(pki.alice.cert, "bob@carnet.test")
    assert not binds(pki.alice.cert, "alice@carnet.test.evil")


def test_binds_uses_subject_email_only_without_san(pki: testpki.TestPki) -> None:
    legacy = make_leaf(pki.intermediate, "legacy@carnet.test", slot=9, san=False)
    assert binds(legacy.cert, "legacy@carnet.test")


def test_extra_san_addresses_bind(pki: testpki.TestPki) -> None:
    two = make_leaf(pki.intermediate, "one@carnet.test", slot=10, extra_emails=["two@carnet.test"])
    assert binds(two.cert, "two@carnet.test")


# ---------------------------------------------------------------------------------------------------------------
# Through verify_message: a valid signature never makes a VALID message unless From binds


def message(from_lines: list[str]) -> bytes:
    headers = "".join(f"From: {line}\r\n" for line in from_lines)
    return (headers + "To: carol@carnet.test\r\nSubject: binding\r\n").encode() + ENTITY


@pytest.mark.parametrize(
    ("from_lines", "signer", "expected"),
    [
        (["alice@carnet.test"], "alice", Status.VALID),
        (["Dr Alice Martin <ALICE@carnet.test>"], "alice", Status.VALID),
        ([], "alice", Status.FROM_MISMATCH),
        (["alice@carnet.test", "alice@carnet.test"], "alice", Status.FROM_MISMATCH),
        (["bob@carnet.test"], "alice", Status.FROM_MISMATCH),
        (["alice@carnet.test <bob@carnet.test>"], "alice", Status.FROM_MISMATCH),
        (["alice@carnet.test <bob@carnet.test>"], "bob", Status.FROM_MISMATCH),
        (["=?utf-8?q?alice=40carnet.test?= <bob@carnet.test>"], "alice", Status.FROM_MISMATCH),
        (["=?utf-8?q?alice=40carnet.test?= <bob@carnet.test>"], "bob", Status.FROM_MISMATCH),
        (["Soins: alice@carnet.test;"], "alice", Status.FROM_MISMATCH),
        (["alice@carnet.test, bob@carnet.test"], "alice", Status.FROM_MISMATCH),
    ],
    ids=[
        "plain",
        "display-name-and-case",
        "missing",
        "duplicate",
        "other-address",
        "address-as-display-name",
        "address-as-display-name-signed-by-bob",
        "encoded-word-signed-by-alice",
        "encoded-word-signed-by-bob",
        "group",
        "two-addresses",
    ],
)
@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
async def test_from_binding_statuses(
    pki: testpki.TestPki,
    validator: ChainValidator,
    from_lines: list[str],
    signer: str,
    expected: Status,
    detached: bool,
) -> None:
    signed = sign_message(message(from_lines), credential(getattr(pki, signer)), detached=detached)
    result = await verify_message(signed, validator)
    assert result.status is expected, result.detail
    if expected is Status.FROM_MISMATCH:
        assert result.detail
        assert all(s.status is not Status.VALID for s in result.signers)
        assert result.signer is not None and result.signer.chain_status == "ok"


async def test_from_mismatch_detail_names_the_addresses(pki: testpki.TestPki, validator: ChainValidator) -> None:
    result = await verify_message(sign_message(message(["bob@carnet.test"]), credential(pki.alice)), validator)
    assert result.detail == "From bob@carnet.test is not an address of the signer certificate (alice@carnet.test)"
    assert result.from_address == "bob@carnet.test"


async def test_subject_email_fallback_binds_in_a_message(pki: testpki.TestPki, validator: ChainValidator) -> None:
    legacy = make_leaf(pki.intermediate, "legacy@carnet.test", slot=9, san=False)
    result = await verify_message(sign_message(message(["legacy@carnet.test"]), credential(legacy)), validator)
    assert result.status is Status.VALID, result.detail
    assert result.signer is not None and result.signer.emails == ["legacy@carnet.test"]
