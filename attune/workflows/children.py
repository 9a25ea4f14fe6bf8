"""A run's children: starting a task attempt as a child execution, and reading their outcomes.

A child is recorded by the scheduler's own row builder (validation, defaults, masking, sealed
secrets, the action's policy with the task's ``retry`` in place of its own), ``scheduled`` in
the advance's transaction; its message is sent only after commit. Retries of a child are the
policies' attempt chain: each attempt is its own execution, copying ``parent_id``,
``wf_task_id`` and ``wf_item``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, select, update

from attune.errors import AttuneError
from attune.executions import batch
from attune.executions.dispatch import Dispatch
from attune.executions.policies import Policy, RetryOn
from attune.executions.retries import ENDED_COLUMNS, Ended, eligible_at
from attune.executions.routing import Routed, Unroutable
from attune.executions.secretbox import SecretBox
from attune.rules import enforcement
from attune.store.models import (
    EXECUTION_TABLE,
    TERMINAL_STATUSES,
    ExecutionStatus,
    RunnerType,
    WorkflowTask,
)
from attune.store.sqltypes import in_literals
from attune.workflows.spec import MAX_DEPTH, TaskSpec
from attune.workflows.state import Pass

_E = EXECUTION_TABLE.c
_SUCCESSOR = EXECUTION_TABLE.alias("successor")
_HAS_SUCCESSOR = select(_SUCCESSOR.c.id).where(_SUCCESSOR.c.retry_of_id == _E.id).exists()
_TERMINAL = tuple(sorted(status.value for status in TERMINAL_STATUSES))


def child_row(
    step: Pass,
    activation: WorkflowTask,
    task: TaskSpec,
    index: int | None,
    *,
    trusting: bool = False,
) -> tuple[batch.Prepared, dict[str, Any]]:
    """The execution of one attempt of ``task`` (item ``index`` of a fan-out), not recorded;
    ``trusting``: validated against its action as last read here if known (``batch.prepare``).

    A rendering or validation problem raises :class:`AttuneError` naming the field.
    """
    item = None if index is None or activation.items is None else activation.items[index]
    context = step.context(item=item, index=index)
    values = task.input.render(context, f"{task.field}.input")
    prepared = batch.prepare(
        step.session, step.settings, task.action, values, step.actions, trusting=trusting
    )
    if prepared.runner_type == RunnerType.WORKFLOW and step.run.depth >= MAX_DEPTH:
        raise AttuneError(f"{task.action} would nest workflows deeper than {MAX_DEPTH} levels")
    row = _sealed(step, dict(prepared.row))
    if task.retry is not None:
        policy = Policy.from_json(row["policy"])
        if RetryOn.ABANDONED in task.retry.on and not policy.idempotent:
            raise AttuneError(
                f"{task.field}.retry.on: abandoned needs an idempotent action; "
                f"{task.action} is not (idempotent: true)"
            )
        policy = dataclasses.replace(policy, retry=task.retry)
        row.update(policy.snapshot(task.action, row["parameters"]))
    if task.timeout_s is not None:
        row["timeout_s"] = float(task.timeout_s)
    extra = {"parent_id": step.workflow_id, "wf_item": index}
    return dataclasses.replace(prepared, row=row), extra


def start_one(step: Pass, activation: WorkflowTask, task: TaskSpec) -> None:
    """Record the one child of a task that is not a fan-out, as :func:`record` does; validated
    against its action as last read here, it is inserted in one statement guarded by the
    action's ``updated_at`` (no read of the action per step of a sequence), already claimed
    when the caller's offer takes it (no claim after), and prepared again, reading the action,
    when that changed. Raises as :func:`child_row` does."""
    prepared, extra = child_row(step, activation, task, None, trusting=True)
    if prepared.known is not None:
        _counted(step, activation, 1)
        extra = {**extra, "wf_task_id": activation.id}
        taken = None
        if step.take_on is not None and step.taken is None:  # the caller may run it next
            taken = step.taken = step.take_on.recorded(step.session, prepared, extra)
        placed = None if taken else batch.record_known(step.session, step.settings, prepared, extra)
        if taken or placed:
            _placed(step, activation, [placed] if placed else [])
            return
        activation.in_flight -= 1  # the action changed since: read it, and count the child anew
        prepared, extra = child_row(step, activation, task, None)
    record(step, activation, [(prepared, extra)])


def _counted(step: Pass, activation: WorkflowTask, started: int) -> None:
    """Count ``started`` children in flight; a new activation is written, for its id."""
    activation.in_flight += started
    if activation.id is None:
        step.session.flush()  # a new activation: written with its in-flight count, for its id


def record(
    step: Pass,
    activation: WorkflowTask,
    pending: list[tuple[batch.Prepared, dict[str, Any]]],
) -> None:
    """Record ``pending`` children ``scheduled`` (``failed`` where no worker serves them, taken
    in later in this pass) and queue their messages for after commit."""
    if not pending:
        return
    _counted(step, activation, len(pending))
    requests = [(prepared, {**extra, "wf_task_id": activation.id}) for prepared, extra in pending]
    _placed(step, activation, batch.record_many(step.session, requests))


def _placed(step: Pass, activation: WorkflowTask, recorded: list[Routed | Unroutable]) -> None:
    """Children recorded for ``activation`` (counted in flight): their messages queued for
    after commit, or (``failed`` where no worker serves them) taken in later in this pass."""
    for placed in recorded:
        if isinstance(placed, Routed):
            step.dispatches.append(Dispatch(placed.execution_id, placed.queue))
            if activation.items is None:
                step.single.append(placed.execution_id)
        else:
            step.again = True
            for top in enforcement.follow_ups(step.session, step.settings, placed.execution_id):
                step.dispatches.extend(Dispatch(ran, queue) for _, ran, queue in top.routed())
    step.touched.append(activation)
    step.changed = True


def _sealed(step: Pass, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every parameter that carries a secret of the run sealed as the child's own
    secret and masked where it is stored (the child still gets the value, and redacts it)."""
    carrying = {
        name: value for name, value in row["parameters"].items() if step.redact(value) != value
    }
    if not carrying:
        return row
    box = SecretBox.for_settings(step.settings)
    sealed = box.decrypt(row["secrets"]) if row["secrets"] else {}
    masked = {name: step.redact(value) for name, value in carrying.items()}
    return {
        **row,
        "parameters": {**row["parameters"], **masked},
        "secrets": box.encrypt({**sealed, **carrying}),
    }


