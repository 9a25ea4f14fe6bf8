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
from dataclasses import dataclass

from sqlalchemy import bindparam, select

from attune import metrics
from attune.executions import dispatch
from attune.executions.completion import hub
from attune.executions.handoff import Taken, TakeOn
from attune.executions.secretbox import SecretBox
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import (
    EXECUTION_TABLE,
    ExecutionStatus,
    RunPhase,
    TaskState,
    WorkflowTask,
)
from attune.store.outage import through_outage
from attune.workflows import activations, children, ending, locking
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


Storing = locking.Store
"""A worker's store of its ended child's result in the advance's transaction, under the
run's lock (in its lock's statement on PostgreSQL): when it writes nothing, the child was no
longer its to end (the advance then rolls back)."""


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
    Without ``storing`` it first asks, in one autocommit round trip, whether an advance holds
    the run (:func:`attune.workflows.locking.held_elsewhere`), and opens no transaction if so.
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
    started = time.perf_counter()
    if unless_busy and storing is None and locking.held_elsewhere(database, workflow_id):
        # That advance takes this caller's ended child in: it looks again after its commit.
        metrics.observe_workflow_advance(time.perf_counter() - started)
        return Advanced(0, (), False)
    try:
        while True:
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
            started = time.perf_counter()
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


def _advance(
    database: Database,
    settings: Settings,
    workflow_id: int,
    unless_busy: bool,
    take_on: TakeOn | None,
    storing: Storing | None = None,
) -> tuple[list[dispatch.Dispatch], tuple[int, ...], bool, int, Taken | None, bool] | None:
    with database.session_scope() as session, session.no_autoflush:
        locked = locking.lock(session, workflow_id, unless_busy, storing)
        if locked is None:
            return None
        run, parent, kept = locked
        if storing is not None and not kept:
            raise _UnstoredError(workflow_id)  # rolls the lock back
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
            take_on=take_on,
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
        taken = step.taken
        if taken is None and take_on is not None:
            taken = take_on.take(session, step.dispatches, step.single)
        # Quiet: the pass took in every child in flight when it locked the run (PostgreSQL),
        # so no worker that stored a child meanwhile skipped the advance for this one's sake.
        quiet = getattr(parent, "in_flight", None) == step.taken_in
        return step.dispatches, tuple(follow), finished, step.consumed, taken, quiet


def _consume(step: Pass) -> None:
    """Take in every ended child's outcome (once each), in the order they ended; a fan-out
    refills once, with its last outcome of the pass."""
    ended = children.consume_ended(step)
    step.consumed += len(ended)
    last = {id(activation): n for n, (_, activation) in enumerate(ended)}
    for n, (row, activation) in enumerate(ended):
        if activation is not None and activation.state == TaskState.RUNNING.value:
            step.taken_in += 1
            activations.child_ended(step, activation, row, settle=last[id(activation)] == n)


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
