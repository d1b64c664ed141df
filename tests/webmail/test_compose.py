"""Building replies and "displayed" MDNs: attachment sniffing and limits, header safety, parse-back."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

import pytest

from carnet.webmail import compose
from carnet.webmail.compose import ComposeError, Upload, build_displayed_mdn, build_message, check_upload

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(17)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(20)
HTML = b"<!DOCTYPE html><html><script>alert(1)</script></html>"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def text_of(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def reply(**overrides: object) -> bytes:
    arguments: dict[str, object] = {
        "from_address": "camille.dupont@carnet.test",
        "from_name": "Camille Dupont",
        "to": "anne.martin@carnet.test",
        "subject": "Re: Vos résultats",
        "body": "Bonjour Docteur,\nmerci pour le compte-rendu.\n",
    }
    arguments.update(overrides)
    return build_message(**arguments)  # type: ignore[arg-type]


# Uploads ------------------------------------------------------------------------------------------------------


def test_sniffed_type_wins_over_the_declared_one() -> None:
    upload = check_upload(Upload("compte-rendu.png", "image/png", PDF))
    assert upload.content_type == "application/pdf"
    assert upload.filename == "compte-rendu.pdf"
    assert upload.data == PDF
    assert check_upload(Upload("photo.jpeg", "application/octet-stream", JPEG)).content_type == "image/jpeg"
    assert check_upload(Upload("photo.jpeg", "image/jpeg", JPEG)).filename == "photo.jpeg"
    assert check_upload(Upload("radio", "", PNG)) == Upload("radio.png", "image/png", PNG)


@pytest.mark.parametrize(
    "upload",
    [
        Upload("resultats.pdf", "application/pdf", HTML),
        Upload("image.svg", "image/svg+xml", SVG),
        Upload("image.png", "image/png", SVG),
        Upload("vide.pdf", "application/pdf", b""),
        Upload("programme.pdf", "application/pdf", b"MZ\x90\x00" + PDF),
        Upload("gif.png", "image/png", b"GIF89a" + bytes(20)),
    ],
)
def test_other_documents_are_refused(upload: Upload) -> None:
    with pytest.raises(ComposeError) as caught:
        check_upload(upload)
    assert caught.value.code == "attachment_type"


def test_attachment_size_limit() -> None:
    check_upload(Upload("big.pdf", "application/pdf", PDF.ljust(compose.MAX_ATTACHMENT, b" ")))
    with pytest.raises(ComposeError) as caught:
        check_upload(Upload("big.pdf", "application/pdf", PDF.ljust(compose.MAX_ATTACHMENT + 1, b" ")))
    assert caught.value.code == "attachment_size"


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("../../etc/passwd", PDF, "passwd.pdf"),
        ("C:\\Users\\anne\\scan.pdf", PDF, "scan.pdf"),
        ("compte-rendu é.pdf", PDF, "compte-rendu é.pdf"),
        ("cr\r\nContent-Type: text/html.pdf", PDF, "html.pdf"),  # "/" is a path separator
        ("cr\r\nContent-Type: x.pdf", PDF, "crContent-Type: x.pdf"),
        ("facture\u202efdp.exe", PDF, "facturefdp.exe.pdf"),  # right-to-left override removed
        ("", PDF, "piece-jointe.pdf"),
        ("...", PNG, "piece-jointe.png"),
        ("   ", JPEG, "piece-jointe.jpg"),
        (".pdf", PDF, "pdf.pdf"),  # no hidden files
        ("scan.v2", PNG, "scan.v2.png"),
        ("page.html", PDF, "page.pdf"),
        ("e\u0301chographie.PDF", PDF, "échographie.pdf"),  # NFC, lower-case extension
    ],
)
def test_filenames_are_cleaned(name: str, kind: bytes, expected: str) -> None:
    assert check_upload(Upload(name, "application/pdf", kind)).filename == expected


def test_long_filenames_keep_their_extension() -> None:
    name = check_upload(Upload("é" * 300 + ".pdf", "application/pdf", PDF)).filename
    assert len(name) == compose.MAX_FILENAME
    assert name.endswith("é.pdf")


# Subjects -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Vos résultats", "Re: Vos résultats"),
        ("Re: Vos résultats", "Re: Vos résultats"),
        ("RE: x", "RE: x"),
        ("re: x", "re: x"),
        ("Re : x", "Re : x"),
        ("Return of results", "Re: Return of results"),
        ("", "Re:"),
    ],
)
def test_reply_subject(subject: str, expected: str) -> None:
    assert compose.reply_subject(subject) == expected


# Messages -----------------------------------------------------------------------------------------------------


def test_reply_parses_back() -> None:
    raw = reply(
        from_name="Camille Dupont-Lé",
        to="Dr Anne Martin <anne.martin@carnet.test>",
        in_reply_to="<20260101.abc@carnet.test>",
        references="<root@carnet.test>\r\n <second@carnet.test>",
        lang="fr",
    )
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.isascii()
    message = parse(raw)
    assert message["From"].addresses[0].display_name == "Camille Dupont-Lé"
    assert message["From"].addresses[0].addr_spec == "camille.dupont@carnet.test"
    assert message["To"].addresses[0].addr_spec == "anne.martin@carnet.test"
    assert str(message["Subject"]) == "Re: Vos résultats"
    assert str(message["In-Reply-To"]) == "<20260101.abc@carnet.test>"
    assert str(message["References"]).split() == [
        "<root@carnet.test>",
        "<second@carnet.test>",
        "<20260101.abc@carnet.test>",
    ]
    assert message["Content-Language"] == "fr"
    assert message["Message-ID"] is None  # the MTA adds it (RFC 6409 §8.3)
    assert parsedate_to_datetime(str(message["Date"])).tzinfo is not None
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(message) == "Bonjour Docteur,\nmerci pour le compte-rendu.\n"


def test_references_start_a_thread_and_are_limited() -> None:
    assert "References: <parent@x>" in reply(in_reply_to="<parent@x>").decode()
    assert b"References" not in reply()
    old = " ".join(f"<{n}@carnet.test>" for n in range(30))
    message = parse(reply(in_reply_to="<parent@carnet.test>", references=old + " junk <1@carnet.test>"))
    ids = str(message["References"]).split()
    assert len(ids) == compose.MAX_REFERENCES
    assert ids[0] == "<0@carnet.test>"  # the thread's root is kept
    assert ids[-1] == "<parent@carnet.test>"
    assert ids[-2] == "<29@carnet.test>"
    raw = reply(in_reply_to="<parent@carnet.test>", references=old)
    header = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in header.split(b"\r\n")) <= 78  # folded


def test_attachments_are_base64_with_rfc2231_filenames() -> None:
    uploads = [
        Upload("compte-rendu é.pdf", "application/pdf", PDF),
        Upload("radio.png", "image/png", PNG),
        Upload("photo", "image/jpeg", JPEG),
    ]
    raw = reply(attachments=uploads)
    assert raw.isascii()
    assert b"filename*=utf-8''compte-rendu%20%C3%A9.pdf" in raw
    message = parse(raw)
    assert message.get_content_type() == "multipart/mixed"
    parts = list(message.iter_parts())
    assert parts[0].get_content_type() == "text/plain"
    assert message["Content-Language"] == parts[0]["Content-Language"] == "fr"
    assert text_of(parts[0]) == "Bonjour Docteur,\nmerci pour le compte-rendu.\n"
    attachments = list(message.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["compte-rendu é.pdf", "radio.png", "photo.jpg"]
    assert [a.get_content_type() for a in attachments] == ["application/pdf", "image/png", "image/jpeg"]
    assert [a.get_content() for a in attachments] == [PDF, PNG, JPEG]
    assert all(a["Content-Transfer-Encoding"] == "base64" for a in attachments)
    assert all(a.get_content_disposition() == "attachment" for a in attachments)
    assert all(a["MIME-Version"] is None for a in parts)


def test_attachments_are_checked_again() -> None:
    with pytest.raises(ComposeError) as caught:
        reply(attachments=[Upload("x.pdf", "application/pdf", HTML)])
    assert caught.value.code == "attachment_type"


def test_attachment_without_text_is_fine() -> None:
    message = parse(reply(body=" \n", attachments=[Upload("a.pdf", "application/pdf", PDF)]))
    assert [a.get_filename() for a in message.iter_attachments()] == ["a.pdf"]


def test_empty_message_is_refused() -> None:
    for body in ("", "  \r\n\t"):
        with pytest.raises(ComposeError) as caught:
            reply(body=body)
        assert caught.value.code == "empty_body"


def test_limits() -> None:
    def code(**overrides: object) -> str:
        with pytest.raises(ComposeError) as caught:
            reply(**overrides)
        return caught.value.code

    reply(subject="s" * compose.MAX_SUBJECT)
    assert code(subject="s" * (compose.MAX_SUBJECT + 1)) == "subject_length"
    reply(body="b" * compose.MAX_BODY)
    assert code(body="b" * (compose.MAX_BODY + 1)) == "body_length"
    one = Upload("a.pdf", "application/pdf", PDF)
    reply(attachments=[one] * compose.MAX_ATTACHMENTS)
    assert code(attachments=[one] * (compose.MAX_ATTACHMENTS + 1)) == "attachment_count"
    big = Upload("big.pdf", "application/pdf", PDF.ljust(compose.MAX_ATTACHMENT, b" "))
    assert code(attachments=[big, big, one]) == "attachment_size"  # 20 MiB + a little in total


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "Hello\r\nBcc: everyone@example.org"},
        {"subject": "Hello\nBcc: everyone@example.org"},
        {"subject": "Hello\rBcc: everyone@example.org"},
        {"subject": "Hello\x00"},
        {"subject": "Hello\u2028Bcc: x@y"},
        {"from_name": "Camille\r\nBcc: everyone@example.org"},
        {"from_address": "camille@carnet.test\r\nBcc: x@example.org"},
        {"to": "anne.martin@carnet.test\r\nBcc: everyone@example.org"},
        {"to": "anne.martin@carnet.test, everyone@example.org"},
        {"to": "not an address"},
        {"to": ""},
        {"from_address": "camille"},
        {"in_reply_to": "<a@b>\r\nBcc: x@y"},
        {"lang": "fr\r\nBcc: x@y"},
    ],
)
def test_header_injection_is_refused(overrides: dict[str, str]) -> None:
    with pytest.raises(ComposeError) as caught:
        reply(**overrides)
    assert caught.value.code == "header"


def test_a_parent_id_that_is_not_a_message_id_is_left_out() -> None:
    for bad in ("not a message id", "<with space@x>", "abc@x", "<a@b> <c@d>"):
        message = parse(reply(in_reply_to=bad))
        assert message["In-Reply-To"] is None
        assert message["References"] is None


def test_references_keep_only_message_ids() -> None:
    message = parse(reply(in_reply_to="<p@b>", references="<a@b>\r\nBcc: x@y\r\n\t<c@d> (comment) <\x00@x>"))
    assert message["Bcc"] is None
    assert str(message["References"]).split() == ["<a@b>", "<c@d>", "<p@b>"]


def test_crlf_in_body_is_just_text() -> None:
    message = parse(reply(body="line one\r\nBcc: everyone@example.org\r\n"))
    assert message["Bcc"] is None
    assert text_of(message) == "line one\nBcc: everyone@example.org\n"


# Displayed MDN ------------------------------------------------------------------------------------------------

ORIGINAL = (
    b"From: Dr Anne Martin <anne.martin@carnet.test>\r\n"
    b"To: camille.dupont@carnet.test\r\n"
    b"Subject: =?utf-8?q?R=C3=A9sultats?=\r\n"
    b"Message-ID: <20260101.abc@carnet.test>\r\n"
    b"Disposition-Notification-To: anne.martin@carnet.test\r\n"
)


def parts_of(message: Message) -> list[Message]:
    payload = message.get_payload()
    assert isinstance(payload, list)
    return payload


def test_displayed_mdn_structure() -> None:
    raw = build_displayed_mdn(
        reader="camille.dupont@carnet.test",
        to="anne.martin@carnet.test",
        original_header=ORIGINAL,
        original_recipient="camille.dupont@carnet.test",
    )
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = BytesParser(policy=email.policy.compat32).parsebytes(raw)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "disposition-notification"
    assert message["From"] == "<camille.dupont@carnet.test>"
    assert message["To"] == "<anne.martin@carnet.test>"
    assert message["In-Reply-To"] == "<20260101.abc@carnet.test>"
    assert message["Auto-Submitted"] is None  # sent by the reader, not automatically (RFC 3834 §5)
    assert message["Message-ID"].endswith("@carnet.test>")
    human, report, original = parts_of(message)
    assert human.get_content_type() == "text/plain"
    text = human.get_payload(decode=True).decode()
    assert "affiché" in text
    assert "displayed" in text
    assert "no guarantee that it has been read" in text
    assert report.get_content_type() == "message/disposition-notification"
    fields = parts_of(report)[0]  # the email package parses the report fields as one header block
    assert fields["Disposition"] == "manual-action/MDN-sent-manually; displayed"
    assert fields["Original-Message-ID"] == "<20260101.abc@carnet.test>"
    assert fields["Final-Recipient"] == "rfc822; camille.dupont@carnet.test"
    assert fields["Original-Recipient"] == "rfc822; camille.dupont@carnet.test"
    assert fields["Reporting-UA"].startswith("carnet.test;")
    assert original.get_content_type() == "text/rfc822-headers"
    assert ORIGINAL in raw


def test_displayed_mdn_subject_and_optional_fields() -> None:
    raw = build_displayed_mdn(
        reader="camille.dupont@carnet.test",
        to="anne.martin@carnet.test",
        original_header=b"From: anne.martin@carnet.test\r\nSubject: R\xc3\xa9sultats\r\n",
    )
    message = parse(raw)
    assert str(message["Subject"]) == "Disposition notification (displayed): Résultats"
    assert message["In-Reply-To"] is None
    assert b"Original-Recipient" not in raw
    assert b"Original-Message-ID" not in raw
    assert b"Content-Transfer-Encoding: 8bit" in raw  # the 8-bit original header is carried as it is


def test_no_mdn_about_a_report() -> None:
    report = ORIGINAL + b'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"\r\n'
    with pytest.raises(ComposeError) as caught:
        build_displayed_mdn(reader="camille.dupont@carnet.test", to="anne.martin@carnet.test", original_header=report)
    assert caught.value.code == "mdn_refused"


@pytest.mark.parametrize(
    ("reader", "to"),
    [
        ("camille.dupont@carnet.test\r\nBcc: x@y", "anne.martin@carnet.test"),
        ("camille.dupont@carnet.test", "anne.martin@carnet.test>\r\nBcc: <x@y"),
        ("camille.dupont@carnet.test", "Anne <anne.martin@carnet.test>"),
        ("", "anne.martin@carnet.test"),
    ],
)
def test_mdn_addresses_are_checked(reader: str, to: str) -> None:
    with pytest.raises(ComposeError) as caught:
        build_displayed_mdn(reader=reader, to=to, original_header=ORIGINAL)
    assert caught.value.code == "header"
