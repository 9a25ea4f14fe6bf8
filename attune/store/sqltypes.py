"""SQL types and expressions that behave the same on PostgreSQL and SQLite.

The initial migration imports these too, so keep them stable: change a type by adding a new one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Float,
    SQLColumnExpression,
    String,
    literal,
    literal_column,
)
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


def in_literals(column: ColumnElement[str], values: Iterable[str]) -> ColumnElement[bool]:
    """``column IN (...)`` over fixed values, each its own bound literal (not one expanding list).

    Statements for :meth:`attune.store.db.Database.run` are compiled once, before any value is
    known. Bound, the values keep a prepared statement's generic plan off the partial indexes:
    a statement by primary key stays on the primary key however few rows those hold.
    """
    return column.in_([literal(value, String()) for value in sorted(values)])


def in_constants(column: ColumnElement[str], values: Iterable[str]) -> ColumnElement[bool]:
    """``column IN ('a', 'b')`` over fixed words written into the SQL (no bound parameter).

    For the statements that should use a partial index on those values (the indexes of live
    executions): PostgreSQL matches an index predicate only with constants, in any plan.
    """
    words = sorted(values)
    for word in words:
        if not word.replace("_", "").isalnum():
            raise ValueError(f"in_constants takes plain words, not {word!r}")
    return column.in_([literal_column(f"'{word}'", String()) for word in words])


def one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL text for a CHECK that ``column`` holds one of ``values``."""
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


class db_ago(FunctionElement[datetime]):  # noqa: N801 - reads like the SQL expression it renders
    """The database clock minus ``seconds``: the cutoff a timestamp is compared with.

    A negative ``seconds`` is a moment ahead of the clock (an expiry).

    ``now() - make_interval(secs => N)`` on PostgreSQL; on SQLite the same microsecond text as
    :class:`db_now`, ``N`` seconds earlier, so it compares with stored timestamps as text.
    """

    type = UTCDateTime()
    inherit_cache = True

    def __init__(self, seconds: float) -> None:
        super().__init__(literal(float(seconds), Float()))


@compiles(db_ago)
def _db_ago_default(element: db_ago, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(now() - make_interval(secs => {compiler.process(element.clauses, **kw)}))"


@compiles(db_ago, "sqlite")
def _db_ago_sqlite(element: db_ago, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    # '%+' keeps a negative ``seconds`` (a moment ahead) a valid modifier: '+N seconds'.
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.6f seconds', -({seconds}))) || '000')"


class seconds_since(FunctionElement[float]):  # noqa: N801 - reads like the SQL expression it renders
    """Seconds from a timestamp column to the database clock (NULL for a NULL timestamp)."""

    type = Float()
    inherit_cache = True

    def __init__(self, column: SQLColumnExpression[Any]) -> None:
        super().__init__(column)


@compiles(seconds_since)
def _seconds_since_default(element: seconds_since, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"CAST(EXTRACT(EPOCH FROM (now() - {column})) AS DOUBLE PRECISION)"


@compiles(seconds_since, "sqlite")
def _seconds_since_sqlite(element: seconds_since, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"((julianday('now') - julianday({column})) * 86400.0)"


class utc_text(FunctionElement[str]):  # noqa: N801 - reads like the SQL expression it renders
    """A timestamp column as text ``YYYY-MM-DD HH:MM:SS.ffffff UTC`` (``never`` when NULL)."""

    type = String()
    inherit_cache = True

    def __init__(self, column: SQLColumnExpression[Any]) -> None:
        super().__init__(column)


@compiles(utc_text)
def _utc_text_default(element: utc_text, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return (
        f"COALESCE(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || ' UTC',"
        " 'never')"
    )


@compiles(utc_text, "sqlite")
def _utc_text_sqlite(element: utc_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"COALESCE({compiler.process(element.clauses, **kw)} || ' UTC', 'never')"


class json_array_has(FunctionElement[bool]):  # noqa: N801 - reads like an SQL predicate
    """A JSON array column contains the string ``value`` (JSONB ``@>``; ``json_each`` on SQLite)."""

    type = Boolean()
    inherit_cache = True

    def __init__(self, column: SQLColumnExpression[Any], value: str | ColumnElement[str]) -> None:
        super().__init__(column, literal(value, String()) if isinstance(value, str) else value)


@compiles(json_array_has)
def _json_array_has_default(element: json_array_has, compiler: SQLCompiler, **kw: Any) -> str:
    column, value = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"({column} @> jsonb_build_array({value}))"


@compiles(json_array_has, "sqlite")
def _json_array_has_sqlite(element: json_array_has, compiler: SQLCompiler, **kw: Any) -> str:
    column, value = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = {value})"


def cutoff(seconds: float, now: datetime | None = None) -> ColumnElement[datetime]:
    """The moment ``seconds`` before now: on the database clock, or before an injected ``now``."""
    if now is None:
        return db_ago(seconds)
    return literal(now - timedelta(seconds=seconds), UTCDateTime())
