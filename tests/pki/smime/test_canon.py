"""carnet.pki.smime.canon: raw-bytes MIME helpers and RFC 8551 §3.1 canonicalisation."""

from __future__ import annotations

import base64
import quopri

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carnet.pki.smime.canon import (
    MimeError,
    canonicalize_entity,
    content_type,
    header_fields,
    quoted_printable,
    split_entity,
    split_header_body,
    split_multipart,
    split_multipart_signed,
    to_crlf,
)

# ---------------------------------------------------------------------------------------------------------------
# Line endings and header block


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"a\nb\n", b"a\r\nb\r\n"),
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\rb\r", b"a\r\nb\r\n"),
        (b"a\r\nb\nc\rd", b"a\r\nb\r\nc\r\nd"),
        (b"no newline", b"no newline"),
        (b"", b""),
    ],
)
def test_to_crlf(raw: bytes, expected: bytes) -> None:
    assert to_crlf(raw) == expected


@given(st.binary(max_size=200))
def test_to_crlf_is_idempotent_and_leaves_no_bare_line_ending(data: bytes) -> None:
    once = to_crlf(data)
    assert to_crlf(once) == once
    assert once.replace(b"\r\n", b"").count(b"\n") == 0
    assert once.replace(b"\r\n", b"").count(b"\r") == 0


@pytest.mark.parametrize(
    ("message", "headers", "body"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", b"A: 1\r\nB: 2\r\n", b"body\r\n"),
        (b"A: 1\nB: 2\n\nbody\n", b"A: 1\nB: 2\n", b"body\n"),
        (b"A: 1\r\n\r\n", b"A: 1\r\n", b""),
        (b"\r\nbody only", b"", b"body only"),
        (b"A: 1\r\n", b"A: 1\r\n", b""),
        (b"A: 1\r\n\r\nbody\r\n\r\nmore", b"A: 1\r\n", b"body\r\n\r\nmore"),
    ],
)
def test_split_header_body(message: bytes, headers: bytes, body: bytes) -> None:
    assert split_header_body(message) == (headers, body)


def test_header_fields_unfolds_keeps_order_and_duplicates() -> None:
    block = b"From: a@b.c\r\nSubject: one\r\n two\r\n\tthree\r\nfrom: d@e.f\r\nX-Empty:\r\n"
    assert header_fields(block) == [
        ("from", b"a@b.c"),
        ("subject", b"one two\tthree"),
        ("from", b"d@e.f"),
        ("x-empty", b""),
    ]


@pytest.mark.parametrize(
    "block", [b"no colon here\r\n", b" continuation first\r\n", b": no name\r\n", b"Bad Name: x\r\n"]
)
def test_header_fields_rejects_malformed_lines(block: bytes) -> None:
    with pytest.raises(MimeError):
        header_fields(block)


# ---------------------------------------------------------------------------------------------------------------
# Content-Type


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"Subject: x\r\n", ("text/plain", {"charset": "us-ascii"})),
        (b"Content-Type: TEXT/Plain; Charset=UTF-8\r\n", ("text/plain", {"charset": "UTF-8"})),
        (
            b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
            b' micalg=sha-256; boundary="----=_x y"\r\n',
            (
                "multipart/signed",
                {"protocol": "application/pkcs7-signature", "micalg": "sha-256", "boundary": "----=_x y"},
            ),
        ),
        (
            b"Content-Type: multipart/mixed; boundary=----=_Part_1_2.3\r\n",
            ("multipart/mixed", {"boundary": "----=_Part_1_2.3"}),
        ),
        (b"Content-Type: text/plain (comment); charset=(c) utf-8\r\n", ("text/plain", {"charset": "utf-8"})),
        (b'Content-Type: text/plain; name="a \\"q\\".txt"\r\n', ("text/plain", {"name": 'a "q".txt'})),
        (
            b'Content-Type: application/pdf; name*0="long"; name*1="name.pdf"\r\n',
            ("application/pdf", {"name": "longname.pdf"}),
        ),
        (
            b"Content-Type: application/pdf; name*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n",
            ("application/pdf", {"name": "résumé.pdf"}),
        ),
        (b"Content-Type: garbage\r\n", ("text/plain", {"charset": "us-ascii"})),
    ],
)
def test_content_type(block: bytes, expected: tuple[str, dict[str, str]]) -> None:
    assert content_type(block) == expected


def test_content_type_twice_is_an_error() -> None:
    with pytest.raises(MimeError, match="more than one"):
        content_type(b"Content-Type: text/plain\r\nContent-Type: text/html\r\n")


def test_split_entity_separates_outer_headers_from_the_mime_entity() -> None:
    message = (
        b"From: a@b.c\nTo: d@e.f\nMIME-Version: 1.0\nContent-Type: text/plain\nSubject: s\n"
        b"Content-Transfer-Encoding: 7bit\n\nbody\n"
    )
    outer, entity = split_entity(message)
    assert outer == b"From: a@b.c\r\nTo: d@e.f\r\nSubject: s\r\n"
    assert entity == b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n\r\nbody\r\n"


# ---------------------------------------------------------------------------------------------------------------
# Multipart


SIGNED_BODY = (
    b"preamble\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain\r\n\r\nline --b1x is not a delimiter\r\n--b1x neither\r\n\r\n"
    b"--b1  \r\n"
    b"Content-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n"
    b"--b1--\r\n"
    b"epilogue\r\n"
)


def test_split_multipart_signed_returns_exact_first_part() -> None:
    first, second = split_multipart_signed(SIGNED_BODY, "b1")
    assert first == b"Content-Type: text/plain\r\n\r\nline --b1x is not a delimiter\r\n--b1x neither\r\n"
    assert second == b"Content-Type: application/pkcs7-signature\r\n\r\nAAAA"


