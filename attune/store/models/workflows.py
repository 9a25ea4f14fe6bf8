"""Workflow runs and their task activations (migration 20261201_0011).

A workflow run is a parent execution; each attempt of a task is an ordinary child execution
whose ``parent_id``, ``wf_task_id`` and ``wf_item`` say where it belongs. ``workflow_run`` and
``workflow_task`` are written only by :func:`attune.workflows.engine.advance`, under the run's
row lock.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from attune.store.models.base import _EXECUTION_ID, Base, _created, _values
from attune.store.sqltypes import JSONType, UTCDateTime, one_of


class RunPhase(enum.StrEnum):
    """Where a workflow run is: advancing, draining after a cancel or deadline, or over."""

    RUNNING = "running"
    CANCELING = "canceling"
    DONE = "done"


class TaskState(enum.StrEnum):
    """Where a task activation is; the last five are its outcomes, as ``tasks.X.status``."""

    WAITING = "waiting"  # a join short of its arrivals
    READY = "ready"  # to start (not before ``not_before``)
    RUNNING = "running"  # children in flight
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    ABANDONED = "abandoned"
    CANCELED = "canceled"


OPEN_TASK_STATES = (TaskState.WAITING.value, TaskState.READY.value, TaskState.RUNNING.value)
"""The states of an activation that has not ended."""


class WorkflowRun(Base):
    """The state of one workflow run beside its parent execution."""

    __tablename__ = "workflow_run"
    __table_args__ = (
        CheckConstraint(one_of("phase", _values(RunPhase)), name="phase"),
        Index(
            "ix_workflow_run_wake_at",
            "wake_at",
            postgresql_where=text("phase <> 'done'"),
            sqlite_where=text("phase <> 'done'"),
        ),
    )

    execution_id: Mapped[int] = mapped_column(
        _EXECUTION_ID, ForeignKey("execution.id", ondelete="CASCADE"), primary_key=True
    )
    # The workflow file as validated when the pack was loaded: a reload changes no run.
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    vars: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    phase: Mapped[str] = mapped_column(String(16), default=RunPhase.RUNNING)
    # Why it fails, one entry per failed task: {task, item, attempt, execution_id, status, error}.
    errors: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    # canceled or timeout once a cancel or the deadline started draining it.
    ending: Mapped[str | None] = mapped_column(String(16))
    depth: Mapped[int] = mapped_column(Integer, default=1)
    activations: Mapped[int] = mapped_column(Integer, default=0)
    # Activations made so far, by task name (the next one's occurrence, a loop's cap).
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=0)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The earliest moment something is due (a delayed task, the deadline); NULL: nothing.
    wake_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = _created()


class WorkflowTask(Base):
    """One activation of a task of a run: a join's barrier, a fan-out's cursor, its outcome."""

    __tablename__ = "workflow_task"
    __table_args__ = (
        CheckConstraint(one_of("state", _values(TaskState)), name="state"),
        UniqueConstraint("workflow_id", "task", "occurrence"),
        Index(
            "ix_workflow_task_open",
            "workflow_id",
            "state",
            postgresql_where=text("state IN ('waiting', 'ready', 'running')"),
            sqlite_where=text("state IN ('waiting', 'ready', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(_EXECUTION_ID, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(
        _EXECUTION_ID, ForeignKey("workflow_run.execution_id", ondelete="CASCADE")
    )
    task: Mapped[str] = mapped_column(String(64))
    occurrence: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    # The tasks whose transitions arrived here, in order (a join counts them).
    arrivals: Mapped[list[str]] = mapped_column(JSONType, default=list)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A fan-out: its items as rendered, the next one to start, how many are in flight.
    items: Mapped[list[Any] | None] = mapped_column(JSONType)
    next_item: Mapped[int] = mapped_column(Integer, default=0)
    in_flight: Mapped[int] = mapped_column(Integer, default=0)
    tripped: Mapped[bool] = mapped_column(default=False)
    result: Mapped[Any | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    execution_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


WORKFLOW_RUN_TABLE = cast(Table, WorkflowRun.__table__)
WORKFLOW_TASK_TABLE = cast(Table, WorkflowTask.__table__)
"""These models' Core tables, for statements built once."""
