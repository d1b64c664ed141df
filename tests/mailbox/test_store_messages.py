"""Messages on both backends: append, summaries, parts, flags with MODSEQ, copy, move, expunge, quota, deliveries,
blob sharing, and UID allocation under concurrency."""

import asyncio
import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text
from storehelp import new_mailbox

from carnet.db import Database
from carnet.mailbox import models
from carnet.mailbox.api import (
    FolderChange,
    InvalidFlag,
    MessageTooLarge,
    NoSuchFolder,
    NoSuchMessage,
    QuotaExceeded,
    SearchKey,
    StoreError,
)
from carnet.mailbox.store import MAX_MESSAGE_SIZE, MailStore


def message(n: int, extra: bytes = b"") -> bytes:
    return (b"From: Dr Anne Martin <anne.martin@carnet.test>\r\nTo: lea@carnet.test\r\n"
            b"Subject: Compte rendu %d\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\n\r\nBody %d\r\n%s" % (n, n, extra))


async def table_counts(db: Database) -> dict[str, int]:
    counts = {}
    async with db.session() as session:
        for table in ("mbx_messages", "mbx_blobs", "mbx_analyses", "mbx_header_fields", "mbx_expunged",
                      "mbx_delivery_keys", "mbx_folders"):
            counts[table] = (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608
    return counts


async def test_append_and_read_back(store: MailStore, account: int) -> None:
    inbox = await store.get_folder(account, "INBOX")
    when = datetime(2026, 3, 2, 10, 15, 30, 123456, tzinfo=timezone(timedelta(hours=1)))
    signature = {"status": "valid", "signer": "anne.martin@carnet.test"}
    result = await store.append(account, "inbox", message(1), ["\\seen", "$Forwarded", "\\Recent"], when,
                                signature=signature)
    assert (result.folder_id, result.uidvalidity, result.uid, result.modseq) == (
        inbox.id, inbox.uidvalidity, 1, inbox.highestmodseq + 1)
    folder = await store.get_folder(account, "INBOX")
    assert (folder.messages, folder.unseen, folder.uidnext, folder.size, folder.highestmodseq) == (
        1, 0, 2, len(message(1)), result.modseq)
    [summary] = await store.summaries(inbox.id, [1, 2, 3])
    assert summary.flags == frozenset({"\\Seen", "$Forwarded"})  # \Recent is not storable (RFC 3501 §2.3.2)
    assert summary.internal_date == datetime(2026, 3, 2, 9, 15, 30, tzinfo=UTC)
    assert summary.size == len(message(1)) and summary.signature == signature
    assert summary.envelope.startswith(b'("Mon, 2 Mar 2026 10:00:00 +0100" "Compte rendu 1" ')
    assert summary.bodystructure == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 8 1 NIL NIL NIL NIL)'
    assert summary.body == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 8 1)'
    assert (summary.subject, summary.from_name, summary.from_address) == (
        "Compte rendu 1", "Dr Anne Martin", "anne.martin@carnet.test")
    assert summary.sent_date == datetime(2026, 3, 2, 9, 0, tzinfo=UTC) and not summary.has_attachments
    raw = await store.raw(summary.blob_id)
    assert raw == message(1)
    assert await store.message_blob(inbox.id, 1) == summary.blob_id
    parts = await store.parts(inbox.id, 1)
    assert [p.section for p in parts] == ["", "1"] and raw[parts[1].header_end: parts[1].body_end] == b"Body 1\r\n"
    with pytest.raises(NoSuchMessage):
        await store.parts(inbox.id, 99)
    with pytest.raises(NoSuchMessage):
        await store.raw("0" * 64)
    with pytest.raises(NoSuchMessage):
        await store.message_blob(inbox.id, 99)
    assert await store.summaries(inbox.id, []) == []


async def test_refused_appends_write_nothing(db: Database, store: MailStore, account: int) -> None:
    await store.append(account, "INBOX", message(1))
    before = await table_counts(db)
    with pytest.raises(NoSuchFolder):
        await store.append(account, "Nope", message(2))
    with pytest.raises(InvalidFlag, match="invalid flag"):
        await store.append(account, "INBOX", message(2), ["\\Unknown"])
    with pytest.raises(InvalidFlag):
        await store.append(account, "INBOX", message(2), ["bad(keyword"])
    with pytest.raises(MessageTooLarge):
        await store.append(account, "INBOX", b"x" * (MAX_MESSAGE_SIZE + 1))
    with pytest.raises(StoreError, match="time zone"):
        await store.append(account, "INBOX", message(2), internal_date=datetime(2026, 1, 1))
    await store.set_quota(account, len(message(1)) + 10)
    with pytest.raises(QuotaExceeded):
        await store.append(account, "INBOX", message(2))
    assert await table_counts(db) == before
    assert (await store.get_folder(account, "INBOX")).uidnext == 2  # no UID was consumed
    assert await store.quota(account) == (len(message(1)), len(message(1)) + 10)
    await store.set_quota(account, None)
    assert (await store.quota(account))[1] == 2 * 1024**3
    with pytest.raises(StoreError):
        await store.set_quota(account, -1)


