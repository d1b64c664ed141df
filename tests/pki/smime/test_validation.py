"""carnet.pki.smime.validation: chain validation, revocation from the local store, usage, caches."""

from __future__ import annotations

from datetime import timedelta

import pytest
import testpki
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from testpki import NOW, build_test_pki, make_ca, make_crl, make_leaf, make_ocsp_response

from carnet.pki.smime.result import Status
from carnet.pki.smime.validation import ChainValidator, TrustStore, check_usage

DER = serialization.Encoding.DER


def der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(DER)


@pytest.fixture(scope="module")
def pki() -> testpki.TestPki:
    return build_test_pki()


@pytest.fixture
def trust(pki: testpki.TestPki) -> TrustStore:
    return TrustStore([pki.root.cert], crls=[der(c) for c in pki.crls])


@pytest.fixture
def validator(trust: TrustStore) -> ChainValidator:
    return ChainValidator(trust)


async def validate(validator: ChainValidator, issued: testpki.Issued, **kwargs: object):  # type: ignore[no-untyped-def]
    return await validator.validate(issued.cert, issued.chain, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Status mapping


async def test_valid_chain(pki: testpki.TestPki, validator: ChainValidator) -> None:
    result = await validate(validator, pki.alice)
    assert result.status is Status.VALID
    assert result.chain_status == "ok"
    assert result.revocation == "good"
    assert result.chain == [
        "CN=Dr Alice Martin,O=Carnet Test PKI,C=FR",
        "CN=Carnet Test Persons CA,O=Carnet Test PKI,C=FR",
        "CN=Carnet Test Root,O=Carnet Test PKI,C=FR",
    ]


async def test_ecdsa_leaf(pki: testpki.TestPki, validator: ChainValidator) -> None:
    assert (await validate(validator, pki.carol_ec)).status is Status.VALID


@pytest.mark.parametrize(
    ("name", "status", "revocation", "detail"),
    [
        ("expired", Status.EXPIRED, "not_checked", "expired"),
        ("not_yet_valid", Status.NOT_YET_VALID, "not_checked", "not valid until"),
        ("revoked", Status.REVOKED, "revoked", "revoked"),
        ("wrong_eku", Status.WRONG_USAGE, "good", "emailProtection"),
        ("stranger", Status.UNTRUSTED, "not_checked", "no path to a trust anchor"),
    ],
)
async def test_failure_statuses(
    pki: testpki.TestPki, validator: ChainValidator, name: str, status: Status, revocation: str, detail: str
) -> None:
    result = await validate(validator, getattr(pki, name))
    assert result.status is status
    assert result.revocation == revocation
    assert detail in result.detail
    assert result.chain_status != "ok" or status is Status.WRONG_USAGE


async def test_failure_reports_the_attempted_path(pki: testpki.TestPki, validator: ChainValidator) -> None:
    result = await validate(validator, pki.revoked)
    assert result.chain[0] == "CN=revoked,O=Carnet Test PKI,C=FR"
    assert result.chain[-1] == "CN=Carnet Test Root,O=Carnet Test PKI,C=FR"


async def test_self_signed_leaf_is_untrusted(pki: testpki.TestPki, validator: ChainValidator) -> None:
    other = make_ca("Lonely", slot=12)
    result = await validator.validate(other.cert)
    assert result.status is Status.UNTRUSTED


async def test_missing_intermediate_is_untrusted_unless_the_store_has_it(pki: testpki.TestPki) -> None:
    crls = [der(c) for c in pki.crls]
    bare = ChainValidator(TrustStore([pki.root.cert], crls=crls))
    assert (await bare.validate(pki.alice.cert)).status is Status.UNTRUSTED
    stocked = ChainValidator(TrustStore([pki.root.cert], [pki.intermediate.cert], crls))
    assert (await stocked.validate(pki.alice.cert)).status is Status.VALID


# ---------------------------------------------------------------------------------------------------------------
# Usage (RFC 8550 §4.4.2, §4.4.4)


async def test_key_usage_without_signature_bits(pki: testpki.TestPki, validator: ChainValidator) -> None:
    encipher_only = make_leaf(pki.intermediate, "ku@carnet.test", slot=13, key_usage_digital_signature=False)
    result = await validate(validator, encipher_only)
    assert result.status is Status.WRONG_USAGE
    assert "digitalSignature" in result.detail


async def test_missing_eku_is_refused_unless_configured(pki: testpki.TestPki, trust: TrustStore) -> None:
    no_eku = make_leaf(pki.intermediate, "noeku@carnet.test", slot=14, eku=[])
    assert (await validate(ChainValidator(trust), no_eku)).status is Status.WRONG_USAGE
    assert (await validate(ChainValidator(trust, require_eku=False), no_eku)).status is Status.VALID


def test_any_extended_key_usage_is_accepted(pki: testpki.TestPki) -> None:
    anyeku = make_leaf(pki.intermediate, "any@carnet.test", slot=15, eku=[x509.ObjectIdentifier("2.5.29.37.0")])
    assert check_usage(anyeku.cert) == ""


# ---------------------------------------------------------------------------------------------------------------
# Revocation policy


async def test_hard_fail_without_revocation_info_is_untrusted(pki: testpki.TestPki) -> None:
    result = await ChainValidator(TrustStore([pki.root.cert])).validate(pki.alice.cert, pki.alice.chain)
    assert result.status is Status.UNTRUSTED
    assert result.revocation == "unknown"
    assert "hard-fail" in result.detail


async def test_soft_fail_without_revocation_info_is_valid_but_unknown(pki: testpki.TestPki) -> None:
    result = await ChainValidator(TrustStore([pki.root.cert], hard_fail=False)).validate(
        pki.alice.cert, pki.alice.chain
    )
    assert result.status is Status.VALID
    assert result.revocation == "unknown"
    assert "soft-fail" in result.detail


async def test_soft_fail_still_uses_the_crls_it_has(pki: testpki.TestPki) -> None:
    soft = ChainValidator(TrustStore([pki.root.cert], crls=[der(c) for c in pki.crls], hard_fail=False))
    assert (await validate(soft, pki.revoked)).status is Status.REVOKED
    assert (await validate(soft, pki.alice)).revocation == "good"


async def test_stale_crl_under_hard_fail(pki: testpki.TestPki, validator: ChainValidator) -> None:
    result = await validate(validator, pki.alice, at=NOW + timedelta(days=8))  # after the CRLs' nextUpdate
    assert result.status is Status.UNTRUSTED
    assert result.revocation == "unknown"


async def test_ocsp_responses_from_the_store(pki: testpki.TestPki) -> None:
    # pyhanko consults OCSP only for certificates that name a responder in authorityInfoAccess
    dave = make_leaf(pki.intermediate, "dave@carnet.test", slot=17, ocsp_url="http://ocsp.carnet.test/")
    root_crl = der(pki.crls[1])
    good = TrustStore(
        [pki.root.cert], crls=[root_crl], ocsp_responses=[make_ocsp_response(pki.intermediate, dave.cert)]
    )
    result = await validate(ChainValidator(good), dave)
    assert (result.status, result.revocation) == (Status.VALID, "good")
    bad = TrustStore([pki.root.cert], crls=[root_crl])
    assert (await validate(ChainValidator(bad), dave)).revocation == "unknown"
    generation = bad.generation
    bad.add_ocsp_response(make_ocsp_response(pki.intermediate, dave.cert, revoked=True))
    assert bad.generation == generation + 1
    result = await validate(ChainValidator(bad), dave)
    assert (result.status, result.revocation) == (Status.REVOKED, "revoked")


async def test_ocsp_response_narrows_the_cache_window(pki: testpki.TestPki) -> None:
    dave = make_leaf(pki.intermediate, "dave@carnet.test", slot=17, ocsp_url="http://ocsp.carnet.test/")
    response = make_ocsp_response(pki.intermediate, dave.cert, next_update=NOW + timedelta(hours=2))
    validator = ChainValidator(TrustStore([pki.root.cert], crls=[der(pki.crls[1])], ocsp_responses=[response]))
    assert (await validate(validator, dave)).status is Status.VALID
    await validate(validator, dave, at=NOW + timedelta(hours=1))
    assert validator.hits == 1
    await validate(validator, dave, at=NOW + timedelta(hours=3))
    assert validator.hits == 1


def test_unusable_revocation_data_is_refused(pki: testpki.TestPki, trust: TrustStore) -> None:
    with pytest.raises(ValueError):
        trust.add_crl(b"not a crl")
    unauthorized = bytes.fromhex("30030a0106")  # OCSPResponse, responseStatus unauthorized(6)
    with pytest.raises(ValueError, match="unauthorized"):
        trust.add_ocsp_response(unauthorized)


# ---------------------------------------------------------------------------------------------------------------
# Validation time


async def test_at_injection_validates_in_the_past(pki: testpki.TestPki) -> None:
    then = NOW - timedelta(days=10)
    before, after = NOW - timedelta(days=20), NOW + timedelta(days=30)
    old_crls = [
        der(make_crl(pki.intermediate, [pki.revoked.cert], this_update=before, next_update=after)),
        der(make_crl(pki.root, [], this_update=before, next_update=after)),
    ]
    validator = ChainValidator(TrustStore([pki.root.cert], crls=old_crls))
    assert (await validate(validator, pki.expired)).status is Status.EXPIRED
    result = await validate(validator, pki.expired, at=then)
    assert result.status is Status.VALID, result.detail
    assert result.revocation == "good"
    assert (await validate(validator, pki.not_yet_valid, at=NOW + timedelta(days=11))).status is Status.VALID


async def test_crl_issued_after_the_validation_time_cannot_vouch(
    pki: testpki.TestPki, validator: ChainValidator
) -> None:
    result = await validate(validator, pki.expired, at=NOW - timedelta(days=10))
    assert result.status is Status.UNTRUSTED
    assert result.revocation == "unknown"


async def test_revocation_after_the_validation_time_does_not_count(
    pki: testpki.TestPki, validator: ChainValidator
) -> None:
    # revoked 30 minutes ago, CRL issued an hour ago: 45 minutes ago the certificate was still good
    result = await validate(validator, pki.revoked, at=NOW - timedelta(minutes=45))
    assert result.status is Status.VALID, result.detail


async def test_point_in_time_result_is_not_reused_for_now(pki: testpki.TestPki, validator: ChainValidator) -> None:
    assert (await validate(validator, pki.revoked, at=NOW - timedelta(minutes=45))).status is Status.VALID
    assert (await validate(validator, pki.revoked)).status is Status.REVOKED


async def test_result_for_now_answers_an_earlier_at_inside_the_window(
    pki: testpki.TestPki, validator: ChainValidator
) -> None:
    await validate(validator, pki.alice)
    assert (await validate(validator, pki.alice, at=NOW - timedelta(minutes=10))).status is Status.VALID
    assert validator.hits == 1
    await validate(validator, pki.alice, at=NOW - timedelta(hours=2))  # before the CRLs' thisUpdate: recomputed
    assert validator.hits == 1


async def test_naive_at_is_utc(pki: testpki.TestPki, validator: ChainValidator) -> None:
    assert (await validate(validator, pki.alice, at=NOW.replace(tzinfo=None))).status is Status.VALID


async def test_expired_trust_anchor(pki: testpki.TestPki) -> None:
    old_root = make_ca("Old Root", slot=11, not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1))
    inter = make_ca("Old Persons CA", old_root, slot=12)
    leaf = make_leaf(inter, "old-root@carnet.test", slot=16)
    trust = TrustStore([old_root.cert], crls=[der(make_crl(inter, [])), der(make_crl(old_root, []))])
    result = await validate(ChainValidator(trust), leaf)
    assert result.status is Status.EXPIRED
    assert "trust anchor" in result.detail


