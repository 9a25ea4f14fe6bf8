"""AsyncReader on PostgreSQL: one connection and cursor held between reads, a broken one
dropped and replaced."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from attune.errors import ExecutionNotFoundError
from attune.executions import records
from attune.store.asyncreader import AsyncReader
from attune.store.db import Database

pytestmark = pytest.mark.postgres


_READERS = (
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    " AND query LIKE '%FROM execution%'"
)
"""The other connections of the database that read executions: the reader's."""


def _on_readers(database: Database, what: str) -> int:
    with database.engine.connect() as connection:
        return len(connection.execute(text(f"SELECT {what} {_READERS}")).all())


def test_the_reader_holds_its_connection_and_replaces_a_broken_one(
    pg_database: Database,
) -> None:
    async def scenario() -> None:
        reader = AsyncReader(pg_database)
        try:
            # Given reads one after another: they share one held connection
            for _ in range(3):
                with pytest.raises(ExecutionNotFoundError):
                    await records.get_async(pg_database, reader, 1)
            assert _on_readers(pg_database, "pid") == 1
            # When the server ends that connection
            assert _on_readers(pg_database, "pg_terminate_backend(pid)") == 1
            # Then the next read fails as a lost connection, and the one after reads again
            with pytest.raises(DBAPIError) as failed:
                await records.get_async(pg_database, reader, 1)
            assert failed.value.connection_invalidated
            with pytest.raises(ExecutionNotFoundError):
                await records.get_async(pg_database, reader, 1)
            assert _on_readers(pg_database, "pid") == 1
        finally:
            await reader.close()

    asyncio.run(scenario())