async def test_flags_modseq_and_unchangedsince(store: MailStore, account: int) -> None:
    inbox = (await store.get_folder(account, "INBOX")).id
    for n in range(1, 5):
        await store.append(account, "INBOX", message(n))
    start = (await store.get_folder(account, "INBOX")).highestmodseq
    update = await store.store_flags(inbox, [1, 2, 3, 99], "add", ["\\Seen", "$Label1"])
    assert [(s.uid, s.modseq) for s in update.changed] == [(1, start + 1), (2, start + 2), (3, start + 3)]
    assert all(s.flags == frozenset({"\\Seen", "$Label1"}) for s in update.changed)
    again = await store.store_flags(inbox, [1], "add", ["\\SEEN", "$label1"])  # keywords are case-insensitive
    assert again.changed == () and [s.uid for s in again.unchanged] == [1]
    removed = await store.store_flags(inbox, [2], "remove", ["$LABEL1"])
    assert removed.changed[0].flags == frozenset({"\\Seen"})
    replaced = await store.store_flags(inbox, [3], "replace", ["\\Flagged", "\\Deleted"])
    assert replaced.changed[0].flags == frozenset({"\\Flagged", "\\Deleted"})
    folder = await store.get_folder(account, "INBOX")
    assert (folder.unseen, folder.deleted, folder.highestmodseq) == (2, 1, start + 5)
    # RFC 7162 §3.1.3: messages modified after UNCHANGEDSINCE fail, the others are changed.
    conditional = await store.store_flags(inbox, [1, 4], "add", ["\\Answered"], unchanged_since=start)
    assert conditional.failed_uids == (1,) and [s.uid for s in conditional.changed] == [4]
    snapshot = await store.snapshot(inbox)
    assert [(s.uid, s.modseq) for s in snapshot] == [(1, start + 1), (2, start + 4), (3, start + 5), (4, start + 6)]
    changes = await store.changes_since(inbox, start + 3)
    assert [s.uid for s in changes.changed] == [2, 3, 4] and changes.vanished == ()
    assert changes.highestmodseq == start + 6
    with pytest.raises(StoreError, match="unknown STORE mode"):
        await store.store_flags(inbox, [1], "toggle", ["\\Seen"])
    with pytest.raises(InvalidFlag):
        await store.store_flags(inbox, [1], "add", ["\\Bogus"])
    with pytest.raises(NoSuchFolder):
        await store.store_flags(999_999, [1], "add", ["\\Seen"])
    with pytest.raises(NoSuchFolder):
        await store.changes_since(999_999, 0)


async def test_first_unseen_and_snapshot(store: MailStore, account: int) -> None:
    inbox = (await store.get_folder(account, "INBOX")).id
    assert await store.snapshot(inbox) == []
    assert await store.count_before_first_unseen(inbox) is None
    for n in range(1, 6):
        await store.append(account, "INBOX", message(n), ["\\Seen"] if n in (1, 2, 4) else [])
    assert await store.count_before_first_unseen(inbox) == 3
    await store.store_flags(inbox, [1, 2], "add", ["\\Deleted"])
    await store.expunge(inbox)
    assert await store.count_before_first_unseen(inbox) == 1  # sequence numbers shift after EXPUNGE
    await store.store_flags(inbox, [3, 5], "add", ["\\Seen"])
    assert await store.count_before_first_unseen(inbox) is None
    with pytest.raises(NoSuchFolder):
        await store.snapshot(999_999)


