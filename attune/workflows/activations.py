"""Task activations: starting them, taking in their children's outcomes, following ``next``.

Every function here runs inside one advance's transaction (:class:`Pass`), under the run's
row lock, so each reads and writes the run's rows without racing another advance.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from attune.errors import AttuneError
from attune.store.models import ExecutionStatus, TaskState, WorkflowTask
from attune.workflows import children
from attune.workflows.context import json_size, outcome_functions
from attune.workflows.spec import (
    FAIL,
    MAX_ACTIVATIONS,
    MAX_ITEMS,
    MAX_TASK_ACTIVATIONS,
    MAX_VARS_BYTES,
    NOOP,
    TaskSpec,
    Transition,
)
from attune.workflows.state import Pass


def activate(step: Pass, name: str, source: str | None) -> None:
    """An arrival at task ``name`` (from ``source``; None for a start task).

    A join's arrival counts on its open activation; anything else is a new activation.
    """
    task = step.spec.tasks[name]
    arrivals = [] if source is None else [source]
    if task.join is not None:
        step.session.flush()  # an activation this advance made is waiting too
        waiting = step.session.scalars(
            select(WorkflowTask)
            .where(
                WorkflowTask.workflow_id == step.workflow_id,
                WorkflowTask.task == name,
                WorkflowTask.state == TaskState.WAITING.value,
            )
            .order_by(WorkflowTask.occurrence)
            .limit(1)
        ).first()
        if waiting is not None:
            waiting.arrivals = [*waiting.arrivals, *arrivals]
            _ready_if_joined(step, waiting, task)
            step.changed = True
            return
    made = step.run.counts.get(name, 0)
    if made >= MAX_TASK_ACTIVATIONS or step.run.activations >= MAX_ACTIVATIONS:
        limit = f"{MAX_TASK_ACTIVATIONS} of one task" if made else f"{MAX_ACTIVATIONS} in a run"
        step.record_error(name, f"not started again: at most {limit} activations")
        step.stop()
        return
    activation = WorkflowTask(
        workflow_id=step.workflow_id,
        task=name,
        occurrence=made + 1,
        state=TaskState.WAITING.value,
        arrivals=arrivals,
        next_item=0,
        in_flight=0,
        tripped=False,
    )
    step.session.add(activation)
    step.run.activations += 1
    step.run.counts = {**step.run.counts, name: made + 1}
    _ready_if_joined(step, activation, task)
    step.changed = True


def _ready_if_joined(step: Pass, activation: WorkflowTask, task: TaskSpec) -> None:
    if task.join is None or len(activation.arrivals) >= task.join:
        activation.state = TaskState.READY.value
        if not task.delay_s:
            step.ready.append(activation)
            return
        activation.not_before = step.now + timedelta(seconds=task.delay_s)
        due = [activation.not_before, step.run.wake_at]
        step.run.wake_at = min(moment for moment in due if moment is not None)


def launch(step: Pass, activation: WorkflowTask) -> None:
    """Start a ready activation: its one child, or the first of its fan-out's items."""
    task = step.spec.tasks[activation.task]
    activation.state = TaskState.RUNNING.value
    step.changed = True
    if task.fan_out is None:
        try:
            children.start_one(step, activation, task)
        except AttuneError as error:
            _evaluation_failed(step, activation, str(error))
        return
    try:
        items = _items(step, task)
    except AttuneError as error:
        _evaluation_failed(step, activation, str(error))
        return
    activation.items = list(items)
    refill(step, activation)
    if not items:
        end(step, activation, ExecutionStatus.SUCCEEDED.value, [], None)


def _items(step: Pass, task: TaskSpec) -> list[Any]:
    """A fan-out's items, rendered: a list of at most :data:`MAX_ITEMS`."""
    assert task.fan_out is not None
    items = task.fan_out.items.render(step.context(), f"{task.field}.with.items")
    if not isinstance(items, list | tuple):
        raise AttuneError(f"{task.field}.with.items: gave {type(items).__name__}, not a list")
    if len(items) > MAX_ITEMS:
        raise AttuneError(f"{task.field}.with.items: {len(items)} items (limit {MAX_ITEMS})")
    return list(items)


def refill(step: Pass, activation: WorkflowTask) -> None:
    """Start a fan-out's next items, up to its concurrency, unless it or the run stopped."""
    task = step.spec.tasks[activation.task]
    assert task.fan_out is not None
    assert activation.items is not None
    room = task.fan_out.concurrency - activation.in_flight
    pending: list[tuple[Any, dict[str, Any]]] = []
    while (
        len(pending) < room
        and activation.next_item < len(activation.items)
        and not activation.tripped
        and step.may_start
    ):
        index = activation.next_item
        activation.next_item = index + 1
        try:
            pending.append(children.child_row(step, activation, task, index))
        except AttuneError as error:
            activation.tripped = True
            activation.error = str(error)
            step.record_error(activation.task, str(error), item=index)
            step.stop()
    children.record(step, activation, pending)


