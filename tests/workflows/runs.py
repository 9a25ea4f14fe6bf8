"""What the workflow tests read back: a run's children, its task activations, its state."""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import select

from attune.store.db import Database
from attune.store.models import TERMINAL_STATUSES, Execution, WorkflowRun, WorkflowTask
from tests.processes import wait_until

_TERMINAL = [status.value for status in TERMINAL_STATUSES]


def children(database: Database, parent_id: int) -> list[Execution]:
    """The run's child executions, oldest first."""
    with database.session_scope() as session:
        rows = session.scalars(
            select(Execution).where(Execution.parent_id == parent_id).order_by(Execution.id)
        ).all()
        session.expunge_all()
        return list(rows)


def activations(database: Database, parent_id: int) -> list[WorkflowTask]:
    """The run's task activations, in the order they were made."""
    with database.session_scope() as session:
        rows = session.scalars(
            select(WorkflowTask)
            .where(WorkflowTask.workflow_id == parent_id)
            .order_by(WorkflowTask.id)
        ).all()
        session.expunge_all()
        return list(rows)


def task_states(database: Database, parent_id: int) -> dict[str, str]:
    """Each task's latest activation state, by task name."""
    return {row.task: row.state for row in activations(database, parent_id)}


def child_of(database: Database, parent_id: int, task: str) -> list[Execution]:
    """The child executions of task ``task`` of the run, oldest first."""
    ids = {row.id for row in activations(database, parent_id) if row.task == task}
    return [row for row in children(database, parent_id) if row.wf_task_id in ids]


def wait_running(database: Database, parent_id: int, task: str | None = None) -> Execution:
    """Wait until a child of the run (of task ``task``) runs, its process group known."""

    def probe() -> Execution | None:
        rows = (
            children(database, parent_id) if task is None else child_of(database, parent_id, task)
        )
        live = [row for row in rows if row.status == "running" and row.pgid and row.worker]
        return live[0] if live else None

    return wait_until(probe, 30, f"a child of run {parent_id} ({task or 'any task'}) to run")


def workflow_run(database: Database, parent_id: int) -> WorkflowRun:
    """The run's ``workflow_run`` row."""
    with database.session_scope() as session:
        row = session.get_one(WorkflowRun, parent_id)
        session.expunge(row)
        return row


def duplicates(database: Database, parent_id: int) -> dict[Any, int]:
    """Attempts recorded more than once: (activation, item, attempt) → count."""
    keys = Counter(
        (row.wf_task_id, row.wf_item, row.attempt) for row in children(database, parent_id)
    )
    return {key: count for key, count in keys.items() if count > 1}


def most_at_once(rows: list[Execution]) -> int:
    """The most of these executions running at one instant, on the database clock (an end
    counts before a start at the same instant); each must have started and finished."""
    events: list[tuple[datetime, int]] = []
    for row in rows:
        assert row.started_at is not None, f"execution {row.id} never started"
        assert row.finished_at is not None, f"execution {row.id} never finished"
        events += [(row.started_at, 1), (row.finished_at, -1)]
    level = peak = 0
    for _, step in sorted(events):
        level += step
        peak = max(peak, level)
    return peak


def unfinished(database: Database) -> list[tuple[int, str, str]]:
    """Every execution not terminal: (id, action, status)."""
    with database.session_scope() as session:
        rows = session.execute(
            select(Execution.id, Execution.action_ref, Execution.status).where(
                Execution.status.not_in(_TERMINAL)
            )
        ).all()
    return [(row.id, row.action_ref, row.status) for row in rows]


def group_alive(pgid: int) -> bool:
    """True while some process of process group ``pgid`` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_gone(*pgids: int | None) -> None:
    """Wait until nothing of these process groups is left (reaped too)."""
    assert None not in pgids, "a process group was never recorded"
    wait_until(
        lambda: not any(group_alive(pgid) for pgid in pgids if pgid is not None),
        30,
        f"process groups {pgids} to be gone",
    )


def kill_group(pgid: int) -> None:
    """SIGKILL process group ``pgid`` if anything of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