async def test_copy_shares_blobs_and_charges_quota(db: Database, store: MailStore, account: int) -> None:
    inbox = await store.get_folder(account, "INBOX")
    archive = await store.get_folder(account, "Archive")
    await store.append(account, "INBOX", message(1), ["\\Seen", "Important"], signature={"status": "valid"})
    await store.append(account, "INBOX", message(2), ["\\Deleted"])
    result = await store.copy(inbox.id, [2, 1, 42], archive.id)
    assert (result.uidvalidity, result.source_uids, result.dest_uids) == (archive.uidvalidity, (1, 2), (1, 2))
    copied = await store.summaries(archive.id, [1, 2])
    assert copied[0].flags == frozenset({"\\Seen", "Important"}) and copied[0].signature == {"status": "valid"}
    assert copied[1].flags == frozenset({"\\Deleted"})
    target = await store.get_folder(account, "Archive")
    assert (target.messages, target.unseen, target.deleted, target.uidnext) == (2, 1, 1, 3)
    counts = await table_counts(db)
    assert (counts["mbx_messages"], counts["mbx_blobs"], counts["mbx_analyses"]) == (4, 2, 2)  # stored once
    async with db.session() as session:
        refcounts = sorted((await session.execute(select(models.Blob.refcount))).scalars())
    assert refcounts == [2, 2]
    assert (await store.quota(account))[0] == 2 * (len(message(1)) + len(message(2)))
    assert (await store.copy(inbox.id, [7], archive.id)).dest_uids == ()
    # Over quota: nothing is copied.
    await store.set_quota(account, (await store.quota(account))[0] + 10)
    before = await table_counts(db)
    with pytest.raises(QuotaExceeded):
        await store.copy(inbox.id, [1], archive.id)
    assert await table_counts(db) == before
    with pytest.raises(NoSuchFolder):
        await store.copy(inbox.id, [1], 999_999)


async def test_move_and_expunge_leave_tombstones(db: Database, store: MailStore, account: int) -> None:
    inbox = await store.get_folder(account, "INBOX")
    trash = await store.get_folder(account, "Trash")
    for n in range(1, 5):
        await store.append(account, "INBOX", message(n), ["\\Seen"] if n == 1 else [])
    before_move = (await store.get_folder(account, "INBOX")).highestmodseq
    moved = await store.move(inbox.id, [1, 3], trash.id)  # RFC 6851
    assert (moved.uidvalidity, moved.source_uids, moved.dest_uids) == (trash.uidvalidity, (1, 3), (1, 2))
    source = await store.get_folder(account, "INBOX")
    dest = await store.get_folder(account, "Trash")
    assert (source.messages, source.unseen, dest.messages, dest.unseen) == (2, 2, 2, 1)
    assert (await store.changes_since(inbox.id, before_move)).vanished == (1, 3)
    assert [s.uid for s in await store.snapshot(trash.id)] == [1, 2]
    assert (await table_counts(db))["mbx_blobs"] == 4
    # EXPUNGE removes only \Deleted messages (and, with UIDs, only those: UID EXPUNGE, RFC 9051 §6.4.9).
    await store.store_flags(inbox.id, [2, 4], "add", ["\\Deleted"])
    assert await store.expunge(inbox.id, [4, 99]) == [4]
    assert await store.expunge(inbox.id) == [2]
    assert await store.expunge(inbox.id) == []
    folder = await store.get_folder(account, "INBOX")
    assert (folder.messages, folder.unseen, folder.deleted, folder.size) == (0, 0, 0, 0)
    changes = await store.changes_since(inbox.id, before_move)
    assert changes.vanished == (1, 2, 3, 4) and changes.highestmodseq == folder.highestmodseq
    assert (await table_counts(db))["mbx_blobs"] == 2  # the moved messages keep theirs
    assert (await store.quota(account))[0] == len(message(1)) + len(message(3))
    # Within one folder a MOVE gives new UIDs.
    within = await store.move(trash.id, [1], trash.id)
    assert within.dest_uids == (3,) and [s.uid for s in await store.snapshot(trash.id)] == [2, 3]


async def test_expunge_releases_shared_blobs_last(db: Database, store: MailStore, account: int) -> None:
    inbox = await store.get_folder(account, "INBOX")
    await store.append(account, "INBOX", message(1))
    await store.append(account, "INBOX", message(1))  # same octets: same blob
    await store.store_flags(inbox.id, [1], "add", ["\\Deleted"])
    await store.expunge(inbox.id)
    assert (await table_counts(db))["mbx_blobs"] == 1
    await store.store_flags(inbox.id, [2], "add", ["\\Deleted"])
    await store.expunge(inbox.id)
    counts = await table_counts(db)
    assert (counts["mbx_blobs"], counts["mbx_analyses"], counts["mbx_header_fields"]) == (0, 0, 0)
    again = await store.append(account, "INBOX", message(1))  # stored (and analysed) anew
    assert (await store.summaries(inbox.id, [again.uid]))[0].subject == "Compte rendu 1"


