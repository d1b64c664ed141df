"""Alembic environment: runs on the connection carnet hands over (see carnet.db.upgrade)."""

from alembic import context

from carnet.models import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("carnet migrations run through `carnet db upgrade`, which provides the connection")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
