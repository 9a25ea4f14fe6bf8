"""Retention: only terminal executions older than the cutoff go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from attune.executions import retention
from attune.store.db import Database
from attune.store.models import Execution, ExecutionStatus

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def add(database: Database, status: ExecutionStatus, age_days: float, finished: bool) -> None:
    moment = NOW - timedelta(days=age_days)
    with database.session_scope() as session:
        session.add(
            Execution(
                action_ref=f"core.{status.value}",
                status=status,
                requested_at=moment,
                finished_at=moment if finished else None,
            )
        )


def test_purge_deletes_old_terminal_executions_only(database: Database) -> None:
    for status in ExecutionStatus:
        add(database, status, age_days=10, finished=status.is_terminal)
    add(database, ExecutionStatus.SUCCEEDED, age_days=6.9, finished=True)
    add(database, ExecutionStatus.FAILED, age_days=8, finished=False)

    with database.session_scope() as session:
        purged = retention.purge(session, older_than_days=7, now=NOW)

    with database.session_scope() as session:
        left = sorted(session.scalars(select(Execution.status)).all())
    assert purged == 6
    assert left == ["canceling", "requested", "running", "scheduled", "succeeded"]


def test_purge_on_the_database_clock_keeps_recent_executions(database: Database) -> None:
    with database.session_scope() as session:
        session.add(Execution(action_ref="core.echo", status=ExecutionStatus.SUCCEEDED))

    with database.session_scope() as session:
        assert retention.purge(session, older_than_days=0.0001) == 0
