"""AsyncReader on PostgreSQL: one connection and cursor held between reads, a broken one
dropped and replaced; text rows straight from libpq."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import (
    Boolean,
    DateTime,
    Integer,
    String,
    Text,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    text,
)
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


_TEXT_READ = select(
    (
        literal_column("'x'", Text)
        + cast(bindparam("word", type_=String), Text)
        + func.repeat(literal_column("'%'"), bindparam("count", type_=Integer))
    ).label("said"),
    (
        bindparam("moment", type_=DateTime(timezone=True))
        == literal_column("timestamptz '2026-03-01 12:00:00.5+00'")
    ).label("same"),
    cast(bindparam("flag", type_=Boolean), Boolean).label("flag"),
    cast(bindparam("nothing", type_=String), Text).label("nothing"),
    literal_column("(SELECT count(*) FROM execution)").label("executions"),  # a reader's
)


def test_text_rows_come_from_libpq_as_the_database_writes_them(pg_database: Database) -> None:
    async def scenario() -> None:
        reader = AsyncReader(pg_database)
        values = {
            "word": "é'",
            "count": 2,
            "moment": datetime(2026, 3, 1, 13, 0, 0, 500000, tzinfo=timezone(timedelta(hours=1))),
            "flag": True,
            "nothing": None,
        }
        try:
            # Given parameters of each kind a page's filters send (text, integers, moments,
            # booleans, NULL), in SQL holding a literal percent sign
            # When the reader reads the rows as text, twice (the second time prepared)
            for _ in range(2):
                rows = await reader.texts(_TEXT_READ, values)
                # Then each value is PostgreSQL's text output, NULL as None
                assert rows == [("xé'%%".encode(), b"t", b"t", None, b"0")]
            assert _on_readers(pg_database, "pid") == 1
            # (in UTF-8, whatever the server's default encoding)
            encoding = select(func.current_setting("client_encoding"))
            assert await reader.texts(encoding, {}) == [(b"UTF8",)]
            # When a statement fails on the server, it is raised as SQLAlchemy's error
            with pytest.raises(DBAPIError) as failed:
                await reader.texts(_TEXT_READ, {**values, "count": "many"})
            assert "invalid input syntax" in str(failed.value)
            # and when the server ends the connection, the next read fails as a lost
            # connection and the one after reads again (the statement prepared anew)
            await reader.texts(_TEXT_READ, values)
            assert _on_readers(pg_database, "pg_terminate_backend(pid)") == 1
            with pytest.raises(DBAPIError) as lost:
                await reader.texts(_TEXT_READ, values)
            assert lost.value.connection_invalidated
            assert await reader.texts(_TEXT_READ, values) == rows
        finally:
            await reader.close()

    asyncio.run(scenario())
