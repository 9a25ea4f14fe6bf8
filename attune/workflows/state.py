"""One advance's working state: the locked run, its spec, its context, what to send after commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from attune.executions.dispatch import Dispatch
from attune.executions.handoff import Taken, TakeOn
from attune.settings import Settings
from attune.store.models import RunPhase, WorkflowRun, WorkflowTask
from attune.workflows.context import Redactor, TaskResults
from attune.workflows.spec import WorkflowSpec

STOPPED = "failed"
"""``workflow_run.ending`` once an unhandled failure stopped a fail-fast run."""


@dataclass
class Pass:
    """What one :func:`attune.workflows.engine.advance` works on, inside its transaction."""

    session: Session
    settings: Settings
    run: WorkflowRun
    spec: WorkflowSpec
    now: datetime
    parameters: dict[str, Any]
    redact: Redactor
    tasks: TaskResults
    dispatches: list[Dispatch] = field(default_factory=list)
    woken: list[int] = field(default_factory=list)
    """Nested runs to advance after commit (canceled with this one)."""
    actions: dict[str, Any] = field(default_factory=dict)
    """Actions read in this transaction, by ref (the scheduler's ``prepare`` cache)."""
    ready: list[WorkflowTask] = field(default_factory=list)
    """Activations made ready in this pass, to start before it ends."""
    again: bool = False
    """A child was recorded ``failed`` (no worker serves it): take its outcome in this pass."""
    consumed: int = 0
    """Children whose outcome this pass took in."""
    taken_in: int = 0
    """Of those, the ones a running activation had in flight (each lowers its count)."""
    single: list[int] = field(default_factory=list)
    """Children started in this pass that are not a fan-out's items (one may be taken on: a
    fan-out's many items go by message, the broker spreading them over the workers' slots)."""
    take_on: TakeOn | None = None
    """The caller's offer to run one child it starts (``Advanced.taken``)."""
    taken: Taken | None = None
    """The child this pass recorded claimed for the caller (``take_on.recorded``)."""
    touched: list[WorkflowTask] = field(default_factory=list)
    """Activations whose children this pass started or took in."""
    changed: bool = False

    @property
    def workflow_id(self) -> int:
        """The run's parent execution id."""
        return self.run.execution_id

    @property
    def may_start(self) -> bool:
        """True while new tasks may start: not canceling, not stopped by a fail-fast failure."""
        return self.run.phase == RunPhase.RUNNING and self.run.ending is None

    @property
    def busy(self) -> bool:
        """True when a child is known to still run (one this pass touched is in flight)."""
        return any(activation.in_flight > 0 for activation in self.touched)

    def context(self, **names: Any) -> dict[str, Any]:
        """The names an expression sees, with ``names`` (``result``, ``item``, …) added."""
        return {
            "input": self.parameters,
            "parameters": self.parameters,
            "vars": self.run.vars,
            "tasks": self.tasks,
            "workflow": {"execution_id": self.workflow_id},
            "item": None,
            "index": None,
            **names,
        }

    def record_error(
        self,
        task: str,
        error: str,
        *,
        status: str = "failed",
        item: int | None = None,
        attempt: int | None = None,
        execution_id: int | None = None,
    ) -> None:
        """Add one entry to the run's errors: the run will end ``failed``."""
        entry = {
            "task": task,
            "item": item,
            "attempt": attempt,
            "execution_id": execution_id,
            "status": status,
            "error": self.redact(error),
        }
        self.run.errors = [*self.run.errors, entry]
        self.changed = True

    def stop(self) -> None:
        """An unhandled failure: a fail-fast run starts nothing more."""
        if self.spec.fail_fast and self.run.ending is None:
            self.run.ending = STOPPED
            self.changed = True
