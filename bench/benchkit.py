"""What the benchmarks share: a scratch PostgreSQL database. Run the scripts from the repository root
(``.venv/bin/python bench/NAME.py``): this directory is then on ``sys.path``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

import asyncpg


async def scratch_postgres(server_url: str, prefix: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    """A new database on ``server_url`` (a server URL, or any database URL on it) and a function dropping it."""
    server = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", server_url.rstrip("/"))
    if server.count("/") > 2:
        server = server.rsplit("/", 1)[0]
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(f"{server}/postgres")
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()

    async def drop() -> None:
        connection = await asyncpg.connect(f"{server}/postgres")
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    return f"{server}/{name}", drop
