"""APPEND (RFC 9051 §6.3.12): synchronising and non-synchronising literals (LITERAL+ / LITERAL-, RFC 7888),
literal8 (RFC 3516), UTF8 data (RFC 6855), flags and internal date, APPENDUID (RFC 4315), EXISTS for the selected
mailbox, refusals that store nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from .imaphelp import ImapEnv, RawClient, plain, tagged, untagged


async def test_literal_kinds_flags_and_dates(imap: ImapEnv) -> None:
    client = await RawClient.connect(imap)
    folder = await imap.folder()
    message = plain(1)
    lines = await client.command(b"a APPEND INBOX (\\Seen $Forwarded) \"14-Jul-2024 10:30:00 +0200\" {%d}\r\n"
                                 % len(message) + message)
    assert lines[0] == b"+ Ready for literal data\r\n"
    assert tagged(lines) == b"a OK [APPENDUID %d 1] APPEND completed\r\n" % folder.uidvalidity
    lines = await client.command(b"b APPEND INBOX {%d+}\r\n" % len(message) + message)
    assert untagged(lines) == [] and b"APPENDUID" in tagged(lines) and not lines[0].startswith(b"+")
    lines = await client.command(b"c APPEND INBOX {%d-}\r\n" % len(message) + message)
    assert tagged(lines).startswith(b"c OK [APPENDUID ")
    with_nul = (b"Subject: binary\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: binary\r\n\r\nzero\x00byte\r\n")
    lines = await client.command(b"d APPEND INBOX ~{%d+}\r\n" % len(with_nul) + with_nul)
    assert tagged(lines).startswith(b"d OK [APPENDUID ")
    lines = await client.command(b"e APPEND INBOX {%d+}\r\n" % len(with_nul) + with_nul)
    assert tagged(lines).startswith(b"e BAD NUL is not allowed in a literal")
    summaries = await imap.store.summaries(folder.id, [1, 2, 3, 4])
    assert summaries[0].flags == frozenset({"\\Seen", "$Forwarded"})
    assert summaries[0].internal_date == datetime(2024, 7, 14, 8, 30, tzinfo=UTC)
    assert len(summaries) == 4 and await imap.store.raw(summaries[3].blob_id) == with_nul
    await client.close()


async def test_utf8_append_and_refusals(imap: ImapEnv) -> None:
    client = await RawClient.connect(imap)
    message = plain(2, subject="Résultat")
    lines = await client.command(b"a APPEND INBOX UTF8 (~{%d+}\r\n" % len(message) + message + b")")
    assert tagged(lines).startswith(b"a BAD UTF8 APPEND data needs ENABLE UTF8=ACCEPT")
    await client.command("e ENABLE UTF8=ACCEPT")
    lines = await client.command(b"b APPEND INBOX UTF8 (~{%d+}\r\n" % len(message) + message + b")")
    assert tagged(lines).startswith(b"b OK [APPENDUID ")
    lines = await client.command(b"c APPEND INBOX {0+}\r\n")
    assert tagged(lines).startswith(b"c NO [CANNOT]")
    lines = await client.command(b"d APPEND Nowhere {5+}\r\nhello")
    assert tagged(lines).startswith(b"d NO [TRYCREATE]")
    lines = await client.command(b"f APPEND INBOX (\\Seen) {5+}\r\nhello {5+}\r\nworld")
    assert tagged(lines).startswith(b"f BAD MULTIAPPEND is not supported")
    states = await imap.states()
    assert len(states) == 1
    await client.close()


async def test_append_to_the_selected_mailbox_announces_it(imap: ImapEnv) -> None:
    await imap.fill(2)
    client = await RawClient.connect(imap)
    await client.command("s SELECT INBOX")
    message = plain(3)
    lines = await client.command(b"a APPEND INBOX {%d+}\r\n" % len(message) + message)
    assert untagged(lines) == [b"* 3 EXISTS\r\n"]  # in the APPEND's own answer
    lines = await client.command(b"b APPEND Sent {%d+}\r\n" % len(message) + message)
    assert untagged(lines) == []
    lines = untagged(await client.command("c FETCH 3 (UID)"))
    assert lines == [b"* 3 FETCH (UID 3)\r\n"]
    await client.close()