def ended(parent: ColumnElement[bool]) -> tuple[ColumnElement[bool], ...]:
    """The conditions of the children (of the runs ``parent`` picks) that ended and whose
    outcome their run has not taken in yet (the partial index ``ix_execution_unconsumed``)."""
    return (parent, _E.wf_consumed.is_(False), in_literals(_E.status, _TERMINAL))


_CONSUME = (
    update(EXECUTION_TABLE)
    .where(*ended(_E.parent_id == bindparam("workflow_id")))
    .values(wf_consumed=True)
    .returning(*ENDED_COLUMNS, _E.result, _E.error, _E.wf_task_id, _E.wf_item)
)
_CONSUMED = _CONSUME.cte("consumed")
_SAME_TASK = _CONSUMED.alias("same_task")
_FIRST_OF_TASK = (
    select(func.min(_SAME_TASK.c.id))
    .where(_SAME_TASK.c.wf_task_id == _CONSUMED.c.wf_task_id)
    .scalar_subquery()
)
# PostgreSQL takes the outcomes in and reads their activations in one statement (SQLite has
# no UPDATE inside a WITH); each activation comes once, with its first outcome (a fan-out's
# row holds its items: read once per pass, not once per item taken in).
_CONSUME_WITH_TASKS = (
    select(*_CONSUMED.c, WorkflowTask)
    .select_from(_CONSUMED)
    .outerjoin(
        WorkflowTask,
        and_(WorkflowTask.id == _CONSUMED.c.wf_task_id, _CONSUMED.c.id == _FIRST_OF_TASK),
    )
)
_SUCCESSORS = select(_E.retry_of_id).where(_E.retry_of_id.in_(bindparam("ids", expanding=True)))
_UNCONSUME = (
    update(EXECUTION_TABLE)
    .where(_E.id.in_(bindparam("ids", expanding=True)))
    .values(wf_consumed=False)
)


