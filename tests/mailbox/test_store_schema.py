"""The migration 0003_mailbox creates exactly the tables of carnet.mailbox.models, on both backends, and the
queries that must stay fast use their indexes."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from carnet.db import Database
from carnet.models import metadata


def _mailbox_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    differences = compare_metadata(context, metadata)
    return [d for d in differences if "mbx_" in repr(d)]


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    async with db.engine.connect() as connection:
        assert await connection.run_sync(_mailbox_differences) == []


async def test_unseen_and_uid_lookups_use_indexes(db: Database) -> None:
    async with db.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            plan = " ".join(str(row) for row in (await connection.execute(text(
                "EXPLAIN QUERY PLAN SELECT min(uid) FROM mbx_messages WHERE folder_id = 1 AND seen = 0"))).all())
            assert "ix_mbx_messages_unseen" in plan
            plan = " ".join(str(row) for row in (await connection.execute(text(
                "EXPLAIN QUERY PLAN SELECT uid FROM mbx_messages WHERE folder_id = 1 AND modseq > 5"))).all())
            assert "ix_mbx_messages_folder_modseq" in plan
        else:
            await connection.execute(text("SET enable_seqscan = off"))
            plan = " ".join(str(row) for row in (await connection.execute(text(
                "EXPLAIN SELECT min(uid) FROM mbx_messages WHERE folder_id = 1 AND seen = false"))).all())
            assert "ix_mbx_messages_unseen" in plan