async def test_summaries_of_thousands_in_chunks(store: MailStore, account: int) -> None:
    inbox = (await store.get_folder(account, "INBOX")).id
    for n in range(1, 11):
        await store.append(account, "INBOX", message(n % 7))
    while (await store.get_folder(account, "INBOX")).messages < 1300:  # COPY into itself doubles the folder
        await store.copy(inbox, list(range(1, 1301 - (await store.get_folder(account, "INBOX")).messages)), inbox)
    assert (await store.get_folder(account, "INBOX")).uidnext == 1301
    await store.store_flags(inbox, list(range(2, 1301, 2)), "add", ["\\Deleted"])
    await store.expunge(inbox)
    odd = list(range(1, 1301, 2))
    summaries = await store.summaries(inbox, list(range(1, 1301)))  # 650 gaps: IN lists in chunks
    assert [s.uid for s in summaries] == odd
    assert [s.uid for s in await store.summaries(inbox, [1299, 1, 3, 1299])] == [1, 3, 1299]


async def test_deliver_in_the_callers_transaction(db: Database, store: MailStore) -> None:
    mailbox_id = await new_mailbox(db, 7)  # no account yet: the first delivery creates it
    other = await new_mailbox(db, 8)
    watched: list[FolderChange] = []
    async with db.transaction() as session:
        first = await store.deliver_in(session, mailbox_id, message(1), signature={"status": "valid"},
                                       delivery_key="queue-1")
        assert first is not None and first.uid == 1
        assert await store.deliver_in(session, mailbox_id, message(1), delivery_key="queue-1") is None
        second = await store.deliver_in(session, other, message(1), delivery_key="queue-1")  # per-mailbox key
        assert second is not None
        with pytest.raises(NoSuchFolder):  # another connection does not see the uncommitted account
            await store.snapshot(first.folder_id)
        watch = store.watch(first.folder_id)
        assert watch.pending() == []  # nothing is published before the commit
    watched.extend(watch.pending())
    assert [change.added for change in watched] == [(1,)]
    [summary] = await store.summaries(first.folder_id, [1])
    assert summary.signature == {"status": "valid"} and summary.flags == frozenset()
    # Retried after commit: still no second copy, even after the message was expunged.
    await store.store_flags(first.folder_id, [1], "add", ["\\Deleted"])
    await store.expunge(first.folder_id)
    async with db.transaction() as session:
        assert await store.deliver_in(session, mailbox_id, message(1), delivery_key="queue-1") is None
    assert await store.snapshot(first.folder_id) == []
    watch.close()


async def test_deliver_in_rolled_back_leaves_nothing(db: Database, store: MailStore) -> None:
    mailbox_id = await new_mailbox(db, 7)
    await store.ensure_account(mailbox_id)
    inbox = await store.get_folder(mailbox_id, "INBOX")
    watch = store.watch(inbox.id)
    before = await table_counts(db)

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with db.transaction() as session:
            assert await store.deliver_in(session, mailbox_id, message(1), delivery_key="k") is not None
            raise Abort
    assert await table_counts(db) == before and watch.pending() == []
    async with db.transaction() as session:  # the key was not kept either
        assert await store.deliver_in(session, mailbox_id, message(1), delivery_key="k") is not None
    assert [change.added for change in watch.pending()] == [(1,)]
    watch.close()


