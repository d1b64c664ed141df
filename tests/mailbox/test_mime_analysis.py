"""Analysis at delivery: ENVELOPE/BODYSTRUCTURE/BODY in IMAP syntax, the part map, decoded text; robust to garbage."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from carnet.mailbox.analysis import MAX_DEPTH, MAX_PARTS, analyse, decode_words, imap_string, parse_addresses

RFC_EXAMPLE = (
    b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    b"From: Terry Gray <gray@cac.washington.edu>\r\n"
    b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
    b"To: imap@cac.washington.edu\r\n"
    b'cc: minutes@CNRI.Reston.VA.US, "John Klensin" <KLENSIN@MIT.EDU>\r\n'
    b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"line one\r\nline two\r\n"
)

NESTED = (
    b"From: =?utf-8?q?Ren=C3=A9?= <rene@example.fr>\r\n"
    b"To: undisclosed:;\r\n"
    b"Subject: =?utf-8?q?R=C3=A9sultats?= =?utf-8?q?_d=27analyse?=\r\n"
    b"Date: Mon, 2 Mar 2026 23:30:00 -0300\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Caf=C3=A9 cr=C3=A8me\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"Content-Description: forwarded\r\n"
    b"\r\n"
    b"From: a@b.example\r\n"
    b"Subject: inner\r\n"
    b"Content-Type: multipart/alternative; boundary=alt\r\n"
    b"\r\n"
    b"--alt\r\n"
    b"\r\n"
    b"plain text\r\n"
    b"--alt\r\n"
    b"Content-Type: text/html; charset=iso-8859-1\r\n"
    b"\r\n"
    b"<p>h\xe9llo <b>world</b></p><script>secret()</script>\r\n"
    b"--alt--\r\n"
    b"\r\n"
    b"--outer\r\n"
    b'Content-Type: application/pdf; name="r.pdf"\r\n'
    b"Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Language: fr, en\r\n"
    b"Content-Location: http://example.fr/r.pdf\r\n"
    b"Content-ID: <r@example.fr>\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--outer--\r\n"
    b"epilogue\r\n"
)


def test_rfc_example_envelope_and_structure() -> None:
    result = analyse(RFC_EXAMPLE)
    assert result.envelope == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL '
        b'"<B27397-0100000@cac.washington.edu>")'
    )
    assert result.bodystructure == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 20 2 NIL NIL NIL NIL)'
    assert result.body == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 20 2)'
    top, one = result.parts
    assert (top.section, one.section) == ("", "1")
    assert RFC_EXAMPLE[top.header_start: top.header_end].endswith(b"US-ASCII\r\n\r\n")
    assert RFC_EXAMPLE[one.header_end: one.body_end] == b"line one\r\nline two\r\n"
    assert (one.content_type, one.charset, one.transfer_encoding) == ("text/plain", "us-ascii", "7bit")
    assert result.subject == "IMAP4rev1 WG mtg summary and minutes"
    assert (result.from_name, result.from_address) == ("Terry Gray", "gray@cac.washington.edu")
    assert result.message_id == "<B27397-0100000@cac.washington.edu>"
    assert result.sent_date is not None and result.sent_date.isoformat() == "1996-07-17T09:23:25+00:00"
    assert not result.has_attachments and not result.degraded


def test_nested_structure_rendered_exactly() -> None:
    result = analyse(NESTED)
    inner_envelope = (b'(NIL "inner" ((NIL NIL "a" "b.example")) ((NIL NIL "a" "b.example")) '
                      b'((NIL NIL "a" "b.example")) NIL NIL NIL NIL NIL)')
    assert result.bodystructure == (
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 20 1 NIL NIL NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL "forwarded" "7BIT" 224 ' + inner_envelope + b" "
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "iso-8859-1") NIL NIL "7BIT" 50 1 NIL NIL NIL NIL)'
        b' "ALTERNATIVE" ("BOUNDARY" "alt") NIL NIL NIL) 12 NIL NIL NIL NIL)'
        b'("APPLICATION" "PDF" ("NAME" "r.pdf") "<r@example.fr>" NIL "BASE64" 12 NIL '
        b'("ATTACHMENT" ("FILENAME" "=?utf-8?b?csOpc3Vtw6kucGRm?=")) ("fr" "en") "http://example.fr/r.pdf")'
        b' "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)'
    )
    assert result.body == (
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 20 1)'
        b'("MESSAGE" "RFC822" NIL NIL "forwarded" "7BIT" 224 ' + inner_envelope + b" "
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 10 1)'
        b'("TEXT" "HTML" ("CHARSET" "iso-8859-1") NIL NIL "7BIT" 50 1) "ALTERNATIVE") 12)'
        b'("APPLICATION" "PDF" ("NAME" "r.pdf") "<r@example.fr>" NIL "BASE64" 12) "MIXED")'
    )
    # A group in To: group start and end markers (RFC 9051 §7.5.2).
    assert b'((NIL NIL "undisclosed" NIL)(NIL NIL NIL NIL))' in result.envelope
    assert b'"=?utf-8?q?R=C3=A9sultats?= =?utf-8?q?_d=27analyse?="' in result.envelope


def test_part_map_gives_every_section_as_a_slice() -> None:
    result = analyse(NESTED)
    parts = {part.section: part for part in result.parts}
    assert list(parts) == ["", "1", "2", "2.1", "2.2", "3"]

    def body(section: str) -> bytes:
        return NESTED[parts[section].header_end: parts[section].body_end]

    def mime(section: str) -> bytes:
        return NESTED[parts[section].header_start: parts[section].header_end]

    assert body("1") == b"Caf=C3=A9 cr=C3=A8me"
    assert mime("1") == (b"Content-Type: text/plain; charset=utf-8\r\n"
                         b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
    assert mime("2") == b"Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n"
    two = parts["2"]
    assert two.is_message and two.message_body_start is not None
    assert NESTED[two.header_end: two.message_body_start] == (
        b"From: a@b.example\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n")  # 2.HEADER
    assert NESTED[two.message_body_start: two.body_end].startswith(b"--alt\r\n")  # 2.TEXT
    assert body("2").startswith(b"From: a@b.example") and body("2").endswith(b"--alt--\r\n")
    assert body("2.1") == b"plain text" and mime("2.1") == b"\r\n"
    assert body("2.2") == b"<p>h\xe9llo <b>world</b></p><script>secret()</script>"
    assert (parts["2.2"].content_type, parts["2.2"].charset) == ("text/html", "iso-8859-1")
    assert body("3") == b"JVBERi0xLjQK" and parts["3"].transfer_encoding == "base64"
    assert NESTED[parts[""].header_end:].startswith(b"preamble")  # TEXT of the whole message


def test_decoded_text_for_search_and_webmail() -> None:
    result = analyse(NESTED)
    assert result.subject == "Résultats d'analyse"
    assert (result.from_name, result.from_address) == ("René", "rene@example.fr")
    assert ("subject", "résultats d'analyse") in result.header_fields
    assert ("from", "rené <rene@example.fr>") in result.header_fields
    assert "café crème" in result.body_text  # quoted-printable and UTF-8 undone
    assert "héllo world" in result.body_text  # HTML reduced to text, ISO-8859-1 decoded
    assert "secret" not in result.body_text and "<b>" not in result.body_text
    assert "subject: inner" in result.body_text  # the forwarded message's header is searchable text
    assert result.has_attachments
    # The Date header's own day (SENTON), and the instant in UTC.
    assert result.sent_day is not None and result.sent_day.isoformat() == "2026-03-02"
    assert result.sent_date is not None and result.sent_date.isoformat() == "2026-03-03T02:30:00+00:00"


def test_eight_bit_and_quoted_values_use_literals_and_escapes() -> None:
    raw = ("Subject: Résumé \"quoted\" \\ back\r\nFrom: \"Dr. Émile\" <emile@example.fr>\r\n\r\nx").encode()
    result = analyse(raw)
    subject = "Résumé \"quoted\" \\ back".encode()
    assert b"{%d}\r\n%s" % (len(subject), subject) in result.envelope
    assert result.subject == 'Résumé "quoted" \\ back'
    assert imap_string(b'a "b" \\c') == b'"a \\"b\\" \\\\c"'
    assert imap_string(b"line\r\nbreak") == b"{11}\r\nline\r\nbreak"
    assert imap_string(b'""""""""""') == b'{10}\r\n""""""""""'  # quote-heavy: a literal is shorter to read


def test_addresses_routes_groups_and_garbage() -> None:
    parsed = parse_addresses('"Martin, Anne" <@relay.example:anne@example.fr>, team: a@x.fr, b@y.fr;, bare')
    assert [(a.name, a.route, a.mailbox, a.host) for a in parsed] == [
        ("Martin, Anne", "@relay.example", "anne", "example.fr"),
        (None, None, "team", None),
        (None, None, "a", "x.fr"),
        (None, None, "b", "y.fr"),
        (None, None, None, None),
        (None, None, "bare", ""),
    ]
    envelope = analyse(b"From: bare\r\nTo: <@>\r\n\r\n").envelope
    assert b'((NIL NIL "bare" "MISSING_DOMAIN"))' in envelope
    assert b'((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))' in envelope


def test_encoded_words() -> None:
    assert decode_words("=?ISO-8859-1?Q?Andr=E9?= Pirard") == "André Pirard"
    assert decode_words("=?utf-8?b?Q2Fmw6k=?=   =?utf-8?b?IG9r?=") == "Café ok"  # RFC 2047 §6.2
    assert decode_words("=?x-unknown?q?abc?=") == "abc"
    assert decode_words("=?utf-8?b?!!!?=") == ""  # undecodable base64 decodes to nothing, never raises


def test_single_part_encodings_and_defaults() -> None:
    raw = (b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"Q2Fm6SBjcuhtZQ==\r\n")
    result = analyse(raw)
    assert "café crème" in result.body_text
    assert result.bodystructure.startswith(b'("TEXT" "PLAIN" ("CHARSET" "iso-8859-1") NIL NIL "BASE64" 18 1')
    bare = analyse(b"no header at all")
    assert bare.bodystructure == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 16 1 NIL NIL NIL NIL)'
    assert bare.envelope == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    assert analyse(b"").bodystructure == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'


def test_digest_parts_default_to_message_rfc822() -> None:
    raw = (b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nfirst\r\n"
           b"--d--\r\n")
    result = analyse(raw)
    assert result.bodystructure.startswith(b'(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 21 (NIL "one" ')
    assert [part.section for part in result.parts] == ["", "1", "1.1"]


def test_signature_parts_are_not_attachments() -> None:
    raw = (b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary=s\r\n\r\n'
           b"--s\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n--s\r\n"
           b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
           b'Content-Disposition: attachment; filename="smime.p7s"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
           b"MIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--s--\r\n")
    result = analyse(raw)
    assert not result.has_attachments
    assert b'"SIGNED" ("PROTOCOL" "application/pkcs7-signature" "BOUNDARY" "s")' in result.bodystructure


def test_malformed_mime_degrades_to_text_plain() -> None:
    no_boundary = analyse(b"Content-Type: multipart/mixed\r\n\r\nbody without parts\r\n")
    assert no_boundary.bodystructure.startswith(b'("TEXT" "PLAIN"')
    never_delimited = analyse(b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nno delimiter here\r\n")
    assert never_delimited.bodystructure.startswith(b'("TEXT" "PLAIN"')
    unterminated = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\nfirst\r\n--zz\r\n\r\nlast, no end"
    result = analyse(unterminated)
    parts = {part.section: part for part in result.parts}
    assert unterminated[parts["2"].header_end: parts["2"].body_end] == b"last, no end"
    longer = analyse(b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\na\r\n--zzz\r\nb\r\n--zz--\r\n")
    parts = {part.section: part for part in longer.parts}
    assert list(parts) == ["", "1"]  # "--zzz" is not our delimiter: it stays inside part 1
    bad_type = analyse(b"Content-Type: garbage\r\n\r\nx")
    assert bad_type.bodystructure.startswith(b'("TEXT" "PLAIN"')
    encoded_message = analyse(b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdA==")
    assert encoded_message.bodystructure.startswith(b'("APPLICATION" "OCTET-STREAM"')


def test_nesting_and_part_count_are_capped() -> None:
    deep = b""
    for level in range(MAX_DEPTH + 10):
        deep += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
    deep += b"\r\ninnermost\r\n"
    result = analyse(deep)
    assert max(part.section.count(".") for part in result.parts) < MAX_DEPTH
    assert result.bodystructure.count(b'"TEXT" "PLAIN"') == 1
    many = b"Content-Type: multipart/mixed; boundary=m\r\n\r\n" + b"--m\r\n\r\np\r\n" * (MAX_PARTS + 50) + b"--m--\r\n"
    result = analyse(many)
    assert len(result.parts) == MAX_PARTS  # "" and the root multipart's parts, up to the cap


def test_search_text_is_capped() -> None:
    result = analyse(b"Content-Type: text/plain\r\n\r\n" + b"a" * 400_000)
    assert 200_000 < len(result.body_text) <= 256 * 1024


def _balanced(data: bytes) -> bool:
    """Parentheses balance outside quoted strings and literals (a loose syntax check of rendered data)."""
    depth, index = 0, 0
    while index < len(data):
        char = data[index: index + 1]
        if char == b'"':
            index += 1
            while data[index: index + 1] != b'"':
                index += 2 if data[index: index + 1] == b"\\" else 1
        elif char == b"{":
            match = re.match(rb"\{(\d+)\}\r\n", data[index:])
            assert match is not None
            index += match.end() + int(match.group(1)) - 1
        elif char == b"(":
            depth += 1
        elif char == b")":
            depth -= 1
            if depth < 0:
                return False
        index += 1
    return depth == 0


_PIECES = st.sampled_from([
    b"Content-Type: multipart/mixed; boundary=x\r\n", b"Content-Type: message/rfc822\r\n", b"--x\r\n", b"--x--\r\n",
    b"\r\n", b"\n", b"Subject: =?utf-8?q?a=?=\r\n", b"From: \"a\" <b@c>, (comment) d@, :;\r\n", b"\xff\xfe\x00",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Type: text/html; charset=\"bogus\"\r\n", b" folded\r\n",
    b"Content-Disposition: attachment; filename*0*=utf-8''a%; filename*1=b\r\n", b"body text ", b"<p>&amp;</p>",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES | st.binary(max_size=20), max_size=40))
def test_any_input_yields_consistent_data(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    result = analyse(raw)
    assert not result.degraded
    assert result.parts[0].section == "" and result.parts[0].body_end == len(raw)
    for part in result.parts:
        assert 0 <= part.header_start <= part.header_end <= part.body_end <= len(raw)
        if part.message_body_start is not None:
            assert part.header_end <= part.message_body_start <= part.body_end
    for rendered in (result.envelope, result.bodystructure, result.body):
        assert _balanced(rendered)
