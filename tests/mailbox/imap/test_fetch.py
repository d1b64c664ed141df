"""FETCH (RFC 9051 §6.4.5): batches, sections of nested messages, partials, BINARY, the implicit \\Seen, read-only
mailboxes, UID FETCH of missing UIDs, CHANGEDSINCE."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from carnet.config import Settings
from carnet.db import Database
from carnet.mailbox.imap import ImapLimits

from .imaphelp import ImapEnv, RawClient, plain, start_env, tagged, untagged

FORWARDED = (
    b"From: Anne Martin <anne.martin@carnet.test>\r\nTo: Paul <paul@carnet.test>\r\nSubject: Fwd: bilan\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="out"\r\n\r\n'
    b"--out\r\nContent-Type: text/plain\r\n\r\nVoir ci-dessous.\r\n"
    b"--out\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: Labo <labo@carnet.test>\r\nSubject: bilan\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nH=E9moglobine normale.\r\n"
    b"--out\r\nContent-Type: application/x-thing\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
    b"--out--\r\n"
)


@pytest.fixture
async def batched(db: Database, settings: Settings) -> AsyncIterator[ImapEnv]:
    async with start_env(db, settings, limits=ImapLimits(fetch_batch=7)) as env:
        yield env


async def test_batches_and_implicit_seen(batched: ImapEnv) -> None:
    for i in range(20):
        await batched.store.append(batched.mailbox_id, "INBOX", plain(i), ["\\Seen"] if i % 2 else [])
    client = await RawClient.connect(batched)
    await client.command("s SELECT INBOX")
    lines = untagged(await client.command("a FETCH 1:* (UID RFC822.SIZE)"))
    assert [line.split(b" ")[1] for line in lines] == [str(n).encode() for n in range(1, 21)]
    # BODY[TEXT] sets \Seen on the unseen ones and reports FLAGS for them only (they changed).
    lines = untagged(await client.command("b FETCH 1:4 (BODY[TEXT]<0.7>)"))
    assert lines[0] == b"* 1 FETCH (BODY[TEXT]<0> {7}\r\nBonjour FLAGS (\\Seen))\r\n"
    assert lines[1] == b"* 2 FETCH (BODY[TEXT]<0> {7}\r\nBonjour)\r\n"
    assert all("\\Seen" in s.flags for s in (await batched.states())[:4])
    # RFC822.HEADER and BODY.PEEK do not set it; RFC822 and RFC822.TEXT do.
    await client.command("c FETCH 5 (RFC822.HEADER BODY.PEEK[])")
    assert "\\Seen" not in (await batched.states())[4].flags
    lines = untagged(await client.command("d FETCH 5 RFC822.TEXT"))
    assert lines[0].endswith(b" FLAGS (\\Seen))\r\n")
    lines = untagged(await client.command("e UID FETCH 7 (RFC822)"))
    assert lines[0].startswith(b"* 7 FETCH (UID 7 RFC822 {") and lines[0].endswith(b" FLAGS (\\Seen))\r\n")
    # In a read-only mailbox nothing changes.
    await client.command("f EXAMINE INBOX")
    await client.command("g FETCH 9 BODY[]")
    assert "\\Seen" not in (await batched.states())[8].flags
    await client.close()


async def test_sections_of_an_encapsulated_message(imap: ImapEnv) -> None:
    await imap.store.append(imap.mailbox_id, "INBOX", FORWARDED)
    client = await RawClient.connect(imap)
    await client.command("s EXAMINE INBOX")
    lines = untagged(await client.command("a FETCH 1 (BODY[2.HEADER] BODY[2.TEXT] BODY[2.1] BODY[2.MIME])"))
    assert lines == [
        b"* 1 FETCH (BODY[2.HEADER] {140}\r\nFrom: Labo <labo@carnet.test>\r\nSubject: bilan\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b" BODY[2.TEXT] {22}\r\nH=E9moglobine normale. BODY[2.1] {22}\r\nH=E9moglobine normale."  # the CRLF
        b" BODY[2.MIME] {32}\r\nContent-Type: message/rfc822\r\n\r\n)\r\n"]
    lines = untagged(await client.command("b FETCH 1 (BINARY[2.1] BINARY.SIZE[2.1] BODY[2.HEADER.FIELDS (SUBJECT)])"))
    assert lines == [b"* 1 FETCH (BINARY[2.1] {20}\r\nH\xe9moglobine normale. BINARY.SIZE[2.1] 20 "
                     b"BODY[2.HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: bilan\r\n\r\n)\r\n"]
    lines = await client.command("c FETCH 1 BINARY[3]")
    assert tagged(lines).startswith(b"c NO [UNKNOWN-CTE]")  # RFC 3516 §4.3
    lines = untagged(await client.command("d FETCH 1 (BODY[1.HEADER] BODY[9] BODY[TEXT]<5000.10>)"))
    assert lines == [b'* 1 FETCH (BODY[1.HEADER] NIL BODY[9] NIL BODY[TEXT]<5000> {0}\r\n)\r\n']
    lines = untagged(await client.command("e FETCH 1 (BODY[HEADER.FIELDS (X-NONE)])"))
    assert lines == [b"* 1 FETCH (BODY[HEADER.FIELDS (X-NONE)] {2}\r\n\r\n)\r\n"]
    await client.close()


async def test_uid_fetch_ignores_missing_uids_and_changedsince(imap: ImapEnv) -> None:
    await imap.fill(4)
    client = await RawClient.connect(imap)
    await client.command("s SELECT INBOX")
    lines = untagged(await client.command("a UID FETCH 3:10,40 (FLAGS)"))
    assert lines == [b"* 3 FETCH (UID 3 FLAGS ())\r\n", b"* 4 FETCH (UID 4 FLAGS ())\r\n"]
    lines = await client.command("b UID FETCH 100:* (FLAGS)")  # "*" is the highest UID: 100:* means 4:100
    assert untagged(lines) == [b"* 4 FETCH (UID 4 FLAGS ())\r\n"]
    folder = await imap.folder()
    await client.command("c STORE 2 +FLAGS (\\Answered)")
    lines = untagged(await client.command(f"d FETCH 1:* (FLAGS) (CHANGEDSINCE {folder.highestmodseq})"))
    assert len(lines) == 1 and lines[0].startswith(b"* 2 FETCH (FLAGS (\\Answered) MODSEQ (")
    await client.command("e UID STORE 3 +FLAGS (\\Seen)")  # CONDSTORE is now enabled: UID and MODSEQ
    lines = untagged(await client.command("f STORE 2 -FLAGS (\\Answered)"))
    assert lines[0].startswith(b"* 2 FETCH (UID 2 FLAGS () MODSEQ (")
    await client.close()


async def test_fetch_of_many_messages_streams_in_order(imap: ImapEnv) -> None:
    for i in range(150):
        await imap.store.append(imap.mailbox_id, "INBOX", plain(i))
    client = await RawClient.connect(imap)
    await client.command("s SELECT INBOX")
    lines = untagged(await client.command(
        "a FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)", wait=60))
    assert len(lines) == 150
    assert all(line.startswith(b"* %d FETCH (UID %d FLAGS () RFC822.SIZE " % (i, i)) for i, line in
               enumerate(lines, 1))
    lines = untagged(await client.command("b FETCH 1:150 BODY.PEEK[]", wait=60))
    assert [line.split(b"\r\n", 1)[1].startswith(b"From: Paul Petit") for line in lines] == [True] * 150
    await client.close()
