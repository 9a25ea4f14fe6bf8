"""Bulk inserts: many rows in one statement whose text does not grow with the rows.

SQLAlchemy's "insertmanyvalues" sends ``INSERT … VALUES (…), (…), …`` with one placeholder per
value: for 100 execution rows that is ~50 kB of SQL and 1,900 parameters, which psycopg splits
with a regex every time (it caches no statement that long), and PostgreSQL parses and plans
every time. On PostgreSQL :func:`insert_rows` sends one array per column instead,
``INSERT … SELECT * FROM unnest(:a, :b, …)``: the same text whatever the number of rows, so
psycopg converts it once and the server prepares it. Elsewhere (SQLite) it is the usual
executemany. Either way the rows, their defaults and the result are the same.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    Row,
    Table,
    Update,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    returning: Sequence[ColumnElement[Any]],
    *,
    ignore_conflicts: bool = False,
    ordered: bool = False,
) -> Sequence[Row[Any]]:
    """Insert ``rows`` (one or more, with the same keys) into ``table`` in the caller's
    transaction; the ``returning`` columns of the rows inserted (with ``ignore_conflicts``, a
    row a unique constraint refuses is skipped). ``ordered``: in the order of ``rows``
    (``returning`` then starts with the table's integer primary key)."""
    if session.get_bind().dialect.name != "postgresql":
        plain = sqlite.insert(table).on_conflict_do_nothing() if ignore_conflicts else insert(table)
        returned = plain.returning(*returning, sort_by_parameter_order=ordered)
        return session.execute(returned, list(rows)).all()
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    varying, same = _split(columns)
    statement = _unnest_insert(table, varying, same, tuple(returning), ignore_conflicts)
    values = {name: columns[name][0] for name in same}
    values.update((name, columns[name]) for name in varying)
    found = session.execute(statement, values).all()
    # The SELECT yields the rows in array order and the key's sequence numbers them in that
    # order (SQLAlchemy's own ordered form relies on it too); RETURNING's order is not promised.
    return sorted(found, key=lambda row: row[0]) if ordered else found


def _split(columns: Mapping[str, list[Any]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names whose values differ between rows (they go as arrays) and those whose value is
    the same in every row (it goes once, as a scalar: a rule's status, an action's ref); at
    least one goes as an array when there are several rows (it numbers them)."""
    same = [name for name, values in columns.items() if _all_same(values)]
    if len(same) == len(columns) and len(next(iter(columns.values()))) > 1:
        same = same[1:]
    return tuple(name for name in columns if name not in same), tuple(same)


def _all_same(values: list[Any]) -> bool:
    """Whether every value is the first one (equal, and of the same types all the way down)."""
    first = values[0]
    return values.count(first) == len(values) and all(_same(value, first) for value in values)


def _same(one: Any, other: Any) -> bool:
    """Equal and of the same types all the way down (``1 == True == 1.0``, not so in JSON)."""
    if one is other:
        return True
    if type(one) is not type(other) or one != other:
        return False
    if isinstance(one, dict):
        return all(_same(value, other[key]) for key, value in one.items())
    if isinstance(one, list | tuple):
        return all(map(_same, one, other))
    return True


@functools.lru_cache(maxsize=128)
def _unnest_insert(
    table: Table,
    varying: tuple[str, ...],
    same: tuple[str, ...],
    returning: tuple[ColumnElement[Any], ...],
    ignore_conflicts: bool,
) -> Insert:
    """``INSERT INTO table (varying…, same…, defaults…) SELECT v.*, :same… FROM unnest(:varying[],
    …) AS v`` (the columns not given get their Python-side defaults, as an executemany fills
    them)."""
    arrays = [bindparam(name, type_=ARRAY(table.c[name].type, dimensions=1)) for name in varying]
    scalars = [bindparam(name, type_=table.c[name].type) for name in same]
    source = select(*scalars)
    if arrays:
        unnested = func.unnest(*arrays).table_valued(*varying).render_derived()
        source = select(*unnested.c, *scalars).select_from(unnested)
    statement = postgresql.insert(table).from_select([*varying, *same], source)
    if ignore_conflicts:
        statement = statement.on_conflict_do_nothing()
    return statement.returning(*returning)


def update_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    where: Mapping[str, str],
    values: Mapping[str, str],
) -> None:
    """For each of ``rows`` (one or more), ``UPDATE table SET column = row[key] … WHERE
    column = row[key] …`` (``where`` and ``values``: column name → row key), in the caller's
    transaction; on PostgreSQL in one statement over arrays (``UPDATE … FROM unnest(…)``),
    elsewhere by executemany."""
    if session.get_bind().dialect.name != "postgresql":
        session.execute(update_statement(table, where, values), list(rows))
        return
    keys = (*where.values(), *values.values())
    columns = {key: [row[key] for row in rows] for key in keys}
    varying, same = _split(columns)
    statement = _unnest_update(table, tuple(where.items()), tuple(values.items()), varying, same)
    arrays = {key: columns[key] for key in varying}
    session.execute(statement, {**arrays, **{key: columns[key][0] for key in same}})


def update_statement(table: Table, where: Mapping[str, str], values: Mapping[str, str]) -> Update:
    """One row's ``UPDATE`` of :func:`update_rows` (executed per row or by executemany)."""
    return (
        update(table)
        .where(*(table.c[column] == bindparam(key) for column, key in where.items()))
        .values({column: bindparam(key) for column, key in values.items()})
    )


@functools.lru_cache(maxsize=32)
def _unnest_update(
    table: Table,
    where: tuple[tuple[str, str], ...],
    values: tuple[tuple[str, str], ...],
    varying: tuple[str, ...],
    same: tuple[str, ...],
) -> Update:
    """``UPDATE table SET … FROM unnest(:varying[], …) AS v(varying, …) WHERE …`` (one row of
    ``v`` per row; the keys the same in every row as scalars)."""
    kinds = {key: table.c[column].type for column, key in (*where, *values)}
    arrays = [bindparam(key, type_=ARRAY(kinds[key], dimensions=1)) for key in varying]
    source = func.unnest(*arrays).table_valued(*varying).render_derived()
    given = {**{key: bindparam(key, type_=kinds[key]) for key in same}, **source.c}
    return (
        update(table)
        .where(*(table.c[column] == given[key] for column, key in where))
        .values({column: given[key] for column, key in values})
    )
