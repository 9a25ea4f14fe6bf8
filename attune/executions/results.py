"""Storing a run's result: the terminal transition, its retry successor or its event."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Update, func, update

from attune import metrics
from attune.executions import dispatch, retries
from attune.executions import records as executions
from attune.executions.completion import hub
from attune.executions.policies import Policy
from attune.executions.records import Finishing
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


def store_result(
    database: Database,
    settings: Settings,
    execution_id: int,
    result: RunResult,
    lost: bool,
    finishing: Finishing | None,
    policy: Policy,
    action_ref: str | None = None,
) -> ExecutionStatus:
    """Store the result of an execution (of ``action_ref``, if known); an execution settled
    meanwhile (``lost``: and seen so) keeps its status."""
    status = OUTCOME_STATUS[result.outcome]
    fields = _fields(result)
    if retries.retried_as(policy, status, spawned=True) is not None:
        # The attempt may be owed a successor: both in one transaction.
        ended = retries.end_attempt(
            database, settings, execution_id, status, finishing, error=result.error, **fields
        )
        if ended is not None:
            recorded(status, result)
            dispatch.send([] if ended.successor is None else [ended.successor])
            return status
    elif executions.finish(
        database,
        execution_id,
        status,
        finishing,
        action_ref=action_ref,
        error=result.error,
        **fields,
    ):
        recorded(status, result)
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


def _fields(result: RunResult) -> dict[str, Any]:
    """The columns a result sets on its execution, beside its status and error."""
    return {
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


def store_of(execution_id: int, result: RunResult) -> tuple[Update, dict[str, Any]]:
    """The store of the result of a running execution as a statement and its values, for the
    caller's transaction (a workflow's task, in its run's advance): it returns no row if the
    execution was settled meanwhile (nothing is written)."""
    status = OUTCOME_STATUS[result.outcome]
    return executions.transition_of(execution_id, status, error=result.error, **_fields(result))


def recorded(status: ExecutionStatus, result: RunResult) -> None:
    """After a result's commit: wake this process's waiters, count it in the metrics."""
    hub.notify()
    metrics.record_execution(status, result.duration_ms / 1000)