def child_ended(step: Pass, activation: WorkflowTask, row: Any, *, settle: bool = True) -> None:
    """Take in the outcome of a child's last attempt.

    A fan-out refills and may end only with ``settle``: the caller takes in all of a pass's
    outcomes of one activation first and settles with its last, so the items they free
    start in one INSERT, not one per outcome.
    """
    activation.in_flight -= 1
    step.changed = True
    step.touched.append(activation)
    task = step.spec.tasks[activation.task]
    if task.fan_out is None:
        end(step, activation, row.status, row.result, row.error, row.id)
        return
    if row.status != ExecutionStatus.SUCCEEDED and task.fan_out.fail_fast:
        activation.tripped = True
    if settle:
        _settle(step, activation)


def _settle(step: Pass, activation: WorkflowTask) -> None:
    """Start a fan-out's next items; end it when nothing is left in flight or to start."""
    refill(step, activation)
    assert activation.items is not None
    if activation.in_flight == 0 and (
        activation.next_item >= len(activation.items) or activation.tripped or not step.may_start
    ):
        results = children.item_results(step, activation)
        failed = [n for n, entry in enumerate(results) if not entry["ok"]]
        status = ExecutionStatus.FAILED.value if failed else ExecutionStatus.SUCCEEDED.value
        error = f"{len(failed)} of {len(results)} items did not succeed" if failed else None
        end(step, activation, status, results, error)


def _evaluation_failed(step: Pass, activation: WorkflowTask, error: str) -> None:
    """An expression or a child's parameters failed: the task fails, no branch is taken."""
    activation.error = error
    step.record_error(activation.task, error)
    step.stop()
    if activation.in_flight == 0:
        _close(step, activation, ExecutionStatus.FAILED.value, None, error, None)


def _close(
    step: Pass,
    activation: WorkflowTask,
    status: str,
    result: Any,
    error: str | None,
    execution_id: int | None,
) -> None:
    activation.state = status
    activation.result = step.redact(result)
    activation.error = error
    if execution_id is not None:
        activation.execution_id = execution_id
    activation.finished_at = step.now
    step.tasks.forget()
    step.changed = True


def end(
    step: Pass,
    activation: WorkflowTask,
    status: str,
    result: Any,
    error: str | None,
    execution_id: int | None = None,
) -> None:
    """The activation is over: record it, then follow its matching transitions in order."""
    evaluation_error = activation.error
    _close(step, activation, status, result, error or evaluation_error, execution_id)
    if evaluation_error is not None:
        return  # already recorded; a broken expression never picks a branch
    succeeded = status == ExecutionStatus.SUCCEEDED
    if not step.may_start:
        if not succeeded and step.run.ending is not None and step.run.phase == "running":
            _failure(step, activation, status, result, error)
        return
    context = step.context(result=result, **outcome_functions(status))
    handled, failing = succeeded, False
    task = step.spec.tasks[activation.task]
    try:
        for transition in task.next:
            if transition.when is not None and not transition.when.render(
                context, f"{transition.field}.when"
            ):
                continue
            _publish(step, transition, context)
            for target in transition.do:
                failing = failing or target == FAIL
                handled = handled or target != FAIL
                if target not in (FAIL, NOOP):
                    activate(step, target, activation.task)
    except AttuneError as problem:
        activation.state = ExecutionStatus.FAILED.value  # the task fails, whatever its child did
        activation.error = str(problem)
        step.tasks.forget()
        step.record_error(activation.task, str(problem), execution_id=execution_id)
        step.stop()
        return
    if failing or not handled:
        _failure(step, activation, status, result, error)
    if not handled:
        step.stop()


def _publish(step: Pass, transition: Transition, context: dict[str, Any]) -> None:
    """Render a matching transition's ``publish`` into the run's ``vars``."""
    published = dict(step.run.vars)
    for name, template in transition.publish:
        field = f"{transition.field}.publish.{name}"
        published[name] = step.redact(template.render(context, field))
    if json_size(published) > MAX_VARS_BYTES:
        raise AttuneError(f"{transition.field}.publish: vars over {MAX_VARS_BYTES} bytes")
    step.run.vars = published
    context["vars"] = published


def _failure(
    step: Pass, activation: WorkflowTask, status: str, result: Any, error: str | None
) -> None:
    """Record why the activation fails the run: one entry, or one per failed item."""
    task = step.spec.tasks[activation.task]
    if task.fan_out is not None and isinstance(result, list):
        for index, entry in enumerate(result):
            if not entry["ok"]:
                step.record_error(
                    activation.task,
                    str(entry["error"] or entry["status"]),
                    status=entry["status"],
                    item=index,
                )
        return
    attempt = None
    if activation.execution_id is not None:
        attempt = children.attempt_of(step, activation.execution_id)
    step.record_error(
        activation.task,
        error or f"ended {status}",
        status=status,
        attempt=attempt,
        execution_id=activation.execution_id,
    )
