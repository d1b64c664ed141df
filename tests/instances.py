"""Helpers for tests that run several carnet instances: a second database on the same backend, and settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from carnet.config import Settings, async_url, load_settings
from carnet.db import upgrade


@asynccontextmanager
async def extra_database(db_url: str, tmp_path: Path, name: str) -> AsyncIterator[str]:
    """Another fresh, migrated database on the same backend as ``db_url`` (for a second carnet instance)."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
        await upgrade(async_url(url))
        yield url
        return
    server, _, database = db_url.rpartition("/")
    other = f"{database}_{name}"
    connection = await asyncpg.connect(f"{server}/postgres")
    try:
        await connection.execute(f'CREATE DATABASE "{other}"')
    finally:
        await connection.close()
    try:
        await upgrade(async_url(f"{server}/{other}"))
        yield f"{server}/{other}"
    finally:
        connection = await asyncpg.connect(f"{server}/postgres")
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
        finally:
            await connection.close()


def instance_settings(tmp_path: Path, domain: str, database_url: str, **overrides: Any) -> Settings:
    """Settings of a test instance serving ``domain``, its data under ``tmp_path/domain``."""
    return load_settings(domain=domain, data_dir=tmp_path / domain, database_url=database_url,
                         key_secret=f"secret of {domain}", test_mode=True, **overrides)
