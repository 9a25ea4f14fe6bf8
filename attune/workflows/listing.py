"""A run's tasks as operators read them: one line per attempt of each task activation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, WORKFLOW_TASK_TABLE

_E = EXECUTION_TABLE.c
_T = WORKFLOW_TASK_TABLE.c


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
    query = (
        select(
            _T.task,
            _T.occurrence,
            _T.state,
            _E.wf_item,
            _E.attempt,
            _E.status,
            _E.id.label("execution_id"),
        )
        .select_from(WORKFLOW_TASK_TABLE.outerjoin(EXECUTION_TABLE, _E.wf_task_id == _T.id))
        .where(_T.workflow_id == workflow_id)
        .order_by(_T.id, _E.wf_item, _E.attempt)
    )
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
