"""Updates from other sessions (RFC 9051 §7, §7.5.1; IDLE RFC 2177): one client idles or works while another
appends, stores and expunges; then the same across two server "processes" sharing a PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from carnet.config import Settings, async_url, load_settings
from carnet.db import Database

from .imaphelp import ImapEnv, RawClient, plain, second_server, start_env, tagged, untagged


async def _idle(client: RawClient, tag: str = "I1") -> None:
    client.send(f"{tag} IDLE\r\n")
    assert (await client.readline()).startswith(b"+ ")


async def _done(client: RawClient, tag: str = "I1") -> list[bytes]:
    client.send("DONE\r\n")
    return await client.until_tagged(tag)


async def _expect(client: RawClient, *wanted: bytes, wait: float = 10) -> list[bytes]:
    """Read untagged lines until every wanted line has been seen."""
    seen: list[bytes] = []
    missing = list(wanted)
    while missing:
        line = (await client.readline(wait)).rstrip(b"\r\n")
        seen.append(line)
        if line in missing:
            missing.remove(line)
    return seen


async def test_idle_sees_appends_flags_and_expunges(imap: ImapEnv) -> None:
    await imap.fill(3)
    watcher = await RawClient.connect(imap)
    actor = await RawClient.connect(imap)
    await watcher.command("s SELECT INBOX")
    await actor.command("s SELECT INBOX")
    await _idle(watcher)

    await actor.command(b"a APPEND INBOX {%d+}\r\n" % len(plain(7)) + plain(7))
    await _expect(watcher, b"* 4 EXISTS")
    await actor.command("b STORE 2 +FLAGS (\\Flagged)")
    await _expect(watcher, b"* 2 FETCH (UID 2 FLAGS (\\Flagged))")
    await actor.command("c STORE 1 +FLAGS.SILENT (\\Deleted)")
    await _expect(watcher, b"* 1 FETCH (UID 1 FLAGS (\\Deleted))")
    await actor.command("d EXPUNGE")
    await _expect(watcher, b"* 1 EXPUNGE")
    assert tagged(await _done(watcher)).startswith(b"I1 OK")

    # Nothing is left pending, and the sequence numbers agree.
    lines = await watcher.command("f FETCH 1:* (UID)")
    assert untagged(lines) == [b"* 1 FETCH (UID 2)\r\n", b"* 2 FETCH (UID 3)\r\n", b"* 3 FETCH (UID 4)\r\n"]
    await watcher.close()
    await actor.close()


async def test_expunge_is_held_back_during_fetch_store_and_search(imap: ImapEnv) -> None:
    """RFC 9051 §7.5.1: no EXPUNGE while answering FETCH, STORE or SEARCH; EXISTS and FETCH may come any time."""
    await imap.fill(4)
    client = await RawClient.connect(imap)
    other = await RawClient.connect(imap)
    await client.command("s SELECT INBOX")
    await client.command("f0 FETCH 1:* (FLAGS)")  # the sequence map is loaded
    await other.command("s SELECT INBOX")
    await other.command("x STORE 2 +FLAGS.SILENT (\\Deleted)")
    await other.command("y EXPUNGE")
    await other.command(b"z APPEND INBOX {%d+}\r\n" % len(plain(9)) + plain(9))

    lines = await client.command("f1 FETCH 1:* (UID FLAGS)")
    assert not any(line.endswith(b" EXPUNGE\r\n") for line in lines)
    assert b"* 5 EXISTS\r\n" in lines  # the new message is announced (a fifth sequence number)
    assert not any(line.startswith(b"* 2 FETCH") for line in lines)  # message 2 is gone but still numbered
    assert tagged(lines).startswith(b"f1 OK [EXPUNGEISSUED]")
    lines = await client.command("f2 STORE 3 +FLAGS (\\Seen)")
    assert untagged(lines) == [b"* 3 FETCH (FLAGS (\\Seen))\r\n"]
    lines = await client.command("f3 SEARCH ALL")
    assert untagged(lines) == [b"* SEARCH 1 3 4 5\r\n"]  # sequence numbers still count message 2
    lines = await client.command("f4 UID FETCH 3 (FLAGS)")  # a UID command may carry the EXPUNGE
    assert untagged(lines) == [b"* 3 FETCH (UID 3 FLAGS (\\Seen))\r\n", b"* 2 EXPUNGE\r\n"]
    lines = await client.command("f5 FETCH 1:* (UID)")
    assert untagged(lines) == [b"* %d FETCH (UID %d)\r\n" % (i, u) for i, u in enumerate((1, 3, 4, 5), 1)]
    await client.close()
    await other.close()


async def test_noop_delivers_pending_expunges_and_qresync_gets_vanished(imap: ImapEnv) -> None:
    await imap.fill(3)
    rev1 = await RawClient.connect(imap)
    qresync = await RawClient.connect(imap)
    await qresync.command("e ENABLE QRESYNC")
    await rev1.command("s SELECT INBOX")
    await qresync.command("s SELECT INBOX")
    folder = await imap.folder()
    await imap.store.store_flags(folder.id, [1, 3], "add", ["\\Deleted"])
    await imap.store.expunge(folder.id)
    await imap.store.store_flags(folder.id, [2], "add", ["\\Seen"])
    # Flag changes first, numbered as the client still knows them, then the expunges (each renumbering).
    assert untagged(await rev1.command("n NOOP")) == [
        b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n", b"* 1 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    lines = untagged(await qresync.command("n NOOP"))
    assert lines[0].startswith(b"* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (")  # QRESYNC implies CONDSTORE
    assert lines[1:] == [b"* VANISHED 1,3\r\n"]
    await rev1.close()
    await qresync.close()


async def test_changes_between_select_and_first_fetch(imap: ImapEnv) -> None:
    """The sequence map is loaded lazily; what happened between SELECT and then is reported, not lost."""
    await imap.fill(5)
    client = await RawClient.connect(imap)
    lines = await client.command("s SELECT INBOX")
    assert b"* 5 EXISTS\r\n" in lines
    folder = await imap.folder()
    await imap.store.store_flags(folder.id, [2], "add", ["\\Deleted"])
    await imap.store.expunge(folder.id)
    await imap.store.append(imap.mailbox_id, "INBOX", plain(50))
    lines = await client.command("f FETCH 5 (UID)")  # message 5 still exists for the client
    assert b"* 5 FETCH (UID 5)\r\n" in lines and b"* 6 EXISTS\r\n" in lines
    lines = untagged(await client.command("n NOOP"))
    assert lines == [b"* 2 EXPUNGE\r\n"]
    lines = untagged(await client.command("g FETCH 1:* (UID)"))
    assert lines == [b"* %d FETCH (UID %d)\r\n" % (i, u) for i, u in enumerate((1, 3, 4, 5, 6), 1)]
    await client.close()


async def test_idle_ends_on_done_or_bad_and_at_shutdown(imap: ImapEnv) -> None:
    client = await RawClient.connect(imap)
    await _idle(client, "I2")
    client.send("NOT-DONE\r\n")
    assert tagged(await client.until_tagged("I2")).startswith(b"I2 BAD")
    await client.command("s SELECT INBOX")
    await _idle(client, "I3")
    imap.server.close()
    assert (await client.readline()).startswith(b"* BYE [UNAVAILABLE]")
    await client.close()


# Two server processes on one PostgreSQL database ----------------------------------------------------------------

PG_SERVER = os.environ.get("CARNET_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/").rstrip("/")


async def _pg(statement: str) -> None:
    connection = await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database (cross-process notifications need PostgreSQL: SQLite has no channel)."""
    name = f"carnet_imap_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def pg_env(pg_url: str, tmp_path: object) -> AsyncIterator[tuple[ImapEnv, Settings]]:
    settings = load_settings(domain="carnet.test", data_dir=f"{tmp_path}/var", database_url=pg_url,
                             key_secret="test-key-encryption-secret", test_mode=True)
    db = Database(async_url(pg_url))
    try:
        async with start_env(db, settings) as env:
            yield env, settings
    finally:
        await db.close()


