"""Fixtures of the webmail tests: fast keys and a served platform (SMTP, IMAP, HTTP with the webmail)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from keypool import use_pooled_keys
from mta.mtahelp import Platform, running_platform

from carnet.config import Settings


@pytest.fixture(autouse=True)
def _fast_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    use_pooled_keys(monkeypatch)


@pytest.fixture
async def platform(settings: Settings) -> AsyncIterator[Platform]:
    """carnet serve for carnet.test on loopback: Anne and Bob (professionals), the lab, the patient Camille."""
    async with running_platform(settings) as served:
        yield served