# ---------------------------------------------------------------------------------------------------------------
# Caches


async def test_cache_hit_returns_the_same_result(pki: testpki.TestPki, validator: ChainValidator) -> None:
    first = await validate(validator, pki.alice)
    second = await validate(validator, pki.alice)
    assert second is first
    assert (validator.hits, validator.misses) == (1, 1)
    await validate(validator, pki.alice, at=NOW + timedelta(days=1))
    assert validator.hits == 2  # inside the window (certificates and CRLs still valid)


async def test_cache_key_includes_the_extra_certificates(pki: testpki.TestPki, validator: ChainValidator) -> None:
    await validate(validator, pki.alice)
    await validator.validate(pki.alice.cert, [pki.intermediate.cert, pki.bob.cert])
    assert validator.misses == 2


async def test_add_crl_invalidates_a_cached_valid(pki: testpki.TestPki, trust: TrustStore) -> None:
    validator = ChainValidator(trust)
    assert (await validate(validator, pki.bob)).status is Status.VALID
    generation = trust.generation
    trust.add_crl(
        der(make_crl(pki.intermediate, [pki.revoked.cert, pki.bob.cert], this_update=NOW - timedelta(minutes=20)))
    )
    assert trust.generation == generation + 1
    result = await validate(validator, pki.bob)
    assert result.status is Status.REVOKED
    assert validator.hits == 0