async def test_updates_across_two_servers_on_postgresql(pg_env: tuple[ImapEnv, Settings]) -> None:
    env, settings = pg_env
    await env.fill(2)
    other_db = Database(async_url(settings.database_url))  # another engine, another MailStore: another node
    try:
        async with second_server(env, other_db) as node2:
            watcher = await RawClient.connect(env)  # on server 1
            node2_env = ImapEnv(settings, env.db, env.store, node2, env.address, env.password, env.mailbox_id)
            actor = await RawClient.connect(node2_env)  # on server 2
            await watcher.command("s SELECT INBOX")
            await _idle(watcher)
            await actor.command("s SELECT INBOX")
            await actor.command(b"a APPEND INBOX {%d+}\r\n" % len(plain(5)) + plain(5))
            await _expect(watcher, b"* 3 EXISTS")
            await actor.command("b STORE 1 +FLAGS (\\Deleted \\Seen)")
            await _expect(watcher, b"* 1 FETCH (UID 1 FLAGS (\\Deleted \\Seen))")
            await actor.command("c EXPUNGE")
            await _expect(watcher, b"* 1 EXPUNGE")
            await _done(watcher)
            # And the other way round, without IDLE: NOOP on server 2 reports server 1's changes.
            await watcher.command("d STORE 1 +FLAGS (\\Answered)")
            await asyncio.sleep(0.5)
            lines = untagged(await actor.command("n NOOP"))
            assert lines == [b"* 1 FETCH (UID 2 FLAGS (\\Answered))\r\n"]
            await watcher.close()
            await actor.close()
    finally:
        await other_db.close()
