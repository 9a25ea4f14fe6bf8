"""Pages of executions, newest first, by keyset (``id < cursor``): stable under inserts, no COUNT.

A page is one indexed query whatever the table's size: ``ORDER BY id DESC LIMIT n+1`` on the
primary key, or on the ``(status, id)`` / ``(action_ref, id)`` indexes when filtered.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, select
from sqlalchemy.orm import Session

from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, ExecutionStatus

_E = EXECUTION_TABLE.c
_SUMMARY = select(
    _E.id,
    _E.action_ref,
    _E.status,
    _E.worker,
    _E.exit_code,
    _E.error,
    _E.requested_by,
    _E.requested_at,
    _E.started_at,
    _E.finished_at,
    _E.duration_ms,
    _E.attempt,
    _E.max_attempts,
)


@dataclass(frozen=True)
class ExecutionFilter:
    """Which executions a listing shows; every field set narrows it (ANDed)."""

    statuses: tuple[ExecutionStatus, ...] = ()
    action_ref: str | None = None
    pack: str | None = None
    worker: str | None = None
    requested_by: str | None = None
    requested_after: datetime | None = None
    requested_before: datetime | None = None
    parent_id: int | None = None

    def fingerprint(self) -> str:
        """A short digest of the filter, so a cursor is not reused with other filters."""
        text = json.dumps(asdict(self), default=str, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _values(where: ExecutionFilter) -> dict[str, Any]:
    """The filter's values, by the names of the bind parameters :func:`_statement` declares."""
    values: dict[str, Any] = {
        f"status_{n}": status.value for n, status in enumerate(where.statuses)
    }
    if where.pack is not None:
        escaped = where.pack.replace("/", "//").replace("%", "/%").replace("_", "/_")
        values["pack_pattern"] = f"{escaped}.%"
    for name in (
        "action_ref",
        "worker",
        "parent_id",
        "requested_by",
        "requested_after",
        "requested_before",
    ):
        if getattr(where, name) is not None:
            values[name] = getattr(where, name)
    return values


@functools.lru_cache(maxsize=512)
def _statement(names: frozenset[str], newest_first: bool) -> Select[Any]:
    """The page query for a set of filter values (and ``before_id``/``after_id``), built once
    per shape so :meth:`~attune.store.db.Database.run` compiles it once."""
    order = _E.id.desc() if newest_first else _E.id.asc()
    query = _SUMMARY.order_by(order).limit(bindparam("limit"))
    statuses = sorted(name for name in names if name.startswith("status_"))
    if statuses:
        query = query.where(_E.status.in_([bindparam(name) for name in statuses]))
    conditions: dict[str, Callable[[], ColumnElement[bool]]] = {
        "action_ref": lambda: _E.action_ref == bindparam("action_ref"),
        "pack_pattern": lambda: _E.action_ref.like(bindparam("pack_pattern"), escape="/"),
        "worker": lambda: _E.worker == bindparam("worker"),
        "parent_id": lambda: _E.parent_id == bindparam("parent_id"),
        "requested_by": lambda: _E.requested_by == bindparam("requested_by"),
        "requested_after": lambda: _E.requested_at > bindparam("requested_after"),
        "requested_before": lambda: _E.requested_at < bindparam("requested_before"),
        "before_id": lambda: _E.id < bindparam("before_id"),
        "after_id": lambda: _E.id > bindparam("after_id"),
    }
    for name, condition in conditions.items():
        if name in names:
            query = query.where(condition())
    return query


def _rows(database: Database, values: dict[str, Any], newest_first: bool) -> list[Any]:
    statement = _statement(frozenset(values) - {"limit"}, newest_first)
    return database.run(statement, values)


def page(
    database: Database, where: ExecutionFilter, *, limit: int, before_id: int | None = None
) -> tuple[list[Any], int | None]:
    """Up to ``limit`` summaries older than ``before_id``, and the id to continue from (or None).

    One prebuilt statement per filter shape, run at the driver's cost (no session, no pool
    checkout, no compilation per call): a page is the API's hot read.
    """
    values = {**_values(where), "limit": limit + 1}
    if before_id is not None:
        values["before_id"] = before_id
    rows = _rows(database, values, newest_first=True)
    more = len(rows) > limit
    rows = rows[:limit]
    last: int | None = rows[-1].id if more else None
    return rows, last


def newer(database: Database, where: ExecutionFilter, *, limit: int, after_id: int) -> list[Any]:
    """The ``limit`` summaries just newer than ``after_id``, newest first (the page before)."""
    values = {**_values(where), "limit": limit, "after_id": after_id}
    return _rows(database, values, newest_first=False)[::-1]


def requester(session: Session, execution_id: int) -> str | None:
    """Who requested the execution (an API key's name), None for the CLI and Python callers."""
    return session.scalar(select(_E.requested_by).where(_E.id == execution_id))
