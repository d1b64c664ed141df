"""SEARCH (RFC 9051 §6.4.4): every standard key, through the wire, on a small mailbox whose answers are known."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from .imaphelp import ImapEnv, RawClient, untagged

MESSAGES = [
    # (flags, internal date, raw)
    ((), datetime(2024, 1, 10, 12, tzinfo=UTC),
     b"From: Claire Durand <claire@carnet.test>\r\nTo: anne@carnet.test\r\nCc: secretariat@carnet.test\r\n"
     b"Subject: Bilan sanguin\r\nDate: Tue, 09 Jan 2024 08:00:00 +0100\r\nX-Priority: 1\r\n"
     b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
     + "Hémoglobine normale, ferritine basse.\r\n".encode()),
    (("\\Seen", "\\Answered"), datetime(2024, 2, 1, 12, tzinfo=UTC),
     b"From: Paul Petit <paul@carnet.test>\r\nTo: anne@carnet.test\r\nBcc: archives@carnet.test\r\n"
     b"Subject: =?utf-8?q?R=C3=A9union_de_service?=\r\nDate: Wed, 31 Jan 2024 18:00:00 +0000\r\n\r\n"
     + "Ordre du jour en pièce jointe.\r\n".encode() + b"x" * 2000 + b"\r\n"),
    (("\\Flagged", "\\Draft", "$Urgent"), datetime(2024, 3, 5, 12, tzinfo=UTC),
     b"From: anne@carnet.test\r\nTo: Claire Durand <claire@carnet.test>\r\nSubject: Brouillon\r\n"
     b"Date: Tue, 05 Mar 2024 09:00:00 +0000\r\n\r\nA relire.\r\n"),
    (("\\Deleted", "\\Seen"), datetime(2024, 3, 6, 12, tzinfo=UTC),
     "From: Labo <labo@carnet.test>\r\nTo: anne@carnet.test\r\nSubject: Ancien résultat\r\n"
     "Date: Wed, 06 Mar 2024 09:00:00 +0000\r\n\r\nA supprimer.\r\n".encode()),
]

CASES = [
    ("ALL", "1 2 3 4"),
    ("ANSWERED", "2"), ("UNANSWERED", "1 3 4"),
    ("DELETED", "4"), ("UNDELETED", "1 2 3"),
    ("DRAFT", "3"), ("UNDRAFT", "1 2 4"),
    ("FLAGGED", "3"), ("UNFLAGGED", "1 2 4"),
    ("SEEN", "2 4"), ("UNSEEN", "1 3"),
    ("KEYWORD $Urgent", "3"), ("KEYWORD $urgent", "3"), ("UNKEYWORD $Urgent", "1 2 4"),
    ("NEW", ""), ("RECENT", ""), ("OLD", "1 2 3 4"),
    ("FROM claire", "1"), ("FROM PETIT", "2"), ("TO claire", "3"), ("CC secretariat", "1"), ("BCC archives", "2"),
    ('SUBJECT "réunion"', "2"), ('SUBJECT "RÉSULTAT"', "4"), ('BODY "ferritine basse"', "1"), ("BODY brouillon", ""),
    ("TEXT brouillon", "3"), ('TEXT "hémoglobine"', "1"),
    ('HEADER X-Priority ""', "1"), ("HEADER X-Priority 1", "1"), ("HEADER Subject bilan", "1"),
    ("BEFORE 1-Feb-2024", "1"), ("ON 1-Feb-2024", "2"), ("SINCE 5-Mar-2024", "3 4"),
    ("SENTBEFORE 10-Jan-2024", "1"), ("SENTON 31-Jan-2024", "2"), ("SENTSINCE 6-Mar-2024", "4"),
    ("LARGER 1000", "2"), ("SMALLER 1000", "1 3 4"),
    ("UID 2:3", "2 3"), ("UID 3:*", "3 4"), ("2,4", "2 4"), ("*", "4"), ("3:*", "3 4"),
    ("NOT SEEN", "1 3"), ("OR FLAGGED DELETED", "3 4"), ("(SEEN UNDELETED)", "2"),
    ("NOT (OR SEEN FLAGGED)", "1"), ("SEEN NOT OR ANSWERED DELETED", ""),
    ("CHARSET UTF-8 SUBJECT Ancien", "4"), ("CHARSET US-ASCII FROM labo", "4"),
    ("MODSEQ 1", "1 2 3 4"),
]


@pytest.fixture
async def mailbox(imap: ImapEnv) -> ImapEnv:
    for flags, when, raw in MESSAGES:
        await imap.store.append(imap.mailbox_id, "INBOX", raw, flags, when)
    return imap


async def test_every_key(mailbox: ImapEnv) -> None:
    client = await RawClient.connect(mailbox)
    await client.command("s EXAMINE INBOX")
    wrong = []
    for n, (criteria, expected) in enumerate(CASES):
        lines = untagged(await client.command(f"t{n} SEARCH {criteria}"))
        got = lines[0].decode().removeprefix("* SEARCH").split("(MODSEQ")[0].strip() if lines else None
        if got != expected:
            wrong.append(f"SEARCH {criteria}: {got!r} instead of {expected!r}")
    assert not wrong, "\n".join(wrong)
    await client.close()


async def test_esearch_and_uid_search(mailbox: ImapEnv) -> None:
    client = await RawClient.connect(mailbox)
    await client.command("s SELECT INBOX")
    lines = untagged(await client.command("a UID SEARCH RETURN (MIN MAX COUNT ALL) UNFLAGGED"))
    assert lines == [b'* ESEARCH (TAG "a") UID MIN 1 MAX 4 COUNT 3 ALL 1:2,4\r\n']
    lines = untagged(await client.command("b SEARCH RETURN (MAX) FLAGGED"))
    assert lines == [b'* ESEARCH (TAG "b") MAX 3\r\n']
    lines = untagged(await client.command("c SEARCH RETURN (MIN) KEYWORD $Nothing"))
    assert lines == [b'* ESEARCH (TAG "c")\r\n']
    await client.command("d SEARCH RETURN (SAVE MIN) SEEN")  # RFC 5182 §2.4: only the MIN is saved
    lines = untagged(await client.command("e FETCH $ (UID)"))
    assert lines == [b"* 2 FETCH (UID 2)\r\n"]
    await client.command("u UNSELECT")
    await client.command("v ENABLE IMAP4rev2")
    await client.command("w SELECT INBOX")
    lines = untagged(await client.command("x SEARCH SEEN"))  # rev2: always ESEARCH (RFC 9051 §6.4.4)
    assert lines == [b'* ESEARCH (TAG "x") ALL 2,4\r\n']
    lines = untagged(await client.command("y UID SEARCH NOT ALL"))
    assert lines == [b'* ESEARCH (TAG "y") UID\r\n']
    await client.close()
