"""The engine: one idempotent function, :func:`advance`, moves a workflow run forward.

It runs in one transaction under the run's row lock (an UPDATE of ``workflow_run``: a row lock
on PostgreSQL, the write lock on SQLite, taken by the first statement): it takes in each
ended child's outcome exactly once (a conditional UPDATE of ``wf_consumed``), refills
fan-outs, follows ``next``, records the children that become ready ``scheduled``, handles a
cancel or a passed deadline, and ends the parent when nothing is left. Messages go out only
after commit. Any number of calls is safe; one after each change is enough. There is no
coordinator process, no sleep and no Celery canvas.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from attune import metrics
from attune.executions import dispatch
from attune.executions.completion import hub
from attune.executions.secretbox import SecretBox
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import (
    EXECUTION_TABLE,
    ExecutionStatus,
    RunPhase,
    TaskState,
    WorkflowRun,
    WorkflowTask,
)
from attune.store.outage import through_outage
from attune.store.sqltypes import db_now
from attune.workflows import activations, children, ending
from attune.workflows.context import Redactor, TaskResults
from attune.workflows.reader import stored
from attune.workflows.state import Pass

_E = EXECUTION_TABLE.c

DB_RETRY_DELAYS_S = (0.05, 0.2, 0.5, 1.0, 2.0)
"""Pauses before trying an advance again after a database error (the beat net follows)."""
MAX_ROUNDS = 10_000
"""Most consume/start rounds of one advance (each round makes progress or ends it)."""


@dataclass(frozen=True)
class Advanced:
    """What one advance did: the messages it sent, the runs to advance next."""

    sent: int
    follow: tuple[int, ...]
    finished: bool


def advance(
    database: Database, settings: Settings, workflow_id: int, *, unless_busy: bool = False
) -> Advanced:
    """Advance run ``workflow_id`` and, after commit, send what it started; then advance
    the runs it touched (a finished nested run's parent, canceled nested runs).

    With ``unless_busy`` (the worker that just stored a child's result) it returns at once
    when another advance holds the run (PostgreSQL): that one takes the child in, since each
    advance looks, after its commit, for children that ended meanwhile and goes again.
    """
    sent, finished, idle = 0, False, 0
    follow: list[int] = []
    while True:
        started = time.perf_counter()
        result = through_outage(
            f"advancing workflow {workflow_id}",
            lambda: _advance(database, settings, workflow_id, unless_busy),
            DB_RETRY_DELAYS_S,
        )
        metrics.observe_workflow_advance(time.perf_counter() - started)
        if result is None:
            break
        dispatches, touched, finished, consumed = result
        sent += dispatch.send(dispatches)
        follow.extend(touched)
        idle = 0 if consumed else idle + 1
        if finished or idle > 1 or not database.run(_ENDED, {"workflow_id": workflow_id}):
            break  # (two passes in a row that took nothing in saw only children owed a retry)
    if finished:
        hub.notify()
    for other in follow:
        advance(database, settings, other)
    return Advanced(sent, tuple(follow), finished)


_ENDED = select(_E.id).where(*children.ended(_E.parent_id == bindparam("workflow_id"))).limit(1)


_LOCK = (
    update(WorkflowRun)
    .where(WorkflowRun.phase != RunPhase.DONE.value)
    .values(version=WorkflowRun.version + 1)
    .returning(WorkflowRun)
)
_FREE = (
    select(WorkflowRun.execution_id)
    .where(WorkflowRun.execution_id == bindparam("id"))
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)


def _advance(
    database: Database, settings: Settings, workflow_id: int, unless_busy: bool
) -> tuple[list[dispatch.Dispatch], tuple[int, ...], bool, int] | None:
    locked = WorkflowRun.execution_id == (_FREE if unless_busy else workflow_id)
    with database.session_scope() as session, session.no_autoflush:
        run = session.scalars(
            _LOCK.where(locked), {"id": workflow_id}, execution_options={"populate_existing": True}
        ).first()
        if run is None:
            return None
        parent = session.execute(_PARENT, {"id": workflow_id}).one()
        spec = stored(run.spec["file"])
        secrets = SecretBox.for_settings(settings).decrypt(parent.secrets) if parent.secrets else {}
        step = Pass(
            session=session,
            settings=settings,
            run=run,
            spec=spec,
            now=parent.now,
            parameters={**parent.parameters, **secrets},
            redact=Redactor(secrets),
            tasks=TaskResults(session, workflow_id, tuple(spec.tasks)),
        )
        if parent.status == ExecutionStatus.CANCELING and run.phase == RunPhase.RUNNING:
            ending.cancel(step, ExecutionStatus.CANCELED.value)
        if run.deadline_at is not None and step.now >= run.deadline_at and run.ending is None:
            ending.cancel(step, ExecutionStatus.TIMEOUT.value)
        _consume(step)
        if run.version == 1 or (run.wake_at is not None and run.wake_at <= step.now):
            _load_due(step)  # the start tasks, or a delayed task now due
        for _ in range(MAX_ROUNDS):
            _start_ready(step)
            if not step.again:
                break
            step.again = False
            _consume(step)
        finished = ending.finish_if_idle(step)
        follow = list(step.woken)
        if finished and parent.parent_id is not None:
            follow.append(parent.parent_id)
        return step.dispatches, tuple(follow), finished, step.consumed


_PARENT = select(_E.parameters, _E.secrets, _E.status, _E.parent_id, db_now().label("now")).where(
    _E.id == bindparam("id")
)


def _consume(step: Pass) -> None:
    """Take in every ended child's outcome (once each), in the order they ended."""
    rows = children.consume_ended(step)
    step.consumed += len(rows)
    if not rows:
        return
    ids = {row.wf_task_id for row in rows}
    found = step.session.scalars(select(WorkflowTask).where(WorkflowTask.id.in_(ids))).all()
    by_id = {activation.id: activation for activation in found}
    for row in rows:
        activation = by_id.get(row.wf_task_id)
        if activation is not None and activation.state == TaskState.RUNNING.value:
            activations.child_ended(step, activation, row)


def _load_due(step: Pass) -> None:
    """Queue the ready activations due by now (not started in the pass that made them)."""
    step.session.flush()
    ready = step.session.scalars(
        select(WorkflowTask)
        .where(
            WorkflowTask.workflow_id == step.workflow_id,
            WorkflowTask.state == TaskState.READY.value,
        )
        .order_by(WorkflowTask.id)
    ).all()
    step.ready.extend(row for row in ready if row.not_before is None or row.not_before <= step.now)
    later = [row.not_before for row in ready if row.not_before and row.not_before > step.now]
    due = [moment for moment in (*later, step.run.deadline_at) if moment is not None]
    step.run.wake_at = min(due) if due else None


def _start_ready(step: Pass) -> None:
    """Start the queued ready activations (starting one may make others ready)."""
    while step.ready and step.may_start:
        activations.launch(step, step.ready.pop(0))
