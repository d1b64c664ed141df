"""Change notifications: in-process fan-out on both backends, across processes (PostgreSQL LISTEN/NOTIFY) on
PostgreSQL only — on SQLite a second process's changes are in the database but are not announced."""

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from carnet.config import async_url
from carnet.db import Database
from carnet.mailbox import notify
from carnet.mailbox.api import FolderChange, MessageState
from carnet.mailbox.store import MailStore

MESSAGE = b"From: a@example.fr\r\nSubject: hello\r\n\r\nbody\r\n"


@pytest.fixture
async def other_node(db_url: str) -> AsyncIterator[MailStore]:
    """A second MailStore on its own Database (its own pool and listener), as another process would have."""
    database = Database(async_url(db_url))
    mail_store = MailStore(database)
    try:
        yield mail_store
    finally:
        await mail_store.close()
        await database.close()


async def next_change(watch: notify.FolderWatch) -> FolderChange:
    return await asyncio.wait_for(watch.__anext__(), 10.0)


async def test_every_local_watcher_gets_every_change(store: MailStore, account: int) -> None:
    inbox = (await store.get_folder(account, "INBOX")).id
    sent = (await store.get_folder(account, "Sent")).id
    first, second, elsewhere = store.watch(inbox), store.watch(inbox), store.watch(sent)
    async with first, second:
        appended = await store.append(account, "INBOX", MESSAGE, origin="session-1")
        update = await store.store_flags(inbox, [1], "add", ["\\Deleted"], origin="session-2")
        await store.expunge(inbox, origin="session-2")
        for watch in (first, second):
            added = await next_change(watch)
            assert (added.folder_id, added.added, added.origin) == (inbox, (1,), "session-1")
            assert (added.highestmodseq, added.uidnext) == (appended.modseq, 2)
            flagged = await next_change(watch)
            assert flagged.flags == update.changed and flagged.origin == "session-2"
            expunged = await next_change(watch)
            assert expunged.expunged == (1,) and expunged.highestmodseq == update.changed[0].modseq + 1
        assert elsewhere.pending() == []
    async for _change in first:  # a closed watch ends its iteration
        raise AssertionError("no change after close")
    elsewhere.close()


async def test_folder_operations_notify(store: MailStore, account: int) -> None:
    inbox = (await store.get_folder(account, "INBOX")).id
    archive = await store.create_folder(account, "Old")
    await store.append(account, "INBOX", MESSAGE)
    watch_inbox, watch_archive = store.watch(inbox), store.watch(archive.id)
    await store.copy(inbox, [1], archive.id, origin="s")
    assert (await next_change(watch_archive)).added == (1,)
    await store.move(inbox, [1], archive.id)
    assert (await next_change(watch_inbox)).expunged == (1,)
    assert (await next_change(watch_archive)).added == (2,)
    await store.delete_folder(account, "Old")
    gone = await next_change(watch_archive)
    assert gone.expunged == (1, 2)
    watch_inbox.close()
    watch_archive.close()


def test_slow_watchers_get_merged_changes() -> None:
    async def scenario() -> None:
        async def loader(*_args: int) -> FolderChange | None:
            return None

        notifier = notify.Notifier("sqlite", None, loader)
        watch = notify.FolderWatch(notifier, 5)
        for uid in range(1, notify.MAX_PENDING + 10):
            notifier.dispatch(FolderChange(5, uid + 1, uid + 1, added=(uid,),
                                           flags=(MessageState(1, uid + 1, frozenset({f"k{uid}"})),)))
        pending = watch.pending()
        assert len(pending) < notify.MAX_PENDING
        merged = notify.merge(pending)
        assert merged.added == tuple(range(1, notify.MAX_PENDING + 10))
        assert merged.flags == (MessageState(1, notify.MAX_PENDING + 10, frozenset({f"k{notify.MAX_PENDING + 9}"})),)
        assert merged.highestmodseq == notify.MAX_PENDING + 10
        watch.close()
        await notifier.close()

    asyncio.run(scenario())


def test_payloads_and_pointers() -> None:
    change = FolderChange(3, 10, 7, added=(5, 6), expunged=(2,),
                          flags=(MessageState(4, 9, frozenset({"\\Seen", "é"})),), origin="o")
    assert notify.decode(notify.encode("node", change, (8, 5))) == ("node", change, None)
    huge = FolderChange(3, 10_000, 7, flags=tuple(MessageState(uid, uid, frozenset({"$Label1", "\\Seen"}))
                                                   for uid in range(1, 2000)))
    payload = notify.encode("node", huge, (8, 5))
    assert len(payload.encode()) < 8000
    node, pointer_change, pointer = notify.decode(payload)
    assert (node, pointer, pointer_change.flags, pointer_change.highestmodseq) == ("node", (8, 5), (), 10_000)


