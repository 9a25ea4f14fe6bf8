"""Executions as their callers see them: the ExecutionRecord value and the state changes.

Every status change is one conditional UPDATE built from :data:`attune.store.models.TRANSITIONS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Update, bindparam, select, update
from sqlalchemy.orm import Session

from attune.errors import ExecutionNotFoundError, InvalidTransitionError
from attune.store import asyncreader
from attune.store.asyncreader import AsyncReader
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, NOT_STARTED, TRANSITIONS, ExecutionStatus
from attune.store.sqltypes import db_now, in_literals


@dataclass(frozen=True)
class ExecutionRecord:
    """One execution as stored: what was asked, where it ran, what it produced."""

    id: int
    action_ref: str
    status: ExecutionStatus
    parameters: dict[str, Any]
    worker: str | None
    exit_code: int | None
    stdout: str
    stderr: str
    result: Any
    error: str | None
    stdout_truncated: bool
    stderr_truncated: bool
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    attempt: int = 1
    max_attempts: int = 1
    first_attempt_id: int | None = None
    retry_of_id: int | None = None
    eligible_at: datetime | None = None
    parent_id: int | None = None
    """The workflow run this execution is a task attempt of (None outside a workflow)."""

    @property
    def try_label(self) -> str:
        """The attempt among the runs the retry policy allows: ``2/3`` (``1/1`` without one)."""
        return f"{self.attempt}/{self.max_attempts}"

    @property
    def is_terminal(self) -> bool:
        """True once the execution can no longer change."""
        return self.status.is_terminal

    @property
    def succeeded(self) -> bool:
        """True when the action ran and succeeded."""
        return self.status is ExecutionStatus.SUCCEEDED

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, timestamps in ISO 8601."""
        return {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in asdict(self).items()
        }


_E = EXECUTION_TABLE.c
RECORD_COLUMNS = select(
    _E.id,
    _E.action_ref,
    _E.status,
    _E.parameters,
    _E.worker,
    _E.exit_code,
    _E.stdout,
    _E.stderr,
    _E.result,
    _E.error,
    _E.stdout_truncated,
    _E.stderr_truncated,
    _E.requested_at,
    _E.started_at,
    _E.finished_at,
    _E.duration_ms,
    _E.attempt,
    _E.max_attempts,
    _E.first_attempt_id,
    _E.retry_of_id,
    _E.eligible_at,
    _E.parent_id,
)
"""The columns of an :class:`ExecutionRecord`, as one SELECT to narrow down."""
# Hot-path statements are built once; each call only binds its values.
_GET = RECORD_COLUMNS.where(_E.id == bindparam("execution_id"))
_STATUS = select(_E.status).where(_E.id == bindparam("execution_id"))


def record(row: Any) -> ExecutionRecord:
    """The record of a row of :data:`RECORD_COLUMNS`."""
    values = row._asdict()
    values["status"] = ExecutionStatus(values["status"])
    return ExecutionRecord(**values)


_TIMESTAMPS = ("requested_at", "started_at", "finished_at", "eligible_at")


def from_notification(fields: dict[str, Any]) -> ExecutionRecord:
    """The record a completion notification carried (its columns as JSON, as in migration 0004)."""
    values = dict(fields)
    values["status"] = ExecutionStatus(values["status"])
    for name in _TIMESTAMPS:
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name]).astimezone(UTC)
    return ExecutionRecord(**values)


def get(database: Database, execution_id: int) -> ExecutionRecord:
    """The execution with ``execution_id``; :class:`ExecutionNotFoundError` when there is none."""
    for row in database.run(_GET, {"execution_id": execution_id}):
        return record(row)
    raise ExecutionNotFoundError(execution_id)


def status_of(database: Database, execution_id: int) -> ExecutionStatus:
    """Only the status of an execution (the cheap read a waiter polls)."""
    for row in database.run(_STATUS, {"execution_id": execution_id}):
        return ExecutionStatus(row.status)
    raise ExecutionNotFoundError(execution_id)


async def get_async(
    database: Database, reader: AsyncReader | None, execution_id: int
) -> ExecutionRecord:
    """:func:`get` from an event loop (on the ``reader``, else in a worker thread)."""
    for row in await asyncreader.run(database, reader, _GET, {"execution_id": execution_id}):
        return record(row)
    raise ExecutionNotFoundError(execution_id)


async def status_of_async(
    database: Database, reader: AsyncReader | None, execution_id: int
) -> ExecutionStatus:
    """:func:`status_of` from an event loop (on the ``reader``, else in a worker thread)."""
    for row in await asyncreader.run(database, reader, _STATUS, {"execution_id": execution_id}):
        return ExecutionStatus(row.status)
    raise ExecutionNotFoundError(execution_id)


