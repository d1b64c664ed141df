"""The migration 0002_directory creates exactly the tables of carnet.directory.models, on both backends."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from carnet.db import Database
from carnet.models import metadata


def _directory_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    differences = compare_metadata(context, metadata)
    return [d for d in differences if "dir_" in repr(d)]


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    async with db.engine.connect() as connection:
        assert await connection.run_sync(_directory_differences) == []
