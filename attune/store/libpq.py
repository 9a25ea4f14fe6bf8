"""Text rows straight from libpq on an asyncio connection: no driver conversion at all.

psycopg's asyncio cursor spends 0.05-0.1 ms of Python per query (its generators, a future
and a reader per wait, row loaders) on top of libpq's own work; for a read whose values go
on as the database wrote them (JSON text and an id), :func:`text_rows` asks libpq itself:
the statement prepared once per connection, its parameters sent as text, the values
returned as PostgreSQL's text output (bytes). Only :class:`~attune.store.asyncreader.AsyncReader`
calls it, on a connection it holds and nothing else uses meanwhile.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors, pq

TextRow = tuple[bytes | None, ...]
"""A row as PostgreSQL writes its values in text; None for NULL."""

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


def numbered(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """psycopg's ``%(name)s`` SQL with libpq's numbered placeholders (``$1``…), and the
    names in their order (a name used twice keeps its number)."""
    names: list[str] = []

    def number(found: re.Match[str]) -> str:
        name = found.group(1)
        if name is None:
            return "%"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(number, sql).encode(), tuple(names)


def as_text(value: Any) -> bytes | None:
    """A parameter's value as PostgreSQL reads it in text (its type comes from the SQL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, int | str):
        return str(value).encode()
    if isinstance(value, datetime):
        return value.isoformat().encode()
    raise TypeError(f"a text parameter cannot be a {type(value).__name__}: {value!r}")


async def text_rows(
    connection: psycopg.AsyncConnection[Any],
    prepared: dict[bytes, bytes],
    sql: bytes,
    params: list[bytes | None],
) -> list[TextRow]:
    """The rows of ``sql`` (numbered placeholders) for ``params`` on ``connection`` (in
    autocommit, idle), preparing it first unless ``prepared`` (the connection's statements
    by SQL) names it. A failure is raised as psycopg's error."""
    pgconn, encoding = connection.pgconn, connection.info.encoding
    name = prepared.get(sql)
    if name is None:
        name = f"attune_text_{len(prepared)}".encode()
        pgconn.send_prepare(name, sql)
        await _results(pgconn, pq.ExecStatus.COMMAND_OK, encoding)
        prepared[sql] = name
    pgconn.send_query_prepared(name, params)
    found = await _results(pgconn, pq.ExecStatus.TUPLES_OK, encoding)
    rows = range(found.ntuples)
    value = found.get_value
    return list(zip(*[[value(row, n) for row in rows] for n in range(found.nfields)], strict=True))


async def _results(
    pgconn: pq.abc.PGconn, expected: pq.ExecStatus, encoding: str
) -> pq.abc.PGresult:
    """The one result of the command just sent, once libpq has all of it (``encoding``:
    the connection's, for an error's message)."""
    while pgconn.flush():  # the socket took only part of the command: wait until it can
        await _ready(pgconn, writing=True)
    pgconn.consume_input()
    while pgconn.is_busy():
        await _ready(pgconn, writing=False)
        pgconn.consume_input()
    result = pgconn.get_result()
    while pgconn.get_result() is not None:  # a command of ours sends one result
        pass
    if result is None:
        raise psycopg.OperationalError("the server sent no result")
    if result.status != expected:
        raise errors.error_from_result(result, encoding=encoding)
    return result


async def _ready(pgconn: pq.abc.PGconn, *, writing: bool) -> None:
    """Wait until the connection's socket can be read (or written)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def woken() -> None:  # may run again before the waiter takes its turn
        if not ready.done():
            ready.set_result(None)

    socket = pgconn.socket
    if writing:
        loop.add_writer(socket, woken)
    else:
        loop.add_reader(socket, woken)
    try:
        await ready
    finally:
        if writing:
            loop.remove_writer(socket)
        else:
            loop.remove_reader(socket)