def recent(
    session: Session,
    *,
    status: ExecutionStatus | None = None,
    action_ref: str | None = None,
    parent_id: int | None = None,
    limit: int = 50,
) -> list[ExecutionRecord]:
    """The newest executions first, optionally of one status, one action, one workflow run."""
    query = RECORD_COLUMNS.order_by(_E.id.desc()).limit(limit)
    if parent_id is not None:
        query = query.where(_E.parent_id == parent_id)
    if status is not None:
        query = query.where(_E.status == status)
    if action_ref is not None:
        query = query.where(_E.action_ref == action_ref)
    return [record(row) for row in session.connection().execute(query)]


def transition(
    database: Database,
    execution_id: int,
    target: ExecutionStatus,
    *,
    sources: frozenset[ExecutionStatus] | None = None,
    held_by: str | None = None,
    **values: Any,
) -> bool:
    """Move the execution to ``target`` if its current state allows it; True when it moved.

    ``sources`` narrows the allowed source states of :data:`TRANSITIONS` for this call;
    with ``held_by`` it moves only while that worker holds it. Terminal targets also record
    ``finished_at`` on the database clock.
    """
    return bool(database.run(*transition_of(execution_id, target, sources, held_by, **values)))


def transition_in(
    session: Session,
    execution_id: int,
    target: ExecutionStatus,
    *,
    sources: frozenset[ExecutionStatus] | None = None,
    **values: Any,
) -> bool:
    """:func:`transition` in the caller's transaction (rules record the execution-finished
    event in the transaction that made it terminal); True when it moved."""
    statement, bound = transition_of(execution_id, target, sources, **values)
    return session.execute(statement, bound).first() is not None


def transition_of(
    execution_id: int,
    target: ExecutionStatus,
    sources: frozenset[ExecutionStatus] | None = None,
    held_by: str | None = None,
    **values: Any,
) -> tuple[Update, dict[str, Any]]:
    """The conditional UPDATE of :func:`transition` (returning the row's id if it moved) and
    its values: for a caller that runs it in a statement of its own (a workflow's advance)."""
    allowed = TRANSITIONS[target] if sources is None else TRANSITIONS[target] & sources
    statement = _transition_statement(target, allowed, tuple(sorted(values)), held_by is not None)
    return statement, {"execution_id": execution_id, "held_by": held_by, **values}


class Finishing(Protocol):
    """What else happens in the transaction that makes an execution terminal (rules record
    its execution-finished event there)."""

    def active(
        self, database: Database, action_ref: str | None = None, status: str | None = None
    ) -> bool:
        """True when anything listens to an execution of ``action_ref`` ending ``status``
        (None: not known), so the transition needs a transaction of its own."""

    def record(self, session: Session, execution_id: int) -> Callable[[], object]:
        """Record, in ``session``, that the execution ended; returns what to do after commit."""

    def enforce(self, session: Session, event_ids: Sequence[int]) -> Callable[[], object]:
        """Enforce, in ``session``, the events SQL recorded for executions it ended by the set
        (:mod:`attune.executions.endings`); returns what to do after commit."""


def finish(
    database: Database,
    execution_id: int,
    target: ExecutionStatus,
    finishing: Finishing | None,
    *,
    sources: frozenset[ExecutionStatus] | None = None,
    action_ref: str | None = None,
    **values: Any,
) -> bool:
    """Make the execution terminal; with ``finishing`` active for it (``action_ref``: its
    action, if known), in one transaction with it."""
    if finishing is None or not finishing.active(database, action_ref, target.value):
        return transition(database, execution_id, target, sources=sources, **values)
    with database.session_scope() as session:
        moved = transition_in(session, execution_id, target, sources=sources, **values)
        after = finishing.record(session, execution_id) if moved else None
    if after is not None:
        after()
    return moved


@functools.cache
def _transition_statement(
    target: ExecutionStatus,
    allowed: frozenset[ExecutionStatus],
    columns: tuple[str, ...],
    held: bool,
) -> Update:
    """The conditional UPDATE for one kind of transition, built once and reused."""
    values: dict[str, Any] = {column: bindparam(column) for column in columns}
    if target.is_terminal and "finished_at" not in values:
        values["finished_at"] = db_now()
    statement = update(EXECUTION_TABLE).where(
        _E.id == bindparam("execution_id"), in_literals(_E.status, allowed)
    )
    if held:
        statement = statement.where(_E.worker == bindparam("held_by"))
    return statement.values(status=target.value, **values).returning(_E.id)


def request_cancel(
    database: Database, execution_id: int, finishing: Finishing | None = None
) -> ExecutionStatus:
    """Cancel an execution: at once if no worker has it yet, through ``canceling`` if it runs.

    Returns the state it is now in; raises :class:`InvalidTransitionError` when it is over.
    ``finishing`` records the execution-finished event of one canceled at once.
    """
    if finish(
        database,
        execution_id,
        ExecutionStatus.CANCELED,
        finishing,
        sources=NOT_STARTED,
        error="canceled before it started",
    ):
        return ExecutionStatus.CANCELED
    if transition(database, execution_id, ExecutionStatus.CANCELING):
        return ExecutionStatus.CANCELING
    current = status_of(database, execution_id)
    if current is ExecutionStatus.CANCELING:
        return current
    raise InvalidTransitionError(execution_id, current, ExecutionStatus.CANCELED)
