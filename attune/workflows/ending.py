"""How a run ends: the cancel and deadline cascade, and the parent's terminal transition."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from attune.errors import AttuneError
from attune.store.models import (
    EXECUTION_TABLE,
    OPEN_TASK_STATES,
    ExecutionStatus,
    RunPhase,
    TaskState,
    WorkflowTask,
)
from attune.store.sqltypes import in_literals
from attune.workflows import children
from attune.workflows.files import output_problems
from attune.workflows.spec import OnCancel
from attune.workflows.state import STOPPED, Pass

_E = EXECUTION_TABLE.c
_ENDABLE = (ExecutionStatus.RUNNING.value, ExecutionStatus.CANCELING.value)


def cancel(step: Pass, status: str) -> None:
    """Start nothing more, cancel what has not started, stop what runs (unless the workflow
    says ``finish_running``); the run ends ``status`` (canceled or timeout) once drained."""
    run = step.run
    run.phase = RunPhase.CANCELING.value
    run.ending = status
    step.session.execute(
        update(WorkflowTask)
        .where(
            WorkflowTask.workflow_id == step.workflow_id,
            WorkflowTask.state.in_((TaskState.WAITING.value, TaskState.READY.value)),
        )
        .values(state=TaskState.CANCELED.value, finished_at=step.now)
    )
    step.session.execute(
        update(EXECUTION_TABLE)
        .where(_E.id == step.workflow_id, _E.status == ExecutionStatus.RUNNING.value)
        .values(status=ExecutionStatus.CANCELING.value)
    )
    children.cancel_children(step, step.spec.on_cancel is OnCancel.KILL_RUNNING)
    step.changed = True


def finish_if_idle(step: Pass) -> bool:
    """End the parent when nothing is running or due; True if it ended now."""
    if step.busy:
        return False
    step.session.flush()  # the query below must see this advance's own changes
    open_rows = step.session.scalars(
        select(WorkflowTask).where(
            WorkflowTask.workflow_id == step.workflow_id,
            WorkflowTask.state.in_(OPEN_TASK_STATES),
        )
    ).all()
    if any(row.state == TaskState.RUNNING.value for row in open_rows):
        return False
    ready = [row for row in open_rows if row.state == TaskState.READY.value]
    if ready and step.may_start:
        due = [row.not_before for row in ready if row.not_before is not None]
        _set_wake(step, min(due) if due else step.now)
        return False
    for row in open_rows:
        if row.state == TaskState.WAITING.value and step.may_start:
            _unreached(step, row)
        row.state = TaskState.CANCELED.value
        row.finished_at = step.now
    _end_parent(step)
    return True


def _set_wake(step: Pass, due: datetime | None) -> None:
    moments = [moment for moment in (due, step.run.deadline_at) if moment is not None]
    step.run.wake_at = min(moments) if moments else None


def _unreached(step: Pass, row: WorkflowTask) -> None:
    task = step.spec.tasks[row.task]
    missing = [name for name in step.spec.inbound[row.task] if name not in row.arrivals]
    step.record_error(
        row.task,
        f"join never reached: {len(row.arrivals)} of {task.join} arrivals "
        f"(arrived: {', '.join(row.arrivals) or 'none'}; missing: {', '.join(missing)})",
    )


def _end_parent(step: Pass) -> None:
    run = step.run
    status, result, error = _verdict(step)
    started_at = step.session.scalar(select(_E.started_at).where(_E.id == step.workflow_id))
    duration_ms = None
    if started_at is not None:
        duration_ms = max(int((step.now - started_at).total_seconds() * 1000), 0)
    step.session.execute(
        update(EXECUTION_TABLE)
        .where(_E.id == step.workflow_id, in_literals(_E.status, _ENDABLE))
        .values(
            status=status, result=result, error=error, finished_at=step.now, duration_ms=duration_ms
        )
    )
    run.phase = RunPhase.DONE.value
    run.wake_at = None


def _verdict(step: Pass) -> tuple[str, Any, str | None]:
    """The parent's status, result and error."""
    run = step.run
    if run.ending is not None and run.ending != STOPPED and not run.errors:
        reason = "its deadline passed" if run.ending == "timeout" else "it was canceled"
        return run.ending, None, f"the workflow ended {run.ending}: {reason}"
    if not run.errors:
        try:
            output = {
                name: template.render(step.context(), f"output.{name}")
                for name, template in step.spec.output
            }
        except AttuneError as problem:
            step.record_error("output", str(problem))
        else:
            for mismatch in output_problems(run.spec, output):
                step.record_error(
                    "output", f"does not match the action's output schema: {mismatch}"
                )
            if not run.errors:
                return ExecutionStatus.SUCCEEDED.value, step.redact(output), None
    status = run.ending if run.ending in ("canceled", "timeout") else ExecutionStatus.FAILED.value
    errors = list(run.errors)
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return status, {"errors": errors}, f"task {first['task']}: {first['error']}{more}"
