"""Fixtures of the directory tests: fast CA keys and a certificate authority per test.

CA keys are RSA-3072 and take ~0.3 s each to generate; tests hand out keys from a per-session pool instead
(any 12 consecutive keys are distinct, so every hierarchy of a test — up to three instances — has distinct keys).
Data builders and loopback servers are in ``dirhelp``.
"""

from __future__ import annotations

import pytest
from keypool import use_pooled_keys

from carnet.config import Settings
from carnet.db import Database
from carnet.pki import authority


@pytest.fixture(autouse=True)
def _fast_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    use_pooled_keys(monkeypatch)


@pytest.fixture
async def ca(db: Database, settings: Settings) -> Database:
    """The test database with this instance's certificate authority."""
    await authority.init_hierarchy(db, settings)
    return db