def consume_ended(step: Pass) -> list[tuple[Any, WorkflowTask | None]]:
    """Mark every ended child of the run taken in (one UPDATE, under the run's lock, so each
    exactly once); the last attempts among them, in the order they ended, each with its
    activation.

    An attempt whose retry carries on is taken in and skipped; one owed a retry not recorded
    yet (the sweep's repair makes it) is put back, to be looked at again.
    """
    joined = step.session.get_bind().dialect.name != "sqlite"
    consume = _CONSUME_WITH_TASKS if joined else _CONSUME
    rows = list(step.session.execute(consume, {"workflow_id": step.workflow_id}))
    if not rows:
        return []
    if joined:
        found = [row.WorkflowTask for row in rows if row.WorkflowTask is not None]
    else:
        tasks = {row.wf_task_id for row in rows}
        found = list(step.session.scalars(select(WorkflowTask).where(WorkflowTask.id.in_(tasks))))
    activations = {activation.id: activation for activation in found}
    step.changed = True
    rows.sort(key=lambda row: (row.finished_at, row.id))
    retriable = [row.id for row in rows if row.attempt < row.max_attempts]
    followed = set()
    if retriable:
        followed = set(step.session.scalars(_SUCCESSORS, {"ids": retriable}))
    final, owed = [], []
    for row in rows:
        if row.id in followed:
            continue
        if row.attempt < row.max_attempts and eligible_at(Ended.from_row(row), step.settings):
            owed.append(row.id)
            continue
        final.append(row)
    if owed:
        step.session.execute(_UNCONSUME, {"ids": owed})
    return [(row, activations.get(row.wf_task_id)) for row in final]


def attempt_of(step: Pass, execution_id: int) -> int | None:
    """The attempt number of a child execution."""
    attempt: int | None = step.session.scalar(select(_E.attempt).where(_E.id == execution_id))
    return attempt


def item_results(step: Pass, activation: WorkflowTask) -> list[dict[str, Any]]:
    """A fan-out's result: per item, in item order, the outcome of its last attempt."""
    items = activation.items or []
    rows = step.session.execute(
        select(_E.wf_item, _E.status, _E.result, _E.error).where(
            _E.wf_task_id == activation.id, ~_HAS_SUCCESSOR
        )
    ).all()
    last = {row.wf_item: row for row in rows}
    results = []
    for index, item in enumerate(items):
        row = last.get(index)
        if row is None:
            reason = activation.error or "not started: the fan-out stopped before this item"
            results.append(
                {"item": item, "ok": False, "status": "canceled", "result": None, "error": reason}
            )
            continue
        ok = row.status == ExecutionStatus.SUCCEEDED
        results.append(
            {"item": item, "ok": ok, "status": row.status, "result": row.result, "error": row.error}
        )
    return results


def cancel_children(step: Pass, kill_running: bool) -> None:
    """Cancel the children not started yet, and (``kill_running``) ask the running ones to stop.

    A running child that is itself a workflow is advanced after commit, so it cascades too.
    """
    not_started = (ExecutionStatus.REQUESTED.value, ExecutionStatus.SCHEDULED.value)
    step.session.execute(
        update(EXECUTION_TABLE)
        .where(_E.parent_id == step.workflow_id, in_literals(_E.status, not_started))
        .values(
            status=ExecutionStatus.CANCELED.value,
            error="canceled before it started: its workflow is ending",
            finished_at=step.now,
        )
    )
    if not kill_running:
        return
    stopping = step.session.execute(
        update(EXECUTION_TABLE)
        .where(and_(_E.parent_id == step.workflow_id, _E.status == ExecutionStatus.RUNNING.value))
        .values(status=ExecutionStatus.CANCELING.value)
        .returning(_E.id, _E.worker)
    ).all()
    step.woken.extend(row.id for row in stopping if row.worker is None)
