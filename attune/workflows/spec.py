"""A workflow file as values: :class:`WorkflowSpec` and its :class:`TaskSpec` list.

Built by :func:`attune.workflows.reader.parse`, which validates the file and compiles every
expression; the engine builds the same values from the copy stored with each run.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from attune.executions.policies import RetryPolicy
from attune.expressions import Template

FAIL = "fail"
NOOP = "noop"
RESERVED_TARGETS = frozenset({FAIL, NOOP})
"""The ``do`` targets that are not tasks: fail the run, or mark a failure handled."""

OUTCOME_FUNCTIONS = ("succeeded", "failed", "timed_out", "abandoned", "canceled", "completed")
"""The functions of a task's outcome an expression may call."""

VARS_ROOTS = ("input", "parameters", "vars", "workflow")
"""Names the ``vars`` of a workflow may use (in order, each may use those before it)."""
OUTPUT_ROOTS = (*VARS_ROOTS, "tasks")
"""Names the ``output`` may use."""
INPUT_ROOTS = (*OUTPUT_ROOTS, "item", "index")
"""Names a task's ``input`` and ``with.items`` may use."""
NEXT_ROOTS = (*OUTPUT_ROOTS, "result", "item", "index", *OUTCOME_FUNCTIONS)
"""Names a transition's ``when`` and ``publish`` may use."""

MAX_ITEMS = 10_000
"""Most items one fan-out may have."""
MAX_CONCURRENCY = 1_000
"""Largest ``with.concurrency``."""
MAX_ACTIVATIONS = 10_000
"""Most task activations one run may make."""
MAX_TASK_ACTIVATIONS = 100
"""Most activations of one task in one run (a loop's cap)."""
MAX_VARS_BYTES = 1024 * 1024
"""Largest ``vars`` of a run, as JSON."""
MAX_DEPTH = 8
"""Deepest nesting of workflows, the outermost counted."""


class OnCancel(enum.StrEnum):
    """What a canceled run does with its running tasks."""

    KILL_RUNNING = "kill_running"
    FINISH_RUNNING = "finish_running"


@dataclass(frozen=True)
class Transition:
    """One ``next`` entry: when it matches (None: always), what it publishes, where it goes."""

    when: Template | None
    publish: tuple[tuple[str, Template], ...] = ()
    do: tuple[str, ...] = ()
    field: str = ""
    """Where it is in the file (``tasks[0].next[1]``), for messages."""


@dataclass(frozen=True)
class FanOut:
    """A task's ``with``: one child per item, at most ``concurrency`` at once."""

    items: Template
    concurrency: int
    fail_fast: bool = True


@dataclass(frozen=True)
class TaskSpec:
    """One task of a workflow."""

    name: str
    action: str
    input: Template
    fan_out: FanOut | None = None
    join: int | None = None
    """Arrivals an activation waits for; None: every arrival activates the task again."""
    retry: RetryPolicy | None = None
    timeout_s: int | None = None
    delay_s: float = 0.0
    next: tuple[Transition, ...] = ()
    field: str = ""
    """Where it is in the file (``tasks[2]``), for messages."""


@dataclass(frozen=True)
class WorkflowSpec:
    """A validated workflow file, its expressions compiled."""

    tasks: Mapping[str, TaskSpec]
    start: tuple[str, ...]
    inbound: Mapping[str, tuple[str, ...]]
    """For each task, the tasks whose transitions name it, in file order."""
    vars: tuple[tuple[str, Template], ...] = ()
    output: tuple[tuple[str, Template], ...] = ()
    timeout_s: int | None = None
    fail_fast: bool = True
    on_cancel: OnCancel = OnCancel.KILL_RUNNING
    document: Mapping[str, Any] = field(default_factory=dict)
    """The file as read: what is stored with each run."""
