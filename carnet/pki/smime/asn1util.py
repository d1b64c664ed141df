"""Small DER and algorithm helpers shared by :mod:`.sign` and :mod:`.verify`.

Implements DER length/TLV encoding and a small reader for DER elements (X.690 §8.1, definite form and
single-octet tags only, which is all the fragments written or walked here use), the CMS time encoding rule of
RFC 5652 §11.3 (UTCTime for 1950–2049, GeneralizedTime otherwise) and the digest/``micalg`` name tables of
RFC 5754 §2 and RFC 8551 §3.5.3.2. Only SHA-256, SHA-384 and SHA-512 are supported: SHA-1 and MD5 are refused
on both sides (RFC 8551 §2.1 makes SHA-256 the mandatory algorithm).
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes

#: Digest names carnet signs and accepts, mapped to their ``cryptography`` class (RFC 5754 §2).
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

#: RFC 8551 §3.5.3.2 ``micalg`` values.
MICALG: dict[str, str] = {"sha256": "sha-256", "sha384": "sha-384", "sha512": "sha-512"}

#: Signature algorithm OIDs whose hash is implied by the OID (RFC 5754 §3.2, §3.3).
HASH_OF_SIGNATURE_ALGORITHM: dict[str, str] = {
    "sha256_rsa": "sha256",
    "sha384_rsa": "sha384",
    "sha512_rsa": "sha512",
    "sha256_ecdsa": "sha256",
    "sha384_ecdsa": "sha384",
    "sha512_ecdsa": "sha512",
}

#: id-ecPublicKey, which some old agents put in SignerInfo.signatureAlgorithm instead of ecdsa-with-SHA*.
ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    """A fresh ``cryptography`` hash object for ``name`` (``sha256``, ``sha384``, ``sha512``)."""
    try:
        return HASHES[name]()
    except KeyError:
        raise ValueError(f"unsupported digest algorithm {name!r} (use sha256, sha384 or sha512)") from None


def normalise_micalg(value: str) -> str:
    """``SHA-256``, ``sha256``, ``sha-256`` → ``sha256`` (RFC 8551 §3.5.3.2 tolerance); unknown values unchanged."""
    return value.strip().lower().replace("-", "")


def der_length(length: int) -> bytes:
    """X.690 §8.1.3 definite length octets."""
    if length < 0x80:
        return bytes((length,))
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def der_tlv(tag: int, contents: bytes) -> bytes:
    """One DER element with a single-octet ``tag``."""
    return bytes((tag,)) + der_length(len(contents)) + contents


def cms_time_der(moment: datetime) -> bytes:
    """RFC 5652 §11.3 / RFC 5280 §4.1.2.5: UTCTime for years 1950–2049, GeneralizedTime otherwise (UTC, ``Z``)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    if 1950 <= moment.year < 2050:
        return der_tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return der_tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode("ascii"))


def read_tlv(data: bytes, pos: int, end: int | None = None) -> tuple[int, int, int]:
    """``(tag, contents start, contents end)`` of the DER element at ``pos`` (X.690 §8.1, §10.1).

    Only what DER allows for the structures read this way: single-octet tags and definite lengths. Raises
    ``ValueError`` on anything else or on truncation.
    """
    limit = len(data) if end is None else end
    if pos + 2 > limit:
        raise ValueError("truncated DER element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-octet DER tag")
    length = data[pos + 1]
    start = pos + 2
    if length & 0x80:
        octets = length & 0x7F
        if octets == 0 or octets > 4:
            raise ValueError("indefinite or oversized length where DER is required")
        length = int.from_bytes(data[start : start + octets], "big")
        start += octets
    stop = start + length
    if stop > limit:
        raise ValueError("truncated DER element")
    return tag, start, stop


def der_elements(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int, int]]:
    """The consecutive DER elements of ``data[start:end]`` as :func:`read_tlv` triples."""
    limit = len(data) if end is None else end
    elements: list[tuple[int, int, int]] = []
    pos = start
    while pos < limit:
        element = read_tlv(data, pos, limit)
        elements.append(element)
        pos = element[2]
    return elements
