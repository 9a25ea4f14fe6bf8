"""Rows the tests put in the database directly, and the rows they read back."""

from __future__ import annotations

from sqlalchemy import select

from attune.store.db import Database
from attune.store.models import Execution, ExecutionStatus, Worker


def add_execution(
    database: Database, worker: str | None, status: ExecutionStatus = ExecutionStatus.RUNNING
) -> int:
    """Insert an execution of ``core.sleep`` in ``status`` for ``worker``; returns its id."""
    with database.session_scope() as session:
        execution = Execution(action_ref="core.sleep", worker=worker, status=status)
        session.add(execution)
        session.flush()
        return execution.id


def execution_row(database: Database, execution_id: int) -> Execution:
    """The execution as it is now."""
    with database.session_scope() as session:
        return session.get_one(Execution, execution_id)


def worker_row(database: Database, name: str) -> Worker | None:
    """The worker's row as it is now, or None."""
    with database.session_scope() as session:
        return session.scalars(select(Worker).where(Worker.name == name)).one_or_none()


def worker_status(database: Database, name: str) -> str | None:
    """The worker's status as it is now, or None when it has no row."""
    row = worker_row(database, name)
    return None if row is None else row.status
