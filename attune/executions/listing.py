"""Pages of executions, newest first, by keyset (``id < cursor``): stable under inserts, no COUNT.

A page is one indexed query whatever the table's size: ``ORDER BY id DESC LIMIT n+1`` on the
primary key, or on the ``(status, id)`` / ``(action_ref, id)`` indexes when filtered.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

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


def _filtered(query: Any, where: ExecutionFilter) -> Any:
    if where.statuses:
        query = query.where(_E.status.in_([status.value for status in where.statuses]))
    if where.action_ref is not None:
        query = query.where(_E.action_ref == where.action_ref)
    if where.pack is not None:
        query = query.where(_E.action_ref.startswith(f"{where.pack}.", autoescape=True))
    if where.worker is not None:
        query = query.where(_E.worker == where.worker)
    if where.parent_id is not None:
        query = query.where(_E.parent_id == where.parent_id)
    if where.requested_by is not None:
        query = query.where(_E.requested_by == where.requested_by)
    if where.requested_after is not None:
        query = query.where(_E.requested_at > where.requested_after)
    if where.requested_before is not None:
        query = query.where(_E.requested_at < where.requested_before)
    return query


def page(
    session: Session, where: ExecutionFilter, *, limit: int, before_id: int | None = None
) -> tuple[list[Row[Any]], int | None]:
    """Up to ``limit`` summaries older than ``before_id``, and the id to continue from (or None)."""
    query = _SUMMARY.order_by(_E.id.desc()).limit(limit + 1)
    if before_id is not None:
        query = query.where(_E.id < before_id)
    rows: list[Row[Any]] = list(session.connection().execute(_filtered(query, where)))
    more = len(rows) > limit
    rows = rows[:limit]
    last: int | None = rows[-1].id if more else None
    return rows, last


def newer(session: Session, where: ExecutionFilter, *, limit: int, after_id: int) -> list[Row[Any]]:
    """The ``limit`` summaries just newer than ``after_id``, newest first (the page before)."""
    query = _SUMMARY.order_by(_E.id.asc()).limit(limit).where(_E.id > after_id)
    rows: list[Row[Any]] = list(session.connection().execute(_filtered(query, where)))
    return rows[::-1]


def requester(session: Session, execution_id: int) -> str | None:
    """Who requested the execution (an API key's name), None for the CLI and Python callers."""
    return session.scalar(select(_E.requested_by).where(_E.id == execution_id))
