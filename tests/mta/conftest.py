"""Fixtures of the MTA tests: fast keys (a per-session pool, as the directory tests do) and a served platform."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mtahelp import Platform, running_platform

from carnet.config import Settings
from carnet.pki import authority, keys

_POOLS: dict[str, list[keys.PrivateKey]] = {}
_NEXT: dict[str, int] = {}
_POOL_SIZE = {"rsa3072": 12, "rsa2048": 24}


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
async def platform(settings: Settings) -> AsyncIterator[Platform]:
    """carnet serve for carnet.test on loopback, with Anne, Bob, the lab mailbox and the patient Camille."""
    async with running_platform(settings) as served:
        yield served
