"""Fixtures of the message-store tests: a MailStore on the test's database and one account with its folders."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from storehelp import new_mailbox

from carnet.db import Database
from carnet.mailbox.store import MailStore


@pytest.fixture
async def store(db: Database) -> AsyncIterator[MailStore]:
    mail_store = MailStore(db)
    try:
        yield mail_store
    finally:
        await mail_store.close()


@pytest.fixture
async def account(db: Database, store: MailStore) -> int:
    mailbox_id = await new_mailbox(db, 1)
    await store.ensure_account(mailbox_id)
    return mailbox_id
