"""The migration 0005_webmail creates exactly the tables of carnet.webmail.models, on both backends."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from carnet.db import Database
from carnet.models import metadata


def _webmail_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return [d for d in compare_metadata(context, metadata) if "web_" in repr(d)]


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    async with db.engine.connect() as connection:
        assert await connection.run_sync(_webmail_differences) == []
