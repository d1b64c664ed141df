"""A per-session pool of RSA keys for tests that build many certificate authorities.

RSA-3072 CA keys take ~0.3 s each to generate; suites that create a hierarchy per test (directory, mailbox, MTA)
hand out keys from a pool instead. Any 12 consecutive keys are distinct, so every hierarchy of one test (up to
three instances) has distinct keys; the PKI's own tests keep generating real keys.
"""

from __future__ import annotations

import pytest

from carnet.pki import authority, keys

_POOL_SIZE = {"rsa3072": 12, "rsa2048": 24}
_POOLS: dict[str, list[keys.PrivateKey]] = {}
_NEXT: dict[str, int] = {}


def pooled_key(key_type: str) -> keys.PrivateKey:
    size = _POOL_SIZE.get(key_type)
    if size is None:
        return keys.generate_key(key_type)
    pool = _POOLS.setdefault(key_type, [])
    index = _NEXT.get(key_type, 0)
    _NEXT[key_type] = (index + 1) % size
    if index >= len(pool):
        pool.append(keys.generate_key(key_type))
    return pool[index]


def use_pooled_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the CA draw RSA keys from the pool for the current test."""
    monkeypatch.setattr(authority, "generate_key", pooled_key)
