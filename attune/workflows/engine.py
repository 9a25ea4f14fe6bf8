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

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

from attune import metrics
from attune.executions import dispatch
from attune.executions.completion import hub
from attune.executions.handoff import Taken, TakeOn
from attune.executions.secretbox import SecretBox
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import (
    EXECUTION_TABLE,
    WORKFLOW_RUN_TABLE,
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
log = logging.getLogger(__name__)

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
    taken: Taken | None = None
    """The child claimed for the caller's process to run (``take_on``), its message unsent."""
    stored: bool = False
    """The caller's ``storing`` was committed with this advance."""


Storing = Callable[[Session], bool]
"""A worker's store of its ended child's result in the advance's transaction, under the
run's lock: False if the child was no longer its to end (the advance then rolls back)."""


class _UnstoredError(Exception):
    """The caller's child was settled meanwhile: its result is stored the caller's own way."""


def advance(
    database: Database,
    settings: Settings,
    workflow_id: int,
    *,
    unless_busy: bool = False,
    take_on: TakeOn | None = None,
    storing: Storing | None = None,
) -> Advanced:
    """Advance run ``workflow_id`` and, after commit, send what it started; then advance
    the runs it touched (a finished nested run's parent, canceled nested runs).

    With ``unless_busy`` (the worker that just stored a child's result) it returns at once
    when another advance holds the run (PostgreSQL): that one takes the child in, since each
    advance looks, after its commit, for children that ended meanwhile and goes again (unless
    its pass took in every child that was in flight when it locked the run: none can have).
    With ``take_on`` (that worker's pool process) one child it starts that this worker may
    run (not a fan-out's item) is claimed for the process in the same transaction, not sent.
    With ``storing`` (that worker's result of a child of this run) the first pass stores it
    first, so the child's end and its run's step are one commit; when the run is busy or the
    child was settled meanwhile nothing is stored (``stored`` False): the caller stores it.
    """
    sent, finished, idle = 0, False, 0
    follow: list[int] = []
    taken: Taken | None = None
    kept = False  # the caller's result, stored in a committed pass
    try:
        while True:
            started = time.perf_counter()
            offer = None if taken is not None else take_on
            store = None if kept else storing
            try:
                result = through_outage(
                    f"advancing workflow {workflow_id}",
                    functools.partial(
                        _advance, database, settings, workflow_id, unless_busy, offer, store
                    ),
                    DB_RETRY_DELAYS_S,
                )
            except _UnstoredError:
                break
            metrics.observe_workflow_advance(time.perf_counter() - started)
            if result is None:
                break
            kept = storing is not None
            dispatches, touched, finished, consumed, took, quiet = result
            taken = taken or took
            sent += dispatch.send(dispatches)
            follow.extend(touched)
            idle = 0 if consumed else idle + 1
            if finished or idle > 1 or quiet:
                break  # (two passes in a row that took nothing in saw only children owed a retry)
            if not database.run(_ENDED, {"workflow_id": workflow_id}):
                break
        if finished:
            hub.notify()
        for other in follow:
            advance(database, settings, other)
    except Exception:
        if taken is None and not kept:
            raise
        # The child claimed for the caller is committed running there (or its result stored):
        # that must be returned whatever fails after; the rest is left to a message (or the net).
        log.exception("could not finish advancing workflow %s; sending it", workflow_id)
        dispatch.send([dispatch.advance(workflow_id)])
    return Advanced(sent, tuple(follow), finished, taken, kept)


_ENDED = select(_E.id).where(*children.ended(_E.parent_id == bindparam("workflow_id"))).limit(1)


_PARENT_COLUMNS = (_E.parameters, _E.secrets, _E.status, _E.parent_id, db_now().label("now"))
_RUN = WORKFLOW_RUN_TABLE
_RUN_KEYS = tuple(column.key for column in _RUN.c)
_FREE = (
    select(_RUN.c.execution_id)
    .where(_RUN.c.execution_id == bindparam("id"))
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)


def _locking(free: bool) -> Any:
    """The UPDATE that locks a run that is not done (``free``: unless another holds it)."""
    target = _FREE if free else bindparam("id")
    return (
        update(_RUN)
        .where(_RUN.c.phase != RunPhase.DONE.value, _RUN.c.execution_id == target)
        .values(version=_RUN.c.version + 1)
    )


# The children in flight when the lock was taken (a running activation's): when the pass took
# in all of them, none can have ended while it held the lock, and no look after it is owed.
_IN_FLIGHT = (
    select(func.coalesce(func.sum(WorkflowTask.in_flight), 0))
    .where(
        WorkflowTask.workflow_id == _RUN.c.execution_id,
        WorkflowTask.state == TaskState.RUNNING.value,
    )
    .scalar_subquery()
    .label("in_flight")
)
# Core statements, built once: PostgreSQL locks the run and reads its parent in one statement
# (SQLite's RETURNING cannot name the joined table). The run's row becomes the session's
# object without the ORM's UPDATE ... RETURNING of an entity (about a quarter of an
# advance's CPU time).
_LOCK_JOINED = {
    free: _locking(free)
    .where(_E.id == _RUN.c.execution_id)
    .returning(*_RUN.c, *_PARENT_COLUMNS, _IN_FLIGHT)
    for free in (False, True)
}
_LOCK_ALONE = {free: _locking(free).returning(*_RUN.c) for free in (False, True)}
_PARENT = select(*_PARENT_COLUMNS).where(_E.id == bindparam("id"))


def _advance(
    database: Database,
    settings: Settings,
    workflow_id: int,
    unless_busy: bool,
    take_on: TakeOn | None,
    storing: Storing | None = None,
) -> tuple[list[dispatch.Dispatch], tuple[int, ...], bool, int, Taken | None, bool] | None:
    with database.session_scope() as session, session.no_autoflush:
        locked = _lock(session, workflow_id, unless_busy)
        if locked is None:
            return None
        if storing is not None and not storing(session):
            raise _UnstoredError(workflow_id)  # rolls the lock back
        run, parent = locked
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
        taken = None if take_on is None else take_on.take(session, step.dispatches, step.single)
        # Quiet: the pass took in every child in flight when it locked the run (PostgreSQL),
        # so no worker that stored a child meanwhile skipped the advance for this one's sake.
        quiet = getattr(parent, "in_flight", None) == step.taken_in
        return step.dispatches, tuple(follow), finished, step.consumed, taken, quiet


def _lock(session: Session, workflow_id: int, unless_busy: bool) -> tuple[WorkflowRun, Any] | None:
    """Lock the run (None if it is done, or busy with ``unless_busy``); it and its parent's
    row (parameters, secrets, status, its own parent, the database's ``now``)."""
    values = {"id": workflow_id}
    if session.get_bind().dialect.name != "sqlite":
        joined = session.execute(_LOCK_JOINED[unless_busy], values).first()
        return None if joined is None else (_attached(session, joined), joined)
    row = session.execute(_LOCK_ALONE[unless_busy], values).first()
    if row is None:
        return None
    return _attached(session, row), session.execute(_PARENT, values).one()


def _attached(session: Session, row: Any) -> WorkflowRun:
    """The locked run's row as the session's object, as if loaded (its changes are flushed)."""
    run = WorkflowRun(**{key: getattr(row, key) for key in _RUN_KEYS})
    make_transient_to_detached(run)
    session.add(run)
    return run


def _consume(step: Pass) -> None:
    """Take in every ended child's outcome (once each), in the order they ended."""
    ended = children.consume_ended(step)
    step.consumed += len(ended)
    for row, activation in ended:
        if activation is not None and activation.state == TaskState.RUNNING.value:
            step.taken_in += 1
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
