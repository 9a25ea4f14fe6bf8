"""The sweep against itself (on both databases) and against heartbeats (PostgreSQL's row locks).

Each race with a heartbeat is forced into one order: the first transaction holds its row locks
while the second starts in a thread and blocks on them; then the first commits, the second ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from attune.liveness import registry as workers
from attune.liveness import sweep as sweeps
from attune.liveness.registry import HeartbeatOutcome, Registration
from attune.liveness.reports import SweepReport
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Execution, ExecutionStatus, Worker
from attune.store.sqltypes import db_ago, db_now

SETTINGS = Settings(heartbeat_interval_s=30, heartbeat_staleness_multiplier=3)
_T = TypeVar("_T")


def add_workers(database: Database, count: int, *, stale: bool) -> list[str]:
    names = [f"w{index:04d}" for index in range(count)]
    with database.session_scope() as session:
        for name in names:
            workers.register(session, Registration(name, ("shell",), (), "h", 1))
        if stale:
            session.execute(update(Worker).values(last_heartbeat=db_ago(1000)))
        for name in names:
            session.add(Execution(action_ref="core.sleep", worker=name, status="running"))
    return names


def blocked_on_a_lock(database: Database) -> bool:
    with database.engine.connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)


def in_thread(database: Database, work: Callable[[Session], _T]) -> Future[_T]:
    def run() -> _T:
        with database.session_scope() as session:
            return work(session)

    executor = ThreadPoolExecutor(max_workers=1)
    future = executor.submit(run)
    executor.shutdown(wait=False)
    return future


def wait_blocked(database: Database, future: Future[_T]) -> None:
    event = threading.Event()
    for _ in range(200):
        if blocked_on_a_lock(database) or future.done():
            return
        event.wait(0.02)
    raise AssertionError("the second transaction never blocked")


def test_two_concurrent_sweeps_split_the_work_and_end_in_the_same_state(
    database: Database,
) -> None:
    # SQLite serializes the two sweeps; PostgreSQL makes the second wait on the first's rows.
    names = add_workers(database, 200, stale=True)
    barrier = threading.Barrier(2)

    def sweep(session: Session) -> SweepReport:
        barrier.wait()
        return sweeps.sweep(session, SETTINGS)

    first, second = in_thread(database, sweep), in_thread(database, sweep)
    reports = [first.result(30), second.result(30)]

    swept = [d.name for report in reports for d in report.deactivated]
    assert sorted(swept) == names
    assert sum(report.abandoned for report in reports) == 200
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).where(Worker.status == "active")) == 0
        statuses = session.scalars(select(Execution.status).distinct()).all()
    assert statuses == ["abandoned"]


@pytest.mark.postgres
def test_a_sweep_blocked_by_a_heartbeat_spares_the_worker(pg_database: Database) -> None:
    add_workers(pg_database, 1, stale=True)
    # A heartbeat commits on its own; its UPDATE, held here uncommitted, is the same one.
    with pg_database.session_scope() as heartbeat_session:
        heartbeat_session.execute(
            update(Worker).where(Worker.name == "w0000").values(last_heartbeat=db_now())
        )
        sweep = in_thread(pg_database, lambda session: sweeps.sweep(session, SETTINGS))
        wait_blocked(pg_database, sweep)
    report = sweep.result(30)

    assert report.deactivated == ()
    with pg_database.session_scope() as session:
        assert session.scalar(select(Worker.status)) == "active"
        assert session.scalar(select(Execution.status)) == "running"


@pytest.mark.postgres
def test_a_heartbeat_blocked_by_a_sweep_reactivates_the_worker(pg_database: Database) -> None:
    add_workers(pg_database, 1, stale=True)
    with pg_database.session_scope() as sweep_session:
        report = sweeps.sweep(sweep_session, SETTINGS)
        beat = in_thread(pg_database, lambda _session: workers.heartbeat(pg_database, "w0000"))
        wait_blocked(pg_database, beat)
    outcome = beat.result(30)

    assert [d.name for d in report.deactivated] == ["w0000"]
    assert outcome is HeartbeatOutcome.REACTIVATED
    with pg_database.session_scope() as session:
        assert session.scalar(select(Worker.status)) == "active"
        assert session.scalar(select(Execution.status)) == ExecutionStatus.ABANDONED
