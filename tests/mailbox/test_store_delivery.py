"""Batched SMTP delivery (``MailStore.deliver_many``) on both backends: idempotency within and across batches, one
blob for a message to several mailboxes, per-delivery refusals (quota, folder, size, key) that leave the others
delivered, one notification per folder, and UID allocation when two processes deliver into one folder at once."""

import asyncio

import pytest
from sqlalchemy import func, select, text
from storehelp import new_mailbox

from carnet.config import async_url
from carnet.db import Database
from carnet.mailbox import models
from carnet.mailbox.api import (
    AppendResult,
    Delivery,
    MessageTooLarge,
    NoSuchFolder,
    QuotaExceeded,
    StoreError,
)
from carnet.mailbox.store import MAX_MESSAGE_SIZE, MailStore


def message(n: int, padding: int = 0) -> bytes:
    return (b"From: Laboratoire <labo@carnet.test>\r\nTo: lea@carnet.test\r\nSubject: Resultat %d\r\n"
            b"Message-ID: <%d@carnet.test>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\n\r\nBody %d\r\n%s"
            % (n, n, n, b"x" * padding))


async def count(db: Database, table: str) -> int:
    async with db.session() as session:
        return int((await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())  # noqa: S608


async def test_duplicate_keys_in_and_across_batches(db: Database, store: MailStore) -> None:
    mailbox_id = await new_mailbox(db, 1)  # no account yet: the batch creates it
    async with db.transaction() as session:
        results = await store.deliver_many(session, [
            Delivery(mailbox_id, message(1), "key-1", signature={"status": "valid"}),
            Delivery(mailbox_id, message(1), "key-1"),  # the same delivery again in the batch
            Delivery(mailbox_id, message(2), "key-2"),
        ])
    first, again, second = results
    assert isinstance(first, AppendResult) and isinstance(second, AppendResult) and again is None
    assert (first.uid, second.uid) == (1, 2) and second.modseq == first.modseq + 1
    async with db.transaction() as session:  # a retried transaction: both keys known, nothing written
        assert await store.deliver_many(session, [Delivery(mailbox_id, message(2), "key-2"),
                                                  Delivery(mailbox_id, message(1), "key-1")]) == [None, None]
    inbox = await store.get_folder(mailbox_id, "INBOX")
    assert (inbox.messages, inbox.unseen, inbox.uidnext) == (2, 2, 3)
    assert inbox.highestmodseq == second.modseq
    assert inbox.size == len(message(1)) + len(message(2)) == (await store.quota(mailbox_id))[0]
    assert await count(db, "mbx_delivery_keys") == 2
    [summary] = await store.summaries(inbox.id, [1])
    assert summary.signature == {"status": "valid"} and summary.flags == frozenset()
    assert summary.subject == "Resultat 1"


async def test_one_message_to_several_mailboxes_is_one_blob(db: Database, store: MailStore) -> None:
    mailboxes = [await new_mailbox(db, n) for n in range(1, 5)]
    raw = message(7)
    async with db.transaction() as session:
        results = await store.deliver_many(session, [Delivery(mailbox_id, raw, "k") for mailbox_id in mailboxes])
    assert all(isinstance(result, AppendResult) and result.uid == 1 for result in results)
    assert len({result.folder_id for result in results if isinstance(result, AppendResult)}) == 4
    async with db.session() as session:
        refcounts = (await session.execute(select(models.Blob.refcount))).scalars().all()
    assert refcounts == [4]
    assert await count(db, "mbx_analyses") == 1
    # Expunging one copy keeps the blob for the others; the last reference takes it away.
    for result in results:
        assert isinstance(result, AppendResult)
        await store.store_flags(result.folder_id, [1], "add", ["\\Deleted"])
        await store.expunge(result.folder_id)
    assert await count(db, "mbx_blobs") == await count(db, "mbx_analyses") == await count(db, "mbx_header_fields") == 0


async def test_over_quota_recipient_is_refused_alone(db: Database, store: MailStore) -> None:
    full, fine = await new_mailbox(db, 1), await new_mailbox(db, 2)
    await store.ensure_account(full)
    await store.set_quota(full, len(message(1)) + len(message(3)))
    before = await count(db, "mbx_blobs")
    async with db.transaction() as session:
        results = await store.deliver_many(session, [
            Delivery(full, message(1), "a"),
            Delivery(fine, message(1), "a"),
            Delivery(full, message(2, padding=100), "b"),  # does not fit after the first
            Delivery(full, message(3), "c"),  # fits, as it would after a refused delivery
            Delivery(fine, message(2, padding=100), "b"),
        ])
    assert isinstance(results[2], QuotaExceeded)
    assert all(isinstance(results[index], AppendResult) for index in (0, 1, 3, 4))
    assert [r.uid for r in results if isinstance(r, AppendResult) and r.folder_id == results[0].folder_id] == [1, 2]
    assert await store.quota(full) == (len(message(1)) + len(message(3)),) * 2
    assert (await store.get_folder(fine, "INBOX")).messages == 2
    assert await count(db, "mbx_blobs") == before + 3
    async with db.session() as session:  # the refused delivery's key was not recorded
        keys = (await session.execute(select(models.DeliveryKey.key).where(models.DeliveryKey.mailbox_id == full)
                                      .order_by(models.DeliveryKey.key))).scalars().all()
    assert keys == ["a", "c"]
    await store.set_quota(full, None)
    async with db.transaction() as session:  # so it can be delivered later
        [later] = await store.deliver_many(session, [Delivery(full, message(2, padding=100), "b")])
    assert isinstance(later, AppendResult) and later.uid == 3


async def test_refusals_leave_the_others_and_the_transaction_usable(db: Database, store: MailStore) -> None:
    mailbox_id = await new_mailbox(db, 1)
    async with db.transaction() as session:
        results = await store.deliver_many(session, [
            Delivery(mailbox_id, message(1), "k1", folder="Nope"),
            Delivery(mailbox_id, message(2), ""),
            Delivery(mailbox_id, b"x" * (MAX_MESSAGE_SIZE + 1), "k3"),
            Delivery(mailbox_id, message(4), "k4", folder="inbox"),
            Delivery(mailbox_id, message(5), "k5", folder="Archive"),
        ])
        assert isinstance(results[0], NoSuchFolder)
        assert type(results[1]) is StoreError and "delivery key" in str(results[1])
        assert isinstance(results[2], MessageTooLarge)
        assert isinstance(results[3], AppendResult) and isinstance(results[4], AppendResult)
        with pytest.raises(NoSuchFolder):  # the one-delivery form raises
            await store.deliver_in(session, mailbox_id, message(1), folder="Nope", delivery_key="k1")
        assert await store.deliver_in(session, mailbox_id, message(6), delivery_key="k6") is not None
    assert (await store.get_folder(mailbox_id, "INBOX")).messages == 2
    assert (await store.get_folder(mailbox_id, "Archive")).messages == 1
    assert await count(db, "mbx_delivery_keys") == 3


async def test_one_change_per_folder_after_commit(db: Database, store: MailStore) -> None:
    first, second = await new_mailbox(db, 1), await new_mailbox(db, 2)
    for mailbox_id in (first, second):
        await store.ensure_account(mailbox_id)
    inbox = await store.get_folder(first, "INBOX")
    other = await store.get_folder(second, "INBOX")
    watches = [store.watch(inbox.id), store.watch(other.id)]
    async with db.transaction() as session:
        await store.deliver_many(session, [Delivery(first, message(n), f"k{n}") for n in range(3)]
                                 + [Delivery(second, message(9), "k9")])
        assert [watch.pending() for watch in watches] == [[], []]  # nothing before the commit
    [change] = watches[0].pending()
    assert (change.folder_id, change.added, change.uidnext) == (inbox.id, (1, 2, 3), 4)
    assert change.highestmodseq == inbox.highestmodseq + 3
    [change] = watches[1].pending()
    assert change.added == (1,)

    class Abort(Exception):
        pass

    with pytest.raises(Abort):  # rolled back: no change, nothing written
        async with db.transaction() as session:
            await store.deliver_many(session, [Delivery(first, message(5), "k5")])
            raise Abort
    assert watches[0].pending() == [] and (await store.get_folder(first, "INBOX")).messages == 3
    for watch in watches:
        watch.close()


async def test_concurrent_batches_into_one_folder(db: Database, db_url: str, store: MailStore) -> None:
    """Two processes (two Database objects) deliver batches into the same folders at once: every UID and MODSEQ
    distinct, counters and quota exact."""
    first, second = await new_mailbox(db, 1), await new_mailbox(db, 2)
    for mailbox_id in (first, second):
        await store.ensure_account(mailbox_id)
    other_db = Database(async_url(db_url))
    other = MailStore(other_db)

    async def batch(node: MailStore, database: Database, tag: int) -> list[AppendResult | StoreError | None]:
        out: list[AppendResult | StoreError | None] = []
        for round_ in range(5):
            async with database.transaction() as session:
                deliveries = [Delivery(mailbox_id, message(tag * 1000 + round_ * 10 + n), f"{tag}-{round_}-{n}")
                              for n in range(4) for mailbox_id in (second, first)]
                out.extend(await node.deliver_many(session, deliveries))
        return out

    try:
        results = [*await asyncio.gather(batch(store, db, 1), batch(other, other_db, 2))]
    finally:
        await other.close()
        await other_db.close()
    delivered = [result for outcome in results for result in outcome]
    assert all(isinstance(result, AppendResult) for result in delivered)
    for mailbox_id in (first, second):
        folder = await store.get_folder(mailbox_id, "INBOX")
        mine = [r for r in delivered if isinstance(r, AppendResult) and r.folder_id == folder.id]
        assert sorted(r.uid for r in mine) == list(range(1, 41))
        assert len({r.modseq for r in mine}) == 40
        assert (folder.messages, folder.unseen, folder.uidnext) == (40, 40, 41)
        async with db.session() as session:
            size = (await session.execute(select(func.sum(models.Message.size))
                                          .where(models.Message.folder_id == folder.id))).scalar()
        assert folder.size == size == (await store.quota(mailbox_id))[0]
