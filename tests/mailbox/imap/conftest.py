"""Fixtures of the IMAP tests: a certificate authority, a directory mailbox with a password, a message store and
an IMAP server on free loopback ports (STARTTLS and implicit TLS), on SQLite and on PostgreSQL.

CA keys come from a per-session pool (as in the directory tests); clients trust ``DATA_DIR/pki/ca-bundle.pem`` and
check the server name (the instance's domain, ``carnet.test``) while connecting to 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from carnet.config import Settings
from carnet.db import Database
from carnet.pki import authority, keys

from .imaphelp import ImapEnv, start_env

_POOLS: dict[str, list[keys.PrivateKey]] = {}
_NEXT: dict[str, int] = {}
_POOL_SIZE = {"rsa3072": 12, "rsa2048": 8}


def _pooled_key(key_type: str) -> keys.PrivateKey:
    size = _POOL_SIZE.get(key_type)
    if size is None:
        return keys.generate_key(key_type)
    pool = _POOLS.setdefault(key_type, [])
    index = _NEXT.get(key_type, 0)
    _NEXT[key_type] = (index + 1) % size
    if index >= len(pool):
        pool.append(keys.generate_key(key_type))
    return pool[index]


@pytest.fixture(autouse=True)
def _fast_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(authority, "generate_key", _pooled_key)


@pytest.fixture
async def imap(db: Database, settings: Settings) -> AsyncIterator[ImapEnv]:
    """A running IMAP server and one mailbox (``env.address`` / ``env.password``) with its default folders."""
    async with start_env(db, settings) as env:
        yield env