def test_older_crl_does_not_replace_a_newer_one(pki: testpki.TestPki, trust: TrustStore) -> None:
    generation = trust.generation
    trust.add_crl(der(make_crl(pki.intermediate, [], this_update=NOW - timedelta(days=2))))
    assert trust.generation == generation
    assert len(trust.crls) == 2


async def test_cache_window_ends_with_the_certificate(pki: testpki.TestPki, validator: ChainValidator) -> None:
    await validate(validator, pki.alice)
    result = await validate(validator, pki.alice, at=pki.alice.cert.not_valid_after_utc + timedelta(seconds=5))
    assert result.status is Status.EXPIRED
    assert validator.hits == 0


async def test_cache_window_ends_with_the_crl(pki: testpki.TestPki, validator: ChainValidator) -> None:
    await validate(validator, pki.alice)
    await validate(validator, pki.alice, at=NOW + timedelta(days=7, hours=1))
    assert validator.hits == 0


async def test_untrusted_is_cached_but_expired_is_not(pki: testpki.TestPki, validator: ChainValidator) -> None:
    await validate(validator, pki.stranger)
    await validate(validator, pki.stranger)
    assert validator.hits == 1
    await validate(validator, pki.expired)
    await validate(validator, pki.expired)
    assert validator.hits == 1


async def test_cache_is_lru_bounded(pki: testpki.TestPki, trust: TrustStore) -> None:
    validator = ChainValidator(trust, cache_size=2)
    for issued in (pki.alice, pki.bob, pki.carol_ec):
        await validate(validator, issued)
    await validate(validator, pki.carol_ec)
    assert validator.hits == 1
    await validate(validator, pki.alice)
    assert validator.hits == 1  # evicted


def test_certificate_cache_parses_once(pki: testpki.TestPki, validator: ChainValidator) -> None:
    raw = pki.alice.cert.public_bytes(DER)
    first = validator.certificates.get(raw)
    assert validator.certificates.get(bytes(raw)) is first
    assert validator.certificates.from_certificate(pki.alice.cert) is first
    assert first.binding_emails == ("alice@carnet.test",)
    with pytest.raises(ValueError):
        validator.certificates.get(b"\x30\x03\x02\x01\x01")
