"""AsyncReader: prebuilt reads on PostgreSQL from an event loop, without a thread hop.

:meth:`Database.run <attune.store.db.Database.run>` blocks, so an async route hands it to a
worker thread, which costs more than a short indexed read itself. The reader runs the same
prebuilt statements (compiled once by the database) over psycopg's asyncio connections,
held between calls as ``run`` holds its own. PostgreSQL only: SQLite has no asyncio driver.
"""

from __future__ import annotations

import functools
from contextlib import suppress
from typing import Any

import anyio
import psycopg
from sqlalchemy.exc import DBAPIError

from attune.store.db import Database
from attune.store.prebuilt import Prebuilt


class AsyncReader:
    """Runs prebuilt statements of ``database`` (PostgreSQL) on asyncio connections."""

    def __init__(self, database: Database) -> None:
        if database.is_sqlite:
            raise ValueError("AsyncReader needs PostgreSQL; SQLite has no asyncio driver")
        self.database = database
        # Connections between calls, each with its cursor (a new one per call costs more than
        # the call's Python); list.pop/append never interleave with an await.
        self._held: list[tuple[psycopg.AsyncConnection[Any], psycopg.AsyncCursor[Any]]] = []

    async def rows(
        self, statement: Prebuilt, values: dict[str, Any], *, typed: bool = True
    ) -> list[Any]:
        """The rows ``statement`` returns for ``values``, as :meth:`Database.run` returns them
        (named tuples through the columns' types); each call commits on its own. Not
        ``typed``: the driver's tuples as they are, for columns that need no type (text such
        as JSON, integers), at no cost per row.

        A database error is raised as SQLAlchemy's (as :meth:`Database.run` raises it), and
        the connection it came on is closed rather than reused.
        """
        sql, args = self.database.bound(statement, values)
        connection, cursor = self._held.pop() if self._held else (None, None)
        try:
            if connection is None or cursor is None:
                connection = await self._connect()
                cursor = connection.cursor()
            await cursor.execute(sql, args)
            found = await cursor.fetchall()
            description = cursor.description if typed else None  # columns built on demand
        except psycopg.Error as exc:
            if connection is not None:
                with suppress(psycopg.Error):
                    await connection.close()
            raise DBAPIError.instance(
                sql,
                args,
                exc,
                psycopg.Error,
                connection_invalidated=connection is None or connection.broken,
                dialect=self.database.engine.dialect,
            ) from exc
        self._held.append((connection, cursor))
        return self.database.shaped(statement, description, found) if typed else found

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        engine = self.database.engine
        _args, params = engine.dialect.create_connect_args(engine.url)
        return await psycopg.AsyncConnection.connect(**params, autocommit=True)

    async def close(self) -> None:
        """Close the held connections (when the app stops)."""
        while self._held:
            with suppress(psycopg.Error):
                await self._held.pop()[0].close()


async def run(
    database: Database, reader: AsyncReader | None, statement: Prebuilt, values: dict[str, Any]
) -> list[Any]:
    """The rows of a prebuilt statement from an event loop, as :meth:`Database.run` returns
    them: on the ``reader``'s connections (PostgreSQL), else (SQLite) in a worker thread."""
    if reader is None:
        return await anyio.to_thread.run_sync(functools.partial(database.run, statement, values))
    return await reader.rows(statement, values)
