"""Folders on both backends: defaults, hierarchy, CREATE/DELETE/RENAME rules of RFC 9051 §6.3, subscriptions."""


import pytest
from sqlalchemy import func, select

from carnet.db import Database
from carnet.mailbox import models
from carnet.mailbox.api import (
    DEFAULT_FOLDERS,
    FolderExists,
    FolderHasChildren,
    InvalidFolderName,
    NoSuchAccount,
    NoSuchFolder,
    NotPermitted,
    SpecialUse,
)
from carnet.mailbox.store import MailStore

MESSAGE = b"From: a@example.fr\r\nSubject: hello\r\n\r\nbody\r\n"


async def test_default_folders_and_idempotent_account(db: Database, store: MailStore, account: int) -> None:
    await store.ensure_account(account)  # again: nothing changes
    folders = await store.list_folders(account)
    assert [(f.name, f.special_use) for f in folders] == sorted(
        ((name, use) for name, use in DEFAULT_FOLDERS), key=lambda item: item[0])
    assert {f.special_use for f in folders} == {None, *SpecialUse}
    assert len({f.uidvalidity for f in folders}) == len(folders)  # unique within the account
    assert all(f.subscribed and f.uidnext == 1 and f.messages == 0 and not f.has_children for f in folders)
    inbox = await store.get_folder(account, "iNbOx")  # RFC 9051 §5.1: INBOX is case-insensitive
    assert inbox.name == "INBOX"
    assert await store.quota(account) == (0, 2 * 1024**3)
    with pytest.raises(NoSuchAccount, match="not in the directory"):
        await store.ensure_account(999_999)
    with pytest.raises(NoSuchAccount):
        await store.quota(999_999)
    assert await store.list_folders(999_999) == []


async def test_create_makes_superiors_and_refuses_duplicates(store: MailStore, account: int) -> None:
    created = await store.create_folder(account, "Patients/2026/Mars")
    assert created.name == "Patients/2026/Mars" and created.messages == 0 and not created.has_children
    names = [f.name for f in await store.list_folders(account)]
    assert {"Patients", "Patients/2026", "Patients/2026/Mars"} <= set(names)
    assert (await store.get_folder(account, "Patients")).has_children
    with pytest.raises(FolderExists, match="already exists"):
        await store.create_folder(account, "Patients/2026")
    with pytest.raises(FolderExists, match="INBOX always exists"):
        await store.create_folder(account, "inbox")
    child = await store.create_folder(account, "inbox/Labo")  # INBOX's inferiors keep INBOX upper case
    assert child.name == "INBOX/Labo"
    special = await store.create_folder(account, "Archives 2025", SpecialUse.ARCHIVE)  # RFC 6154 §3
    assert special.special_use is SpecialUse.ARCHIVE
    composed = await store.create_folder(account, "Re\u0301sultats")  # stored in NFC
    assert composed.name == "Résultats" and (await store.get_folder(account, "Résultats")).id == composed.id
    with pytest.raises(NoSuchAccount):
        await store.create_folder(999_999, "x")


@pytest.mark.parametrize("name", ["", "a//b", "/a", "a/", "a*b", "50%", "#news", "a\x00b", "tab\there", "x" * 901,
                                  "y" * 256 + "/z"])
async def test_invalid_names_are_refused(store: MailStore, account: int, name: str) -> None:
    before = await store.list_folders(account)
    with pytest.raises(InvalidFolderName):
        await store.create_folder(account, name)
    assert await store.list_folders(account) == before


async def test_uidvalidity_changes_when_a_name_is_reused(store: MailStore, account: int) -> None:
    first = await store.create_folder(account, "Tmp")
    await store.delete_folder(account, "Tmp")
    again = await store.create_folder(account, "Tmp")
    assert again.uidvalidity > first.uidvalidity and again.id != first.id  # RFC 9051 §2.3.1.1


