"""Celery tasks: thin adapters that open a session and call the real function."""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import WorkerLostError
from celery.worker.request import Request

from attune.executions import retention
from attune.executions.lost import settle_lost
from attune.executions.runner import run_execution
from attune.executions.supervision import CancelWatcher
from attune.liveness.sweeper import sweep_and_record
from attune.worker.app import app, resources
from attune.worker.dispatch import RuleFinishing
from attune.worker.pool_table import pool_table
from attune.workflows.engine import advance

_watcher = CancelWatcher(lambda: resources.database)
log = logging.getLogger(__name__)


class ExecutionRequest(Request):
    """In the worker's main process: settle the execution of a pool process that died."""

    def on_failure(self, exc_info: Any, *args: Any, **kwargs: Any) -> None:
        lost = getattr(exc_info.exception, "exc", exc_info.exception)  # billiard may wrap it
        if isinstance(lost, WorkerLostError):
            # Its task's execution, and a gate's head it went on to run (attune.worker.pool_table)
            head = pool_table.running_in(self.worker_pid) if self.worker_pid else None
            for execution_id in (self.args[0], *(() if head is None else (head,))):
                try:
                    settle_lost(
                        resources.database,
                        resources.settings,
                        execution_id,
                        resources.worker_name,
                        str(lost),
                        RuleFinishing(resources.settings),
                    )
                except Exception:  # never break Celery's own handling of the lost task
                    log.exception("could not abandon execution %s of a dead pool", execution_id)
        super().on_failure(exc_info, *args, **kwargs)


@app.task(name="attune.sweep_workers")
def sweep_workers() -> dict[str, int]:
    """Deactivate stale workers, abandon their executions, fail scheduled ones left too long.

    Beat sweeps in its own process; this task is for whoever wants a sweep from a worker.
    """
    settings = resources.settings
    return sweep_and_record(resources.database, settings, RuleFinishing(settings)).counts()


@app.task(name="attune.advance_workflow")
def advance_workflow(workflow_id: int) -> bool:
    """Advance one workflow run (any number of these is safe); True when it ended now."""
    return advance(resources.database, resources.settings, workflow_id).finished


@app.task(name="attune.purge_executions")
def purge_executions(older_than_days: float) -> int:
    """Delete terminal executions older than ``older_than_days``."""
    with resources.database.session_scope() as session:
        return retention.purge(session, older_than_days)


@app.task(name="attune.execute_action", Request=ExecutionRequest)
def execute_action(execution_id: int) -> str | None:
    """Run one scheduled execution on this worker (at most once, whatever is redelivered)."""
    settings = resources.settings
    database, worker = resources.database, resources.worker_name
    finishing, handoff = RuleFinishing(settings), pool_table
    status = run_execution(database, settings, worker, execution_id, _watcher, finishing, handoff)
    return None if status is None else status.value
