"""Storing a run's result: the terminal transition, its retry successor or its event."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from attune import metrics
from attune.executions import dispatch, retries
from attune.executions import records as executions
from attune.executions.completion import hub
from attune.executions.policies import Policy
from attune.runtimes import Outcome, RunResult
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import (
    Execution,
    ExecutionStatus,
)

log = logging.getLogger(__name__)

OUTCOME_STATUS = {
    Outcome.SUCCEEDED: ExecutionStatus.SUCCEEDED,
    Outcome.FAILED: ExecutionStatus.FAILED,
    Outcome.TIMEOUT: ExecutionStatus.TIMEOUT,
    Outcome.CANCELED: ExecutionStatus.CANCELED,
}
"""The execution status each runtime outcome ends in."""


class Finishing(Protocol):
    """What else happens in the transaction that makes an execution terminal (rules record
    its execution-finished event there)."""

    def active(self, database: Database) -> bool:
        """True when anything listens, so the transition needs a transaction of its own."""

    def record(self, session: Session, execution_id: int) -> Callable[[], object]:
        """Record, in ``session``, that the execution ended; returns what to do after commit."""


def _finish(
    database: Database,
    execution_id: int,
    status: ExecutionStatus,
    finishing: Finishing | None,
    **values: Any,
) -> bool:
    """Make the execution terminal; with an active ``finishing``, in one transaction with it."""
    if finishing is None or not finishing.active(database):
        return executions.transition(database, execution_id, status, **values)
    with database.session_scope() as session:
        moved = executions.transition_in(session, execution_id, status, **values)
        after = finishing.record(session, execution_id) if moved else None
    if after is not None:
        after()
    return moved


def store_result(
    database: Database,
    settings: Settings,
    execution_id: int,
    result: RunResult,
    lost: bool,
    finishing: Finishing | None,
    policy: Policy,
) -> ExecutionStatus:
    """Store the result; an execution settled meanwhile (``lost``: and seen so) keeps its status."""
    status = OUTCOME_STATUS[result.outcome]
    fields: dict[str, Any] = {
        "pgid": None,  # the group is gone: nothing is left to kill
        "pgid_start_ticks": None,
        "pgid_host": None,
        "exit_code": result.exit_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "result": result.result,
        "stdout_truncated": result.stdout_truncated,
        "stderr_truncated": result.stderr_truncated,
        "duration_ms": result.duration_ms,
    }
    if retries.retried_as(policy, status, spawned=True) is not None:
        # The attempt may be owed a successor: both in one transaction.
        ended = retries.end_attempt(
            database, settings, execution_id, status, error=result.error, **fields
        )
        if ended is not None:
            hub.notify()
            metrics.record_execution(status, result.duration_ms / 1000)
            dispatch.send([] if ended.successor is None else [ended.successor])
            return status
    elif _finish(database, execution_id, status, finishing, error=result.error, **fields):
        hub.notify()
        metrics.record_execution(status, result.duration_ms / 1000)
        return status
    with database.session_scope(autocommit=True) as session:
        # The sweep settled it meanwhile: keep its verdict, keep the output too.
        late = (
            "; its worker stopped the action once it saw it abandoned"
            if lost
            else f"; the result arrived late: the action ended {status.value}"
        )
        session.execute(
            update(Execution)
            .where(Execution.id == execution_id, Execution.status == ExecutionStatus.ABANDONED)
            .values(error=func.coalesce(Execution.error, "") + late, **fields)
        )
    current = executions.status_of(database, execution_id)
    log.warning("execution %s ended %s after it was %s", execution_id, status, current)
    return current
