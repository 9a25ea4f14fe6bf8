"""The heartbeat thread's logic, one tick at a time: outages, a missing row, reactivation."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import delete, select, update

from attune.liveness.heartbeat import Heartbeat
from attune.liveness.registry import HeartbeatOutcome, Registration
from attune.liveness.signals import WorkerTransition, worker_deactivated, worker_reactivated
from attune.store.db import Database
from attune.store.models import Execution, Worker
from tests.processes import wait_until

REGISTRATION = Registration(
    name="w1", runtimes=("shell",), queues=("attune.shell",), host="h", pid=7
)


def status(database: Database) -> str | None:
    with database.session_scope() as session:
        return session.scalar(select(Worker.status).where(Worker.name == "w1"))


def test_a_tick_registers_a_missing_row_again(database: Database) -> None:
    heartbeat = Heartbeat(database, REGISTRATION, interval_s=60)

    assert heartbeat.beat() is HeartbeatOutcome.MISSING
    assert status(database) == "active"
    assert heartbeat.beat() is HeartbeatOutcome.ALIVE


def test_a_tick_reactivates_a_swept_worker_and_announces_it_once(database: Database) -> None:
    heartbeat = Heartbeat(database, REGISTRATION, interval_s=60)
    heartbeat.beat()
    with database.session_scope() as session:
        session.execute(update(Worker).values(status="inactive"))
    received: list[WorkerTransition] = []
    worker_reactivated.connect(received.append)
    try:
        outcomes = [heartbeat.beat(), heartbeat.beat()]
    finally:
        worker_reactivated.disconnect(received.append)

    assert outcomes == [HeartbeatOutcome.REACTIVATED, HeartbeatOutcome.ALIVE]
    assert [(t.worker, t.status) for t in received] == [("w1", "active")]


def test_a_database_outage_is_logged_once_and_survived(
    sqlite_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = Database.from_url("postgresql+psycopg://nobody@127.0.0.1:1/none")
    heartbeat = Heartbeat(unreachable, REGISTRATION, interval_s=60)
    caplog.set_level(logging.INFO, logger="attune.liveness.heartbeat")

    outcomes = [heartbeat.beat() for _ in range(3)]
    heartbeat.database = sqlite_database
    recovered = heartbeat.beat()

    assert outcomes == [None, None, None]
    assert recovered is HeartbeatOutcome.MISSING
    messages = [record.getMessage() for record in caplog.records]
    assert sum("heartbeat failed" in message for message in messages) == 1
    assert sum("heartbeat restored" in message for message in messages) == 1
    unreachable.dispose()


def test_the_thread_beats_until_stopped_then_deactivation_settles_and_signals(
    database: Database,
) -> None:
    heartbeat = Heartbeat(database, REGISTRATION, interval_s=0.01)
    heartbeat.start()
    with database.session_scope() as session:
        session.add(Execution(action_ref="core.sleep", worker="w1", status="running"))
    first = _last_heartbeat(database)
    wait_until(lambda: _last_heartbeat(database) != first, 10, "a heartbeat from the thread")
    received: list[WorkerTransition] = []
    worker_deactivated.connect(received.append)
    try:
        deactivation = heartbeat.deactivate("shut down")
    finally:
        worker_deactivated.disconnect(received.append)

    assert deactivation is not None
    assert deactivation.abandoned == 1
    assert status(database) == "inactive"
    assert [(t.worker, t.status, t.abandoned_executions) for t in received] == [
        ("w1", "inactive", 1)
    ]
    with database.session_scope() as session:
        assert session.scalar(select(Execution.error)) == "worker w1 shut down"
        session.execute(delete(Execution))


def _last_heartbeat(database: Database) -> object:
    with database.session_scope() as session:
        return session.scalar(select(Worker.last_heartbeat).where(Worker.name == "w1"))