def test_split_multipart_preamble_and_epilogue() -> None:
    preamble, parts, epilogue = split_multipart(SIGNED_BODY, "b1")
    assert preamble == b"preamble"
    assert len(parts) == 2
    assert epilogue == b"epilogue\r\n"


def test_split_multipart_accepts_bare_lf() -> None:
    body = b"--b\nContent-Type: text/plain\n\nhi\n--b\nX: y\n\nsig\n--b--\n"
    assert split_multipart_signed(body, "b") == (b"Content-Type: text/plain\n\nhi", b"X: y\n\nsig")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"--b\r\nA: 1\r\n\r\nx\r\n--b\r\nB: 2\r\n\r\ny\r\n", "no close delimiter"),
        (b"--b\r\nA: 1\r\n\r\nx\r\n--b--\r\n", "exactly 2"),
        (b"--b\r\nA\r\n--b\r\nB\r\n--b\r\nC\r\n--b--\r\n", "exactly 2"),
        (b"no delimiter at all", "no close delimiter"),
    ],
)
def test_split_multipart_signed_rejects_bad_structure(body: bytes, message: str) -> None:
    with pytest.raises(MimeError, match=message):
        split_multipart_signed(body, "b")


def test_split_multipart_rejects_absurd_boundary() -> None:
    with pytest.raises(MimeError, match="boundary"):
        split_multipart(b"", "")
    with pytest.raises(MimeError, match="boundary"):
        split_multipart(b"", "x" * 300)


# ---------------------------------------------------------------------------------------------------------------
# Canonicalisation before signing (RFC 8551 §3.1.1-3.1.3)


CANONICAL = (
    b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--XX\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
    b"--XX--\r\n"
)


def test_canonical_entity_is_returned_byte_for_byte() -> None:
    assert canonicalize_entity(CANONICAL) == CANONICAL


def test_lf_entity_becomes_crlf() -> None:
    assert canonicalize_entity(CANONICAL.replace(b"\r\n", b"\n")) == CANONICAL


def test_8bit_text_becomes_quoted_printable() -> None:
    entity = (
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
        b"H\xc3\xa9l\xc3\xa8ne \nFrom here\n"
    )
    out = canonicalize_entity(entity)
    headers, body = split_header_body(out)
    assert header_fields(headers) == [
        ("content-type", b"text/plain; charset=utf-8"),
        ("content-transfer-encoding", b"quoted-printable"),
    ]
    assert out.isascii()
    assert quopri.decodestring(body) == b"H\xc3\xa9l\xc3\xa8ne \r\nFrom here\r\n"
    assert b"=46rom here" in body  # mbox-safe
    assert canonicalize_entity(out) == out


def test_binary_part_becomes_base64_of_the_raw_bytes() -> None:
    raw = bytes(range(256)) + b"\r\n\n\rX"
    entity = (
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\nhi\n"
        b"--B\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n" + raw + b"\n--B--\n"
    )
    out = canonicalize_entity(entity)
    assert out.isascii()
    _, parts, _ = split_multipart(split_header_body(out)[1], "B")
    headers, body = split_header_body(parts[1])
    assert (b"content-transfer-encoding", b"base64") in [(n.encode(), v) for n, v in header_fields(headers)]
    assert base64.b64decode(body) == raw
    assert max(len(line) for line in out.split(b"\r\n")) <= 998


def test_8bit_body_without_content_type_gets_an_explicit_charset() -> None:
    out = canonicalize_entity(b"\r\nd\xc3\xa9j\xc3\xa0 vu\r\n")
    assert out.startswith(b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n")
    latin1 = canonicalize_entity(b"\r\nd\xe9j\xe0 vu\r\n")
    assert latin1.startswith(b"Content-Type: text/plain; charset=unknown-8bit\r\n")


def test_8bit_label_on_7bit_data_is_relabelled() -> None:
    out = canonicalize_entity(b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nascii\r\n")
    assert out == b"Content-Type: text/plain\r\n\r\nascii\r\n"


def test_nested_multipart_signed_is_left_alone() -> None:
    inner = b"Content-Type: multipart/signed; boundary=S\r\n\r\n--S\r\n\r\n\xc3\xa9\r\n--S\r\n\r\nsig\r\n--S--\r\n"
    assert canonicalize_entity(inner) == inner


def test_message_rfc822_is_canonicalised_inside() -> None:
    entity = (
        b"Content-Type: message/rfc822\n\n"
        b"Subject: inner\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\n\xc3\xa9\n"
    )
    out = canonicalize_entity(entity)
    assert out.isascii()
    assert b"Subject: inner\r\n" in out


def test_message_rfc822_with_8bit_header_is_refused() -> None:
    with pytest.raises(MimeError, match="8-bit header"):
        canonicalize_entity(b"Content-Type: message/rfc822\r\n\r\nSubject: \xc3\xa9\r\n\r\nx\r\n")


def test_nesting_limit() -> None:
    entity = b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for depth in range(40):
        boundary = f"b{depth}".encode()
        entity = (
            b"Content-Type: multipart/mixed; boundary="
            + boundary
            + b"\r\n\r\n--"
            + boundary
            + b"\r\n"
            + entity
            + b"\r\n--"
            + boundary
            + b"--\r\n"
        )
    with pytest.raises(MimeError, match="nesting"):
        canonicalize_entity(entity)


@given(st.lists(st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=8))
def test_quoted_printable_round_trips_and_respects_line_length(lines: list[bytes]) -> None:
    text = b"\r\n".join(lines)
    encoded = quoted_printable(text)
    assert encoded.isascii()
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    assert all(not line.endswith((b" ", b"\t")) for line in encoded.split(b"\r\n"))
    assert quopri.decodestring(encoded) == text
