"""SQL types and expressions that behave the same on PostgreSQL and SQLite.

The initial migration imports these too, so keep them stable: change a type by adding a new one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlalchemy.types import Boolean, TypeDecorator

JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
"""JSON on SQLite, JSONB on PostgreSQL; Python ``None`` is stored as SQL NULL."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: attune stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        # SQLite keeps text; naive UTC text compares in time order with db_now()'s text.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class db_now(FunctionElement[datetime]):  # noqa: N801 - reads like the SQL function it renders
    """The database server's clock: ``now()`` on PostgreSQL, microsecond text on SQLite.

    SQLite's ``CURRENT_TIMESTAMP`` has whole seconds only; ``strftime('%f')`` gives
    milliseconds, padded here to the six digits SQLAlchemy writes, so stored timestamps
    compare in time order as text.
    """

    type = UTCDateTime()
    inherit_cache = True


@compiles(db_now)
def _db_now_default(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "now()"


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"


class matches(ColumnElement[bool]):  # noqa: N801 - reads like an SQL predicate
    """``column`` matches a pattern: a regex on PostgreSQL, GLOB clauses on SQLite.

    ``globs`` are SQLite GLOB conditions (each ``(negated, pattern)``) that together accept
    exactly what ``regex`` accepts; ``min_length`` completes them where GLOB cannot count.
    """

    type = Boolean()
    inherit_cache = False

    def __init__(
        self, column: str, regex: str, globs: tuple[tuple[bool, str], ...], min_length: int = 1
    ) -> None:
        self.column = column
        self.regex = regex
        self.globs = globs
        self.min_length = min_length


@compiles(matches)
def _matches_default(element: matches, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{element.column} ~ '{element.regex}'"


@compiles(matches, "sqlite")
def _matches_sqlite(element: matches, compiler: SQLCompiler, **kw: Any) -> str:
    clauses = [f"length({element.column}) >= {element.min_length}"]
    clauses += [
        f"{element.column} {'NOT ' if negated else ''}GLOB '{pattern}'"
        for negated, pattern in element.globs
    ]
    return " AND ".join(clauses)


def one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL text for a CHECK that ``column`` holds one of ``values``."""
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"
