"""AsyncReader: prebuilt reads on PostgreSQL from an event loop, without a thread hop.

:meth:`Database.run <attune.store.db.Database.run>` blocks, so an async route hands it to a
worker thread, which costs more than a short indexed read itself. The reader runs the same
prebuilt statements (compiled once by the database) over psycopg's asyncio connections,
held between calls as ``run`` holds its own, and reads whose values pass on as the database
wrote them on libpq itself (:mod:`attune.store.libpq`). PostgreSQL only: SQLite has no
asyncio driver.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import psycopg
from sqlalchemy.exc import DBAPIError

from attune.store import libpq
from attune.store.db import Database
from attune.store.prebuilt import Prebuilt

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Held:
    """A connection kept between reads: its cursor, and its statements prepared for
    :func:`attune.store.libpq.text_rows` (by SQL)."""

    connection: psycopg.AsyncConnection[Any]
    cursor: psycopg.AsyncCursor[Any]
    prepared: dict[bytes, bytes] = field(default_factory=dict)


class AsyncReader:
    """Runs prebuilt statements of ``database`` (PostgreSQL) on asyncio connections."""

    def __init__(self, database: Database) -> None:
        if database.is_sqlite:
            raise ValueError("AsyncReader needs PostgreSQL; SQLite has no asyncio driver")
        self.database = database
        # Connections between calls, each with its cursor (a new one per call costs more than
        # the call's Python); list.pop/append never interleave with an await.
        self._held: list[_Held] = []
        self._numbered: dict[str, tuple[bytes, tuple[str, ...]]] = {}

    async def rows(self, statement: Prebuilt, values: dict[str, Any]) -> list[Any]:
        """The rows ``statement`` returns for ``values``, as :meth:`Database.run` returns them
        (named tuples through the columns' types); each call commits on its own.

        A database error is raised as SQLAlchemy's (as :meth:`Database.run` raises it), and
        the connection it came on is closed rather than reused.
        """
        sql, args = self.database.bound(statement, values)

        async def read(held: _Held) -> tuple[list[Any], Any]:
            await held.cursor.execute(sql, args)
            found = await held.cursor.fetchall()
            return found, held.cursor.description

        found, description = await self._on_held(sql, args, read)
        return self.database.shaped(statement, description, found)

    async def texts(self, statement: Prebuilt, values: dict[str, Any]) -> list[libpq.TextRow]:
        """The rows ``statement`` returns for ``values`` as PostgreSQL writes each value in
        text (UTF-8 bytes; None for NULL), for values that pass on as they are (JSON text): on
        libpq itself, 0.05-0.1 ms less CPU per read than :meth:`rows` (a page of executions:
        0.22 -> 0.17 ms; six columns of one row: 0.15 -> 0.06 ms). Errors as :meth:`rows`.
        """
        sql, args = self.database.bound(statement, values)
        found = self._numbered.get(sql)
        if found is None:
            found = self._numbered[sql] = libpq.numbered(sql)
        command, names = found
        params = [libpq.as_text(args[name]) for name in names]

        async def read(held: _Held) -> list[libpq.TextRow]:
            return await libpq.text_rows(held.connection, held.prepared, command, params)

        return await self._on_held(sql, args, read)

    async def _on_held(self, sql: str, args: Any, read: Callable[[_Held], Awaitable[_T]]) -> _T:
        """``read`` on a held connection (a new one if none is free), which is held again
        after; a database error raised as SQLAlchemy's, its connection closed."""
        held = self._held.pop() if self._held else None
        try:
            if held is None:
                connection = await self._connect()
                held = _Held(connection, connection.cursor())
            found = await read(held)
        except psycopg.Error as exc:
            if held is not None:
                with suppress(psycopg.Error):
                    await held.connection.close()
            raise DBAPIError.instance(
                sql,
                args,
                exc,
                psycopg.Error,
                connection_invalidated=held is None or held.connection.broken,
                dialect=self.database.engine.dialect,
            ) from exc
        self._held.append(held)
        return found

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        engine = self.database.engine
        _args, params = engine.dialect.create_connect_args(engine.url)
        # UTF-8 whatever the server's default: text rows pass on as the bytes they came in
        return await psycopg.AsyncConnection.connect(
            **params, autocommit=True, client_encoding="UTF8"
        )

    async def close(self) -> None:
        """Close the held connections (when the app stops)."""
        while self._held:
            with suppress(psycopg.Error):
                await self._held.pop().connection.close()


async def run(
    database: Database, reader: AsyncReader | None, statement: Prebuilt, values: dict[str, Any]
) -> list[Any]:
    """The rows of a prebuilt statement from an event loop, as :meth:`Database.run` returns
    them: on the ``reader``'s connections (PostgreSQL), else (SQLite) in a worker thread."""
    if reader is None:
        return await anyio.to_thread.run_sync(functools.partial(database.run, statement, values))
    return await reader.rows(statement, values)
