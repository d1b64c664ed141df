"""The database layer on both backends: migrations, pragmas, UTC timestamps, transactions."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select, text

from carnet.db import Database, UTCDateTime


async def test_migrations_are_applied(db: Database, db_backend: str) -> None:
    async with db.session() as session:
        version = (await session.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert version
    assert db.engine.dialect.name == db_backend


async def test_sqlite_runs_in_wal_with_foreign_keys(db: Database, db_backend: str) -> None:
    async with db.session() as session:
        if db_backend == "sqlite":
            assert (await session.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await session.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
        else:
            assert (await session.execute(text("SHOW server_version"))).scalar_one()


async def test_timestamps_round_trip_in_utc(db: Database) -> None:
    table = Table("t_times", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime()))
    async with db.engine.begin() as connection:
        await connection.run_sync(table.metadata.create_all)
    paris = timezone(timedelta(hours=1))
    moment = datetime(2026, 11, 22, 10, 30, tzinfo=paris)
    async with db.transaction() as session:
        await session.execute(table.insert().values(id=1, at=moment))
    async with db.session() as session:
        stored = (await session.execute(select(table.c.at))).scalar_one()
    assert stored == moment
    assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)


async def test_naive_datetime_refused(db: Database) -> None:
    table = Table("t_naive", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime()))
    async with db.engine.begin() as connection:
        await connection.run_sync(table.metadata.create_all)
    with pytest.raises(Exception, match="naive datetime"):
        async with db.transaction() as session:
            await session.execute(table.insert().values(id=1, at=datetime(2026, 1, 1)))


async def test_failed_transaction_writes_nothing(db: Database) -> None:
    table = Table("t_tx", MetaData(), Column("id", Integer, primary_key=True))
    async with db.engine.begin() as connection:
        await connection.run_sync(table.metadata.create_all)
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await session.execute(table.insert().values(id=1))
            raise RuntimeError("boom")
    async with db.session() as session:
        assert (await session.execute(select(table.c.id))).all() == []
