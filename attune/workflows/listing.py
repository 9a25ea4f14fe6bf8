"""A run's tasks as operators read them: one line per attempt of each task activation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Select, select

from attune.store.db import Database
from attune.store.models import ACTION_TABLE, EXECUTION_TABLE, WORKFLOW_TASK_TABLE, RunnerType

_A = ACTION_TABLE.c
_E = EXECUTION_TABLE.c
_T = WORKFLOW_TASK_TABLE.c
_ATTEMPTS = select(
    _T.task,
    _T.occurrence,
    _T.state,
    _E.wf_item,
    _E.attempt,
    _E.status,
    _E.id.label("execution_id"),
).select_from(WORKFLOW_TASK_TABLE.outerjoin(EXECUTION_TABLE, _E.wf_task_id == _T.id))


@dataclass(frozen=True)
class TaskAttempt:
    """One child execution of a run, or an activation that started none (a join never
    reached, a task canceled before it started, an expression that failed)."""

    task: str
    occurrence: int
    item: int | None
    attempt: int | None
    status: str
    execution_id: int | None

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``attune executions tasks --json`` prints."""
        return asdict(self)


def tasks_of(database: Database, workflow_id: int) -> list[TaskAttempt]:
    """Every task attempt of run ``workflow_id``, in the order the activations were made."""
    query = _ATTEMPTS.where(_T.workflow_id == workflow_id).order_by(_T.id, _E.wf_item, _E.attempt)
    return _attempts(database, query)


def task_of(database: Database, execution_id: int) -> TaskAttempt | None:
    """The task attempt child execution ``execution_id`` is (None outside a workflow)."""
    found = _attempts(database, _ATTEMPTS.where(_E.id == execution_id))
    return found[0] if found else None


def is_workflow(database: Database, action_ref: str) -> bool:
    """True when ``action_ref`` is a loaded workflow action (its executions are runs)."""
    query = select(_A.runner_type).where(_A.ref == action_ref)
    with database.session_scope() as session:
        return session.scalar(query) == RunnerType.WORKFLOW


def _attempts(database: Database, query: Select[Any]) -> list[TaskAttempt]:
    with database.session_scope() as session:
        rows = session.execute(query).all()
    return [
        TaskAttempt(
            task=row.task,
            occurrence=row.occurrence,
            item=row.wf_item,
            attempt=row.attempt,
            status=row.state if row.execution_id is None else row.status,
            execution_id=row.execution_id,
        )
        for row in rows
    ]
