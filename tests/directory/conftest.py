"""Fixtures of the directory tests: fast CA keys and a certificate authority per test.

CA keys are RSA-3072 and take ~0.3 s each to generate; tests hand out keys from a per-session pool instead
(any 12 consecutive keys are distinct, so every hierarchy of a test — up to three instances — has distinct keys).
Data builders and loopback servers are in ``dirhelp``.
"""

from __future__ import annotations

import pytest

from carnet.config import Settings
from carnet.db import Database
from carnet.pki import authority, keys

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
async def ca(db: Database, settings: Settings) -> Database:
    """The test database with this instance's certificate authority."""
    await authority.init_hierarchy(db, settings)
    return db


