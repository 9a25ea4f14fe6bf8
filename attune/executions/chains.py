"""Chains of attempts: every execution a retry policy started, from any of their ids."""

from __future__ import annotations

from sqlalchemy import bindparam, select

from attune.errors import ExecutionNotFoundError, InvalidTransitionError
from attune.executions import dispatch, records, releases
from attune.executions.records import ExecutionRecord
from attune.store.db import Database
from attune.store.models import (
    EXECUTION_TABLE,
    TERMINAL_STATUSES,
    WORKFLOW_RUN_TABLE,
    ExecutionStatus,
)
from attune.store.sqltypes import in_literals

_E = EXECUTION_TABLE.c
_FIRST = select(_E.first_attempt_id).where(_E.id == bindparam("execution_id"))
_CHAIN = records.RECORD_COLUMNS.where(_E.first_attempt_id == bindparam("first")).order_by(
    _E.attempt, _E.id
)
_SUCCESSOR = select(_E.id).where(_E.retry_of_id == bindparam("execution_id"))
_LIVE = (
    select(_E.id)
    .where(_E.first_attempt_id == bindparam("first"), ~in_literals(_E.status, TERMINAL_STATUSES))
    .order_by(_E.attempt.desc())
)


_RUNS = (
    select(_E.parent_id, WORKFLOW_RUN_TABLE.c.execution_id.label("run"))
    .select_from(
        EXECUTION_TABLE.outerjoin(WORKFLOW_RUN_TABLE, WORKFLOW_RUN_TABLE.c.execution_id == _E.id)
    )
    .where(_E.id == bindparam("execution_id"))
)


def _runs_to_advance(
    database: Database, execution_id: int, status: ExecutionStatus
) -> list[dispatch.Dispatch]:
    """After a cancel: a workflow run cascades it, the run of a task canceled before it
    started takes it in (a running task's run hears of it when the task ends)."""
    advances = []
    for row in database.run(_RUNS, {"execution_id": execution_id}):
        if row.run is not None:
            advances.append(dispatch.advance(row.run))
        if row.parent_id is not None and status is ExecutionStatus.CANCELED:
            advances.append(dispatch.advance(row.parent_id))
    return advances


def first_of(database: Database, execution_id: int) -> int:
    """The id of the first attempt of the chain ``execution_id`` belongs to."""
    for row in database.run(_FIRST, {"execution_id": execution_id}):
        return int(row.first_attempt_id or execution_id)
    raise ExecutionNotFoundError(execution_id)


def attempts(database: Database, execution_id: int) -> list[ExecutionRecord]:
    """Every attempt of the chain of ``execution_id``, the first first."""
    first = first_of(database, execution_id)
    return [records.record(row) for row in database.run(_CHAIN, {"first": first})]


def successor(database: Database, execution_id: int) -> int | None:
    """The id of the attempt that retried ``execution_id``, if one was created."""
    for row in database.run(_SUCCESSOR, {"execution_id": execution_id}):
        return int(row.id)
    return None


def cancel(
    database: Database, execution_id: int, finishing: records.Finishing | None = None
) -> tuple[int, ExecutionStatus]:
    """Cancel the live attempt of the chain of ``execution_id`` (canceled is never retried, so
    the chain stops); the attempt's id and its state now. ``finishing`` records the
    execution-finished event of an attempt canceled before it started.

    Raises :class:`InvalidTransitionError` when every attempt of the chain is over.
    """
    first = first_of(database, execution_id)
    for _ in range(3):  # an attempt that ends meanwhile may have just got a successor
        live = database.run(_LIVE, {"first": first})
        target = int(live[0].id) if live else execution_id
        try:
            status = records.request_cancel(database, target, finishing)
        except InvalidTransitionError:
            if not live:
                raise
            continue
        if status is ExecutionStatus.CANCELED:  # it waited: a gate's queue moved up
            dispatch.send(releases.after_cancel(database, target))
        dispatch.send(_runs_to_advance(database, target, status))
        return target, status
    return execution_id, records.request_cancel(database, execution_id, finishing)
