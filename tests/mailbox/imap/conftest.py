"""Fixtures of the IMAP tests: a certificate authority, a directory mailbox with a password, a message store and
an IMAP server on free loopback ports (STARTTLS and implicit TLS), on SQLite and on PostgreSQL.

CA keys come from a per-session pool (as in the directory tests); clients trust ``DATA_DIR/pki/ca-bundle.pem`` and
check the server name (the instance's domain, ``carnet.test``) while connecting to 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from keypool import use_pooled_keys

from carnet.config import Settings
from carnet.db import Database

from .imaphelp import ImapEnv, start_env


@pytest.fixture(autouse=True)
def _fast_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    use_pooled_keys(monkeypatch)


@pytest.fixture
async def imap(db: Database, settings: Settings) -> AsyncIterator[ImapEnv]:
    """A running IMAP server and one mailbox (``env.address`` / ``env.password``) with its default folders."""
    async with start_env(db, settings) as env:
        yield env
