"""Message rendering for the webmail: body choice, sections (RFC 9051 §6.4.5), S/MIME layers, hostile input."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from html.parser import HTMLParser

import pytest
from asn1crypto import cms

from carnet.webmail.render import (
    MAX_DEPTH,
    PartInfo,
    RenderedMessage,
    body_document,
    embedded_raw,
    inline_images,
    part_content,
    render_message,
    text_to_html,
)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


def _message(subject: str = "Résultats d'analyse") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Dr Anne Martin <Anne.Martin@carnet.test>"
    msg["To"] = "Camille Durand <camille@carnet.test>, bob@carnet.test"
    msg["Cc"] = "=?utf-8?q?Labo_Biologie_=C3=89toile?= <labo@carnet.test>"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 03 Mar 2026 10:15:00 +0100"
    msg["Message-ID"] = "<abc.123@carnet.test>"
    return msg


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def _elements(fragment: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(fragment)
    parser.close()
    return parser.elements


def _names(parts: list[PartInfo]) -> list[tuple[str, str, str]]:
    return [(p.section, p.content_type, p.disposition) for p in parts]


# Plain text -----------------------------------------------------------------------------------------------------------


def test_plain_text_is_escaped_and_linked() -> None:
    msg = _message()
    msg.set_content(
        "Bonjour,\n<script>alert('x')</script> & co\nVoir https://carnet.test/r?a=1&b=<2> (ou http://ex.test/p).\n"
        "Écrire à mailto:anne.martin@carnet.test, merci.\njavascript:alert(1)\n"
    )
    rendered = render_message(msg.as_bytes())
    assert rendered.html is None
    assert rendered.text is not None and "<script>alert('x')</script>" in rendered.text
    fragment = rendered.text_html
    assert fragment is not None
    assert "<script" not in fragment
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co\n" in fragment
    links = [attrs for tag, attrs in _elements(fragment) if tag == "a"]
    assert [link["href"] for link in links] == [
        "https://carnet.test/r?a=1&b=",
        "http://ex.test/p",
        "mailto:anne.martin@carnet.test",
    ]
    assert all(link["rel"] == "noopener noreferrer" and link["target"] == "_blank" for link in links)
    assert 'href="https://carnet.test/r?a=1&amp;b="' in fragment
    assert {tag for tag, _ in _elements(fragment)} == {"div", "a"}
    assert "javascript:alert(1)" in fragment and 'href="javascript' not in fragment
    assert rendered.attachments == [] and rendered.messages == [] and rendered.remote_blocked == 0


def test_headers_are_decoded() -> None:
    msg = _message()
    msg["Reply-To"] = "Secrétariat <Secretariat@carnet.test>"
    msg["References"] = "<a@carnet.test> <b@carnet.test>"
    msg.set_content("x")
    raw = msg.as_bytes().replace(b"<a@carnet.test> <b@", b"<a@carnet.test>\n\t <b@")  # folded (RFC 5322 §2.2.3)
    rendered = render_message(raw)
    assert rendered.subject == "Résultats d'analyse"
    assert rendered.from_display == "Dr Anne Martin <Anne.Martin@carnet.test>"
    assert rendered.from_address == "anne.martin@carnet.test"
    assert rendered.reply_to == "Secretariat@carnet.test"
    assert rendered.to == ["Camille Durand <camille@carnet.test>", "bob@carnet.test"]
    assert rendered.cc == ["Labo Biologie Étoile <labo@carnet.test>"]
    assert rendered.date == datetime(2026, 3, 3, 9, 15, tzinfo=UTC)
    assert rendered.date is not None and rendered.date.tzinfo is not None
    assert rendered.message_id == "<abc.123@carnet.test>"
    assert rendered.references == "<a@carnet.test> <b@carnet.test>"
    assert rendered.read_receipt_to == "" and not rendered.closes_thread
    assert not rendered.auto_submitted and not rendered.is_report


def test_header_controls_removed_and_8bit_headers_read_as_utf8() -> None:
    raw = (
        "From: =?utf-8?q?Anne=07=E2=80=AEnitraM?= <anne@carnet.test>\r\n"
        "Subject: =?utf-8?q?caf=C3=A9=00=1B[31m?= et thé\r\n"
        "Date: Tue, 3 Mar 2026 10:15:00 -0000\r\n\r\nbody\r\n"
    ).encode()
    rendered = render_message(raw)
    assert rendered.subject == "café[31m et thé"
    assert rendered.from_display == "AnnenitraM <anne@carnet.test>"
    assert rendered.date == datetime(2026, 3, 3, 10, 15, tzinfo=UTC)
    assert rendered.text == "body\n"


def test_notification_headers() -> None:
    msg = _message()
    msg["X-MSS-MES"] = "  fin "
    msg["Disposition-Notification-To"] = "Anne <Anne.Martin@carnet.test>"
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("x")
    rendered = render_message(msg.as_bytes())
    assert rendered.closes_thread
    assert rendered.read_receipt_to == "Anne.Martin@carnet.test"
    assert rendered.auto_submitted

    msg.replace_header("X-MSS-MES", "SUITE")
    msg.replace_header("Auto-Submitted", "No (a person wrote this)")
    rendered = render_message(msg.as_bytes())
    assert not rendered.closes_thread and not rendered.auto_submitted


def test_format_flowed_is_unwrapped() -> None:
    raw = (
        b"From: a@carnet.test\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n"
        b"Une longue ligne \r\ncontinue ici.\r\n> cit\xc3\xa9 \r\n> suite\r\n -- \r\n--  \r\nsig\r\n"
    )
    rendered = render_message(raw)
    assert rendered.text == "Une longue ligne continue ici.\n> cité suite\n-- \n--  sig\n"


# HTML and alternatives ------------------------------------------------------------------------------------------------


def test_alternative_prefers_sanitised_html() -> None:
    msg = _message()
    msg.set_content("Texte brut https://carnet.test/")
    msg.add_alternative(
        "<html><head><style>p{color:red}</style><title>t</title></head><body>"
        '<p onclick="steal()">Bonjour <b>Camille</b></p><img src="https://tracker.test/p.gif">'
        '<script>alert(1)</script><a href="https://carnet.test/">lien</a></body></html>',
        subtype="html",
    )
    rendered = render_message(msg.as_bytes())
    assert rendered.html is not None
    assert "<script" not in rendered.html and "onclick" not in rendered.html and "tracker" not in rendered.html
    assert "<b>Camille</b>" in rendered.html
    assert rendered.remote_blocked == 1
    assert rendered.text == "Texte brut https://carnet.test/\n"
    assert rendered.text_html is not None and 'href="https://carnet.test/"' in rendered.text_html
    assert rendered.attachments == []


def test_html_only_message() -> None:
    msg = _message()
    msg.set_content("<p>Seulement <i>HTML</i></p>", subtype="html")
    rendered = render_message(msg.as_bytes())
    assert rendered.html == "<p>Seulement <i>HTML</i></p>\n"
    assert rendered.text is None and rendered.text_html is None


def test_mixed_with_pdf_and_inline_cid_image() -> None:
    msg = _message()
    msg.set_content("Voir le PDF.")
    msg.add_alternative('<p>Voir le PDF.</p><img src="cid:logo.1@carnet.test" alt="logo">', subtype="html")
    msg.get_payload()[1].add_related(PNG, "image", "png", cid="<logo.1@carnet.test>")
    msg.add_attachment(PDF, "application", "pdf", filename="résultats.pdf")
    raw = msg.as_bytes()
    rendered = render_message(raw)

    assert rendered.html is not None
    images = [attrs for tag, attrs in _elements(rendered.html) if tag == "img"]
    expected_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert images == [{"src": expected_uri, "alt": "logo"}]
    assert rendered.remote_blocked == 0
    assert _names(rendered.attachments) == [("1.2.2", "image/png", "inline"), ("2", "application/pdf", "attachment")]
    image, pdf = rendered.attachments
    assert image.content_id == "logo.1@carnet.test" and image.size == len(PNG) and image.filename == ""
    assert pdf.filename == "résultats.pdf" and pdf.size == len(PDF) and pdf.content_id is None
    assert part_content(raw, "2") == (PDF, "application/pdf", "résultats.pdf")
    assert part_content(raw, "1.2.2") == (PNG, "image/png", "")
    assert part_content(raw, "1.1")[0].decode().strip() == "Voir le PDF."
    assert inline_images(raw) == {"logo.1@carnet.test": expected_uri}
    assert inline_images(raw, max_total=len(PNG) - 1) == {}
    with pytest.raises(KeyError):
        part_content(raw, "1")  # a multipart is not a leaf
    with pytest.raises(KeyError):
        part_content(raw, "3")
    with pytest.raises(KeyError):
        part_content(raw, "1.2.2.1")
    with pytest.raises(KeyError):
        part_content(raw, "0")
    with pytest.raises(KeyError):
        part_content(raw, "")


def test_inline_image_must_be_what_it_claims() -> None:
    raw = _crlf(
        b"From: a@carnet.test\nContent-Type: multipart/related; boundary=R\n\n"
        b"--R\nContent-Type: text/html\n\n<img src=\"cid:svg@x\"><img src='cid:png%40x'>\n"
        b"--R\nContent-Type: image/png\nContent-ID: <svg@x>\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(b"<svg onload=alert(1)></svg>")
        + b"--R\nContent-Type: image/png\nContent-ID: <png@x>\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(PNG)
        + b"--R--\n"
    )
    assert list(inline_images(raw)) == ["png@x"]
    rendered = render_message(raw)
    assert rendered.html is not None
    assert [attrs.get("src", "")[:22] for tag, attrs in _elements(rendered.html) if tag == "img"] == [
        "",
        "data:image/png;base64,",
    ]
    assert _names(rendered.attachments) == [("2", "image/png", "inline"), ("3", "image/png", "inline")]


def test_mixed_takes_first_text_and_lists_named_text_parts() -> None:
    raw = _crlf(
        b"From: a@carnet.test\nContent-Type: multipart/mixed; boundary=B\n\n"
        b"--B\nContent-Type: image/jpeg\nContent-Transfer-Encoding: base64\n\n/9j/4AAQ\n"
        b"--B\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
        b"Cha=EEne accentu=E9e\n"
        b"--B\nContent-Type: text/plain; name=notes.txt\n\nnotes\n"
        b"--B\nContent-Type: text/html\nContent-Disposition: attachment\n\n<p>x</p>\n"
        b"--B\nContent-Type: text/plain\n\npied de page\n"
        b"--B--\n"
    )
    rendered = render_message(raw)
    assert rendered.text == "Chaîne accentuée"  # the last CRLF belongs to the boundary
    assert rendered.html is None
    assert _names(rendered.attachments) == [
        ("1", "image/jpeg", ""),
        ("3", "text/plain", ""),
        ("4", "text/html", "attachment"),
        ("5", "text/plain", ""),
    ]
    assert rendered.attachments[1].filename == "notes.txt"


# S/MIME ---------------------------------------------------------------------------------------------------------------

SIGNED = _crlf(
    b"From: Dr Anne Martin <anne.martin@carnet.test>\n"
    b"To: camille@carnet.test\nSubject: =?utf-8?q?Ordonnance_sign=C3=A9e?=\nMIME-Version: 1.0\n"
    b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="S"\n\n'
    b"This is an S/MIME signed message\n\n"
    b'--S\nContent-Type: multipart/mixed; boundary="M"\n\n'
    b"--M\nContent-Type: text/plain; charset=utf-8\n\nOrdonnance ci-jointe.\n"
    b'--M\nContent-Type: application/pdf; name="ordonnance.pdf"\nContent-Transfer-Encoding: base64\n'
    b'Content-Disposition: attachment; filename="ordonnance.pdf"\n\n' + base64.encodebytes(PDF) + b"--M--\n\n"
    b"--S\nContent-Type: application/pkcs7-signature; name=smime.p7s\nContent-Transfer-Encoding: base64\n"
    b"Content-Disposition: attachment; filename=smime.p7s\n\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\n"
    b"--S--\n"
)


def test_multipart_signed_is_transparent() -> None:
    rendered = render_message(SIGNED)
    assert rendered.subject == "Ordonnance signée"
    assert rendered.text == "Ordonnance ci-jointe."
    assert _names(rendered.attachments) == [("1.2", "application/pdf", "attachment")]
    assert rendered.attachments[0].filename == "ordonnance.pdf"
    assert part_content(SIGNED, "1.2") == (PDF, "application/pdf", "ordonnance.pdf")
    assert part_content(SIGNED, "1.1") == (b"Ordonnance ci-jointe.", "text/plain", "")
    assert part_content(SIGNED, "2")[1] == "application/pkcs7-signature"  # retrievable, never listed


def test_signed_report_is_a_report() -> None:
    raw = _crlf(
        b"From: mailer-daemon@carnet.test\nSubject: Delivery failed\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary=S\n\n'
        b"--S\nContent-Type: multipart/report; report-type=delivery-status; boundary=R\n\n"
        b"--R\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
        b"--R\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.carnet.test\n\n"
        b"Final-Recipient: rfc822; x@carnet.test\nAction: failed\nStatus: 5.1.1\n"
        b"--R\nContent-Type: text/rfc822-headers\n\nSubject: hello\n"
        b"--R--\n"
        b"--S\nContent-Type: application/x-pkcs7-signature\n\nAAAA\n--S--\n"
    )
    rendered = render_message(raw)
    assert rendered.is_report
    assert rendered.text == "Your message could not be delivered."
    assert _names(rendered.attachments) == [("1.2", "message/delivery-status", ""), ("1.3", "text/rfc822-headers", "")]
    content, content_type, _ = part_content(raw, "1.2")
    assert content_type == "message/delivery-status"
    assert b"Reporting-MTA: dns; mx.carnet.test" in content and b"Status: 5.1.1" in content


def _signed_data(content: bytes) -> bytes:
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [],
            "encap_content_info": {"content_type": "data", "content": content},
            "signer_infos": [],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()


def _opaque(der: bytes, smime_type: str = "signed-data") -> bytes:
    return _crlf(
        b"From: Laboratoire <labo@carnet.test>\nTo: camille@carnet.test\nSubject: Opaque\n"
        b"Content-Type: application/pkcs7-mime; smime-type=" + smime_type.encode() + b"; name=smime.p7m\n"
        b"Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=smime.p7m\n\n"
        + base64.encodebytes(der)
    )


def test_opaque_signed_data_is_unwrapped() -> None:
    inner = _crlf(
        b"Content-Type: multipart/mixed; boundary=I\n\n"
        b"--I\nContent-Type: text/html; charset=utf-8\n\n<p>R\xc3\xa9sultat <b>normal</b></p>\n"
        b"--I\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=bilan.pdf\n"
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(PDF) + b"--I--\n"
    )
    raw = _opaque(_signed_data(inner))
    rendered = render_message(raw)
    assert rendered.subject == "Opaque" and rendered.from_address == "labo@carnet.test"
    assert rendered.html == "<p>Résultat <b>normal</b></p>"
    # Sections are those of the encapsulated entity, numbered as if it were the message.
    assert _names(rendered.attachments) == [("2", "application/pdf", "attachment")]
    assert part_content(raw, "2") == (PDF, "application/pdf", "bilan.pdf")


def test_opaque_single_part_and_nested_layers() -> None:
    inner = b"Content-Type: text/plain; charset=utf-8\r\n\r\nSign\xc3\xa9 deux fois.\r\n"
    layer = _crlf(
        b"Content-Type: application/pkcs7-mime; smime-type=signed-data\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(_signed_data(inner))
    )
    rendered = render_message(_opaque(_signed_data(layer)))
    assert rendered.text == "Signé deux fois.\n"
    assert rendered.attachments == []
    assert part_content(_opaque(_signed_data(layer)), "1")[0] == b"Sign\xc3\xa9 deux fois.\r\n"


@pytest.mark.parametrize(
    "der",
    [b"not DER at all", b"\x30\x82\xff\xff\x06", b"", _signed_data(b"")],
    ids=["garbage", "truncated", "empty", "empty-content"],
)
def test_broken_cms_leaves_the_p7m_as_attachment(der: bytes) -> None:
    raw = _opaque(der)
    rendered = render_message(raw)
    assert rendered.html is None and rendered.text is None and rendered.text_html is None
    assert _names(rendered.attachments) == [("1", "application/pkcs7-mime", "attachment")]
    assert rendered.attachments[0].filename == "smime.p7m"
    assert part_content(raw, "1") == (der, "application/pkcs7-mime", "smime.p7m")


def test_enveloped_data_is_not_unwrapped() -> None:
    raw = _opaque(_signed_data(b"Content-Type: text/plain\r\n\r\nx\r\n"), smime_type="enveloped-data")
    rendered = render_message(raw)
    assert rendered.text is None
    assert _names(rendered.attachments) == [("1", "application/pkcs7-mime", "attachment")]


# Encapsulated messages ------------------------------------------------------------------------------------------------


def test_embedded_message() -> None:
    inner = _message("Transfert: bilan")
    inner.set_content("Bilan sanguin normal.")
    inner.add_attachment(PDF, "application", "pdf", filename="bilan.pdf")
    outer = _message("Fwd")
    outer.set_content("Voir le message joint.")
    outer.add_attachment(inner)
    raw = outer.as_bytes()

    rendered = render_message(raw)
    assert rendered.text == "Voir le message joint.\n"
    assert rendered.attachments == []
    assert _names(rendered.messages) == [("2", "message/rfc822", "attachment")]

    embedded = embedded_raw(raw, "2")
    assert rendered.messages[0].size == len(embedded)
    shown = render_message(embedded)
    assert isinstance(shown, RenderedMessage)
    assert shown.subject == "Transfert: bilan"
    assert shown.text == "Bilan sanguin normal.\n"
    assert _names(shown.attachments) == [("2", "application/pdf", "attachment")]
    # IMAP numbering reaches into the encapsulated message: 2.2 is its second part.
    assert part_content(raw, "2.2") == (PDF, "application/pdf", "bilan.pdf")
    assert part_content(embedded, "2") == (PDF, "application/pdf", "bilan.pdf")
    assert part_content(raw, "2")[:2] == (embedded, "message/rfc822")
    with pytest.raises(KeyError):
        embedded_raw(raw, "1")
    with pytest.raises(KeyError):
        embedded_raw(raw, "9")


def test_embedded_single_part_message_body_is_section_n_1() -> None:
    raw = _crlf(
        b"From: a@carnet.test\nContent-Type: multipart/mixed; boundary=B\n\n"
        b"--B\nContent-Type: text/plain\n\nouter\n"
        b"--B\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: text/plain\n\ninner body\n"
        b"--B\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(b"Subject: encoded\r\n\r\nencoded body\r\n")
        + b"--B--\n"
    )
    assert part_content(raw, "2.1") == (b"inner body", "text/plain", "")
    assert render_message(embedded_raw(raw, "2")).subject == "inner"
    encoded = render_message(embedded_raw(raw, "3"))
    assert encoded.subject == "encoded" and encoded.text == "encoded body\n"


# File names -----------------------------------------------------------------------------------------------------------


def test_rfc2231_and_rfc2047_filenames_lose_directories_and_controls() -> None:
    raw = _crlf(
        b"From: a@carnet.test\nContent-Type: multipart/mixed; boundary=B\n\n"
        b"--B\nContent-Type: text/plain\n\nx\n"
        b"--B\nContent-Type: application/pdf\n"
        b"Content-Disposition: attachment; filename*=utf-8''..%2F..%2Fetc%2Fr%C3%A9sum%C3%A9.pdf\n\n%PDF\n"
        b"--B\nContent-Type: application/pdf\n"
        b'Content-Disposition: attachment; filename="C:\\\\Users\\\\x\\\\compte rendu.pdf"\n\n%PDF\n'
        b"--B\nContent-Type: application/octet-stream\n"
        b"Content-Disposition: attachment; filename*0*=utf-8''facture%E2%80%AE; filename*1=\"fdp.exe\"\n\nMZ\n"
        b'--B\nContent-Type: application/pdf; name="=?utf-8?B?cmFwcG9ydCDDqXTDqS5wZGY=?="\n\n%PDF\n'
        b'--B\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=".."\n\n%PDF\n'
        b"--B--\n"
    )
    rendered = render_message(raw)
    assert [p.filename for p in rendered.attachments] == [
        "résumé.pdf",
        "compte rendu.pdf",
        "facturefdp.exe",
        "rapport été.pdf",
        "",
    ]
    assert part_content(raw, "2")[2] == "résumé.pdf"


# Malformed input ------------------------------------------------------------------------------------------------------


def _check(rendered: RenderedMessage) -> None:
    assert isinstance(rendered, RenderedMessage)
    for fragment in (rendered.html, rendered.text_html):
        if fragment is not None:
            assert "<script" not in fragment.lower()
    for value in [rendered.subject, rendered.from_display, *rendered.to, *rendered.cc]:
        assert not any(ord(c) < 32 for c in value)
        value.encode("utf-8")  # no lone surrogates


def test_random_bytes_never_raise() -> None:
    rng = random.Random(2392)
    for size in (0, 1, 10, 200, 5000):
        for _ in range(20):
            raw = bytes(rng.randrange(256) for _ in range(size))
            _check(render_message(raw))
            assert isinstance(inline_images(raw), dict)
            with pytest.raises(KeyError):
                embedded_raw(raw, "1")


def test_random_mime_fragments_never_raise() -> None:
    rng = random.Random(2045)
    pieces = [
        b"Content-Type: multipart/mixed; boundary=B\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: text/html; charset=bogus-8\r\n",
        b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Disposition: attachment; filename*=x''%ff%fe\r\n",
        b"From: =?utf-8?b?!!!?= <@>\r\n",
        b"Date: yesterday\r\n",
        b"\r\n",
        b"--B\r\n",
        b"--B--\r\n",
        b"=?=\r\n",
        b"<script>x</script>\r\n",
        b"\xff\xfe\x00\r\n",
        b"MIIB====\r\n",
    ]
    for _ in range(300):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 30)))
        rendered = render_message(raw)
        _check(rendered)
        for part in rendered.attachments:
            assert part.section
            part_content(raw, part.section)


def test_truncated_multipart_bad_base64_and_unknown_charset() -> None:
    raw = _crlf(
        b"From: Anne <anne@carnet.test>\nSubject: =?x-unknown?q?caf=E9?=\n"
        b"Content-Type: multipart/mixed; boundary=B\n\n"
        b"--B\nContent-Type: text/plain; charset=x-no-such-charset\n\ncaf\xc3\xa9 ok\n"
        b"--B\nContent-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\n"
        b"JVBERi0!!!xLjQK*\n"
        b"--B\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: x-rot13\n\ntrunc"
    )
    rendered = render_message(raw)
    _check(rendered)
    assert rendered.text == "café ok"
    assert rendered.subject.startswith("caf")
    assert _names(rendered.attachments)[0] == ("2", "application/pdf", "")
    assert part_content(raw, "2")[0].startswith(b"%PDF-1.4")


@pytest.mark.parametrize(
    ("charset", "data", "expected"),
    [
        ("utf-8", "é".encode(), "é"),
        ("iso-8859-15", "€".encode("iso-8859-15"), "€"),
        ("us-ascii", "é".encode(), "é"),  # mislabelled UTF-8
        ("utf-8", b"caf\xe9", "caf\ufffd"),
        ("base64", b"abc", "abc"),  # a bytes-to-bytes codec name is not a charset
        ("", b"\xe9t\xe9", "\ufffdt\ufffd"),
        ('"windows-1252"', b"\x80", "€"),
    ],
)
def test_charsets(charset: str, data: bytes, expected: str) -> None:
    content_type = f"text/plain; charset={charset}" if charset else "text/plain"
    raw = f"From: a@carnet.test\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".encode()
    assert render_message(raw + data).text == expected


def test_html_charset_from_meta() -> None:
    raw = (
        b"From: a@carnet.test\r\nContent-Type: text/html\r\n\r\n"
        b'<html><head><meta charset="iso-8859-15"></head><body><p>\xa4 5</p></body></html>'
    )
    assert render_message(raw).html == "<p>€ 5</p>"


def test_deep_nesting_is_cut_and_absurd_nesting_keeps_headers() -> None:
    def nested(levels: int) -> bytes:
        body = b"Content-Type: text/plain\r\n\r\ndeep\r\n"
        for level in range(levels):
            boundary = f"b{level}".encode()
            body = (
                b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n--" + boundary + b"\r\n"
                + body + b"\r\n--" + boundary + b"--\r\n"
            )  # fmt: skip
        return b"From: a@carnet.test\r\nSubject: deep\r\n" + body

    assert render_message(nested(MAX_DEPTH - 1)).text == "deep\n"
    assert render_message(nested(MAX_DEPTH + 5)).text is None  # beyond the limit: ignored
    with pytest.raises(KeyError):
        part_content(nested(MAX_DEPTH + 5), ".".join(["1"] * (MAX_DEPTH + 5)))
    rendered = render_message(nested(3000))  # the stdlib parser itself gives up
    assert rendered.subject == "deep" and rendered.from_address == "a@carnet.test"
    assert rendered.text is None and rendered.attachments == []


def test_huge_part_count_is_capped() -> None:
    parts = b"".join(b"--B\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n" for _ in range(2000))
    raw = b"From: a@carnet.test\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n" + parts + b"--B--\r\n"
    rendered = render_message(raw)
    assert 400 <= len(rendered.attachments) < 500
    with pytest.raises(KeyError):
        part_content(raw, "1999")


def test_missing_headers() -> None:
    rendered = render_message(b"\r\n\r\njust a body")
    assert rendered.subject == "" and rendered.from_display == "" and rendered.from_address == ""
    assert rendered.to == [] and rendered.date is None and rendered.message_id == ""
    assert rendered.text == "\njust a body"


# Plain text and the document --------------------------------------------------------------------------------------


def test_text_to_html_trims_punctuation_and_keeps_balanced_parentheses() -> None:
    fragment = text_to_html('(https://w.test/a_(b)) "https://w.test/q".\r\nhttps:// mailto: xhttps://no.test')
    hrefs = [attrs["href"] for tag, attrs in _elements(fragment) if tag == "a"]
    assert hrefs == ["https://w.test/a_(b)", "https://w.test/q"]
    assert "\r" not in fragment and "\n" in fragment
    assert fragment.startswith('<div class="plain-text">') and fragment.endswith("</div>")


def test_body_document() -> None:
    document = body_document("<p>Bonjour</p>", lang="fr")
    assert document.startswith("<!DOCTYPE html>")
    assert '<html lang="fr">' in document and '<meta charset="utf-8">' in document
    assert 'name="viewport"' in document and "max-width:100%" in document and "pre-wrap" in document
    assert "Content-Security-Policy" in document
    assert document.endswith("<body><p>Bonjour</p></body></html>")
    assert '<html lang="und">' in body_document("", lang='fr"><script>')


def test_rendered_message_is_immutable() -> None:
    msg = _message()
    msg.set_content("x")
    rendered = render_message(msg.as_bytes(policy=default_policy))
    with pytest.raises(AttributeError):
        rendered.subject = "y"  # type: ignore[misc]