async def test_changes_reach_another_node(store: MailStore, other_node: MailStore, account: int) -> None:
    """Two stores on two Database objects (two pools, two listeners), as two processes sharing the database."""
    inbox = (await store.get_folder(account, "INBOX")).id
    remote = other_node.watch(inbox)
    local = store.watch(inbox)
    await remote.ready()
    await local.ready()
    await other_node.append(account, "INBOX", MESSAGE, origin="remote-session")
    await store.append(account, "INBOX", MESSAGE + b"2")
    assert (await next_change(remote)).added == (1,)  # each node sees its own changes directly
    if store.dialect == "postgresql":
        heard = [await next_change(local), await next_change(local)]  # own change, and the other node's
        assert sorted((change.added, change.origin) for change in heard) == [((1,), "remote-session"), ((2,), "")]
        second = await next_change(remote)
        assert second.added == (2,) and second.highestmodseq == (await store.get_folder(account, "INBOX")).highestmodseq
    else:
        assert (await next_change(local)).added == (2,)
        await asyncio.sleep(0.3)
        assert remote.pending() == [] and local.pending() == []  # SQLite: no cross-process channel
    remote.close()
    local.close()


async def test_large_changes_travel_as_pointers(store: MailStore, other_node: MailStore, account: int) -> None:
    inbox = (await store.get_folder(account, "INBOX")).id
    for n in range(10):
        await store.append(account, "INBOX", MESSAGE + b"%d" % n)
    for _doubling in range(5):  # 320 messages
        await store.copy(inbox, [state.uid for state in await store.snapshot(inbox)], inbox)
    remote = other_node.watch(inbox)
    await remote.ready()
    update = await store.store_flags(inbox, list(range(1, 301)), "add", ["\\Seen", "$SomeRatherLongKeyword"])
    assert len(notify.encode(store.notifier.node, FolderChange(inbox, 0, 0, flags=update.changed), (0, 0))) < 8000
    if store.dialect == "postgresql":
        change = await next_change(remote)
        assert change.flags == update.changed and change.added == change.expunged == ()
    else:
        await asyncio.sleep(0.3)
        assert remote.pending() == []
    remote.close()


async def test_listener_reconnects_and_catches_up(store: MailStore, other_node: MailStore, account: int,
                                                  db_url: str) -> None:
    inbox = (await store.get_folder(account, "INBOX")).id
    remote = other_node.watch(inbox)
    await remote.ready()
    await store.append(account, "INBOX", MESSAGE)
    if store.dialect != "postgresql":
        await asyncio.sleep(0.3)
        assert remote.pending() == []
        remote.close()
        return
    assert (await next_change(remote)).added == (1,)
    connection = await asyncpg.connect(db_url)
    try:
        killed = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'")
    finally:
        await connection.close()
    assert killed == 1
    await store.append(account, "INBOX", MESSAGE + b"during the outage")
    await store.store_flags(inbox, [1], "add", ["\\Flagged"])
    seen_added: set[int] = set()
    seen_flags: set[int] = set()
    while not (2 in seen_added and 1 in seen_flags):
        change = await next_change(remote)
        seen_added.update(change.added)
        seen_flags.update(state.uid for state in change.flags)
    remote.close()


async def test_a_change_from_another_process(store: MailStore, account: int, db_url: str, tmp_path: Path) -> None:
    """A real second process appends; on PostgreSQL this process's watcher hears of it."""
    inbox = (await store.get_folder(account, "INBOX")).id
    watch = store.watch(inbox)
    await watch.ready()
    script = tmp_path / "append.py"
    script.write_text(textwrap.dedent("""
        import asyncio, sys
        from carnet.config import async_url
        from carnet.db import Database
        from carnet.mailbox.store import MailStore

        async def main() -> None:
            db = Database(async_url(sys.argv[1]))
            store = MailStore(db)
            result = await store.append(int(sys.argv[2]), "INBOX", b"Subject: from afar\\r\\n\\r\\nhi\\r\\n",
                                        origin="child")
            print(result.uid)
            await store.close()
            await db.close()

        asyncio.run(main())
    """))
    child = await asyncio.create_subprocess_exec(sys.executable, str(script), db_url, str(account),
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    assert out.strip() == b"1"
    assert [state.uid for state in await store.snapshot(inbox)] == [1]  # the data is shared on both backends
    if store.dialect == "postgresql":
        change = await next_change(watch)
        assert (change.added, change.origin) == ((1,), "child")
    else:
        await asyncio.sleep(0.3)
        assert watch.pending() == []
    watch.close()
