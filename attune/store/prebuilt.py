"""Prebuilt statements: a Core statement built once at import, compiled once per database, and
bound per call at the driver's own cost (:meth:`attune.store.db.Database.run`)."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select

Prebuilt = Select[Any] | UpdateBase
"""A statement :meth:`Database.run` accepts: built once at import, bound per call."""


@dataclass(frozen=True)
class Compiled:
    """A prebuilt statement as the driver takes it, with SQLAlchemy's type processing."""

    sql: str
    positions: tuple[str, ...] | None  # bind names in order for positional drivers
    defaults: dict[str, Any]  # values fixed in the statement (literals, scalar defaults)
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    columns: tuple[Any, ...]  # the returned columns, for their types
    # Known after the first run, from what the driver describes: a named tuple of the
    # columns (named as in SQLAlchemy's rows) and each column's result processor.
    row: Callable[..., Any] | None
    results: tuple[Callable[[Any], Any] | None, ...]


def compile_prebuilt(dialect: Dialect, statement: Prebuilt) -> Compiled:
    """``statement`` as ``dialect``'s driver takes it (its result row type not known yet)."""
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    if (
        compiled.has_out_parameters
        or compiled.literal_execute_params
        or compiled.post_compile_params
    ):
        raise ValueError(f"run() cannot take a statement with expanding parameters: {compiled}")
    defaults = {
        name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
    }
    for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
        default = column.default
        if default is None or not default.is_scalar:
            raise ValueError(f"run() needs a value for {column} (its default is computed)")
        defaults[column.key] = default.arg  # type: ignore[attr-defined]
    processors = tuple(
        (name, process)
        for name, bind in compiled.binds.items()
        if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    )
    returns = bool(compiled.returning) or isinstance(statement, Select)
    return Compiled(
        sql=compiled.string,
        positions=tuple(compiled.positiontup)
        if compiled.positional and compiled.positiontup
        else None,
        defaults=defaults,
        processors=processors,
        columns=tuple(statement.exported_columns) if returns else (),
        row=None,
        results=(),
    )


def with_results(dialect: Dialect, compiled: Compiled, description: Any) -> Compiled:
    """``compiled`` with its row type and result processors, which need what the driver
    describes of its first result (``description``)."""
    described = list(description or ())
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, found[1])
        for column, found in zip(compiled.columns, described, strict=True)
    )
    row = namedtuple("Row", [found[0] for found in described], rename=True)  # type: ignore[misc]
    return replace(compiled, row=row, results=results)