async def test_delete_rules_and_cleanup(db: Database, store: MailStore, account: int) -> None:
    with pytest.raises(NotPermitted, match="INBOX cannot be deleted"):
        await store.delete_folder(account, "Inbox")
    with pytest.raises(NoSuchFolder):
        await store.delete_folder(account, "Nope")
    await store.create_folder(account, "Projets/Cardio")
    with pytest.raises(FolderHasChildren, match="has subfolders"):
        await store.delete_folder(account, "Projets")
    folder = await store.get_folder(account, "Projets/Cardio")
    await store.append(account, "Projets/Cardio", MESSAGE)
    await store.append(account, "Projets/Cardio", MESSAGE + b"more")
    await store.append(account, "INBOX", MESSAGE)  # shares a blob with the first message
    used_before, _ = await store.quota(account)
    await store.delete_folder(account, "Projets/Cardio")
    await store.delete_folder(account, "Projets")  # no inferiors any more
    with pytest.raises(NoSuchFolder):
        await store.get_folder(account, "Projets/Cardio")
    with pytest.raises(NoSuchFolder):
        await store.snapshot(folder.id)
    assert (await store.quota(account))[0] == used_before - len(MESSAGE) * 2 - 4
    async with db.session() as session:
        blobs = (await session.execute(select(models.Blob.id, models.Blob.refcount))).all()
        analyses = (await session.execute(select(func.count()).select_from(models.Analysis))).scalar()
        tombstones = (await session.execute(select(func.count()).select_from(models.Expunged))).scalar()
    assert [row.refcount for row in blobs] == [1] and analyses == 1  # the INBOX copy keeps its blob
    assert tombstones == 0


async def test_rename_moves_inferiors_and_keeps_state(store: MailStore, account: int) -> None:
    await store.create_folder(account, "A/B/C")
    await store.append(account, "A/B", MESSAGE)
    before = await store.get_folder(account, "A/B")
    await store.rename_folder(account, "A/B", "X/Y")
    after = await store.get_folder(account, "X/Y")
    assert (after.id, after.uidvalidity, after.messages, after.uidnext) == (
        before.id, before.uidvalidity, 1, before.uidnext)
    names = {f.name for f in await store.list_folders(account)}
    assert {"A", "X", "X/Y", "X/Y/C"} <= names and not {"A/B", "A/B/C"} & names
    with pytest.raises(NoSuchFolder):
        await store.rename_folder(account, "A/B", "Z")
    with pytest.raises(FolderExists):
        await store.rename_folder(account, "X/Y", "Sent")
    with pytest.raises(FolderExists):
        await store.rename_folder(account, "X/Y", "inbox")
    with pytest.raises(InvalidFolderName, match="below itself"):
        await store.rename_folder(account, "X", "X/Y/Z")
    await store.create_folder(account, "Q/C")
    await store.create_folder(account, "P")
    with pytest.raises(FolderExists, match="'Q' already exists"):
        await store.rename_folder(account, "X/Y", "Q")
    await store.rename_folder(account, "X/Y/C", "P/C")
    assert (await store.get_folder(account, "P")).has_children


async def test_rename_inbox_moves_its_messages(store: MailStore, account: int) -> None:
    await store.create_folder(account, "INBOX/Kept")
    inbox = await store.get_folder(account, "INBOX")
    first = await store.append(account, "INBOX", MESSAGE, ["\\Seen"])
    second = await store.append(account, "INBOX", MESSAGE + b"2")
    await store.rename_folder(account, "INBOX", "Old/Inbox 2025")  # RFC 9051 §6.3.6
    moved = await store.get_folder(account, "Old/Inbox 2025")
    assert moved.messages == 2 and moved.unseen == 1 and moved.uidvalidity != inbox.uidvalidity
    assert [state.uid for state in await store.snapshot(moved.id)] == [first.uid, second.uid]
    emptied = await store.get_folder(account, "INBOX")
    assert (emptied.id, emptied.uidvalidity) == (inbox.id, inbox.uidvalidity)
    assert emptied.messages == emptied.unseen == emptied.size == 0 and emptied.uidnext == second.uid + 1
    changes = await store.changes_since(inbox.id, second.modseq)
    assert changes.vanished == (first.uid, second.uid)  # QRESYNC sees them go
    assert (await store.get_folder(account, "INBOX/Kept")).name == "INBOX/Kept"  # inferiors stay
    assert (await store.append(account, "INBOX", MESSAGE)).uid == second.uid + 1  # UIDs are never reused


async def test_subscriptions(store: MailStore, account: int) -> None:
    await store.set_subscribed(account, "Junk", False)
    assert not (await store.get_folder(account, "Junk")).subscribed
    await store.set_subscribed(account, "Junk", True)
    assert (await store.get_folder(account, "Junk")).subscribed
    with pytest.raises(NoSuchFolder):
        await store.set_subscribed(account, "Nope", True)