async def test_deliver_in_refusals_keep_the_transaction_usable(db: Database, store: MailStore) -> None:
    full = await new_mailbox(db, 7)
    fine = await new_mailbox(db, 8)
    await store.ensure_account(full)
    await store.set_quota(full, 10)
    async with db.transaction() as session:
        with pytest.raises(QuotaExceeded):
            await store.deliver_in(session, full, message(1), delivery_key="m-1")
        with pytest.raises(NoSuchFolder):
            await store.deliver_in(session, full, message(1), folder="Nope", delivery_key="m-1")
        with pytest.raises(StoreError, match="delivery key"):
            await store.deliver_in(session, full, message(1), delivery_key="")
        assert await store.deliver_in(session, fine, message(1), delivery_key="m-1") is not None
    assert (await store.get_folder(fine, "INBOX")).messages == 1
    assert (await store.get_folder(full, "INBOX")).messages == 0
    assert await store.quota(full) == (0, 10)
    async with db.transaction() as session:  # the refused key was not recorded
        await store.set_quota(full, None)
        assert await store.deliver_in(session, full, message(1), delivery_key="m-1") is not None
    assert await store.prune_delivery_keys(datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert (await table_counts(db))["mbx_delivery_keys"] == 0


async def test_concurrent_appends_get_distinct_ascending_uids(store: MailStore, account: int) -> None:
    """50 appends at once (separate connections): no duplicate UID or MODSEQ, counters exact."""
    inbox = await store.get_folder(account, "INBOX")
    results = await asyncio.gather(*(store.append(account, "INBOX", message(n)) for n in range(50)))
    assert sorted(r.uid for r in results) == list(range(1, 51))
    assert len({r.modseq for r in results}) == 50
    by_uid = sorted(results, key=lambda r: r.uid)
    assert [r.modseq for r in by_uid] == sorted(r.modseq for r in results)  # ascending together
    folder = await store.get_folder(account, "INBOX")
    assert (folder.messages, folder.unseen, folder.uidnext) == (50, 50, 51)
    assert folder.highestmodseq == inbox.highestmodseq + 50
    assert folder.size == sum(len(message(n)) for n in range(50))
    assert (await store.quota(account))[0] == folder.size


async def test_concurrent_flag_changes_are_not_lost(store: MailStore, account: int) -> None:
    inbox = (await store.get_folder(account, "INBOX")).id
    await store.append(account, "INBOX", message(1))
    flags = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "k1", "k2", "k3", "k4"]
    await asyncio.gather(*(store.store_flags(inbox, [1], "add", [flag]) for flag in flags))
    [state] = await store.snapshot(inbox)
    assert state.flags == frozenset(flags)
    assert state.modseq == (await store.get_folder(account, "INBOX")).highestmodseq


async def test_counters_match_the_rows(db: Database, store: MailStore, account: int) -> None:
    inbox = (await store.get_folder(account, "INBOX")).id
    for n in range(20):
        await store.append(account, "INBOX", message(n), ["\\Seen"] if n % 3 else [])
    await store.store_flags(inbox, list(range(1, 21, 4)), "add", ["\\Deleted"])
    await store.store_flags(inbox, list(range(1, 21, 5)), "replace", [])
    await store.expunge(inbox, list(range(1, 10)))
    folder = await store.get_folder(account, "INBOX")
    async with db.session() as session:
        rows = (await session.execute(select(models.Message).where(models.Message.folder_id == inbox))).scalars().all()
        used = (await session.execute(select(func.sum(models.Message.size)))).scalar()
    assert folder.messages == len(rows)
    assert folder.unseen == sum(1 for row in rows if not row.seen)
    assert folder.deleted == sum(1 for row in rows if row.deleted)
    assert folder.size == sum(row.size for row in rows) == (await store.quota(account))[0] == used


async def test_nul_bytes_and_undecodable_headers_are_stored(store: MailStore, account: int) -> None:
    """PostgreSQL text columns refuse NUL: a NUL in a body or a header, raw or base64, must not refuse the mail."""
    raw = (
        b"From: =?utf-8?b?" + base64.b64encode(b"Nul\x00Name") + b"?= <nul@carnet.test>\r\n"
        b"Subject: zero\x00byte \xff\xfe\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nvisible\x00text\r\n"
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"\x00\x00 zeros then words") + b"\r\n--b--\r\n"
    )
    result = await store.append(account, "INBOX", raw)
    assert await store.raw((await store.summaries(result.folder_id, [result.uid]))[0].blob_id) == raw
    [summary] = await store.summaries(result.folder_id, [result.uid])
    assert "\x00" not in summary.subject and summary.subject.startswith("zero")
    assert await store.search(result.folder_id, SearchKey("body", value="zeros then")) == [result.uid]
    assert await store.search(result.folder_id, SearchKey("body", value="visibletext")) == [result.uid]


async def test_page_is_keyset_newest_first(store: MailStore, account: int) -> None:
    for n in range(1, 8):
        await store.append(account, "INBOX", message(n))
    inbox = await store.get_folder(account, "INBOX")
    await store.store_flags(inbox.id, [3], "add", ["\\Deleted"])
    await store.expunge(inbox.id)
    first = await store.page(inbox.id, limit=3)
    assert [s.uid for s in first] == [7, 6, 5] and first[0].subject == "Compte rendu 7"
    second = await store.page(inbox.id, before_uid=first[-1].uid, limit=3)
    assert [s.uid for s in second] == [4, 2, 1]  # the expunged UID 3 is skipped, the page is still full
    assert await store.page(inbox.id, before_uid=1, limit=3) == []
    other = await store.get_folder(account, "Sent")
    assert await store.page(other.id) == []
