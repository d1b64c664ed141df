"""Test-wide fixtures: every storage test runs on SQLite and on PostgreSQL.

A test that asks for ``db_url``, ``db`` or ``settings`` is run twice, ``[sqlite]`` and ``[postgresql]``. Each test
gets a fresh database: a copy of a template migrated once per run (a file copy for SQLite, ``CREATE DATABASE …
TEMPLATE`` for PostgreSQL), created before the test and dropped after it; the templates are dropped at the end of
the run. PostgreSQL is ``postgresql://postgres@127.0.0.1:5432/`` unless ``CARNET_TEST_POSTGRES`` says otherwise.
Where it cannot be reached the run says so in one line and runs the SQLite half; under ``CI`` that fails the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from carnet.config import Settings, async_url, load_settings
from carnet.db import Database, upgrade

PG_SERVER = os.environ.get("CARNET_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/").rstrip("/")
_RUN_ID = uuid.uuid4().hex[:10]
_pg_state: dict[str, str | None] = {}


async def _pg_execute(*statements: str) -> None:
    connection = await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=5)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def _pg_unreachable_reason() -> str | None:
    if "reason" not in _pg_state:
        try:
            asyncio.run(_pg_execute("SELECT 1"))
            _pg_state["reason"] = None
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            _pg_state["reason"] = f"{type(exc).__name__}: {exc}"
    return _pg_state["reason"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): run a storage-using test on these backends only")
    reason = _pg_unreachable_reason()
    if reason is not None and os.environ.get("CI"):
        raise pytest.UsageError(f"CI is set and PostgreSQL at {PG_SERVER} is unreachable ({reason})")


def pytest_report_header(config: pytest.Config) -> str:
    reason = _pg_unreachable_reason()
    if reason is None:
        return f"storage tests: SQLite and PostgreSQL ({PG_SERVER})"
    return f"PostgreSQL at {PG_SERVER} unreachable ({reason}): storage tests run on SQLite only"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" in metafunc.fixturenames:
        backends = ["sqlite"] if _pg_unreachable_reason() else ["sqlite", "postgresql"]
        marker = metafunc.definition.get_closest_marker("backends")
        if marker is not None:  # a test about something else than storage (e.g. rendering in a browser)
            backends = [b for b in backends if b in marker.args]
        metafunc.parametrize("db_backend", backends, scope="function")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(upgrade(async_url(f"sqlite:///{path}")))
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"carnet_tpl_{_RUN_ID}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(upgrade(async_url(f"{PG_SERVER}/{name}")))
        yield name
    finally:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def db_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for this test, as the plain URL a user would configure."""
    if db_backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "carnet.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    template_name: str = request.getfixturevalue("pg_template")
    name = f"carnet_t_{_RUN_ID}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(async_url(db_url))
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings for a test instance of domain ``carnet.test`` on this test's database."""
    return load_settings(
        domain="carnet.test",
        data_dir=tmp_path / "var",
        database_url=db_url,
        key_secret="test-key-encryption-secret",
        test_mode=True,
    )
