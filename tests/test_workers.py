"""Worker registration, heartbeats, the sweep and availability, on SQLite and PostgreSQL.

Times are injected: rows get heartbeats relative to the database clock, or the sweep gets a
``now`` to judge them against, so nothing here sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from attune.liveness import freshness
from attune.liveness import registry as workers
from attune.liveness import sweep as sweeps
from attune.liveness.registry import HeartbeatOutcome, Registration
from attune.liveness.reports import SweepReport
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Execution, ExecutionStatus, Worker
from attune.store.sqltypes import db_ago, db_now
from tests.rows import add_execution, execution_row

SETTINGS = Settings(heartbeat_interval_s=30, heartbeat_staleness_multiplier=3)
THRESHOLD_S = SETTINGS.staleness_threshold_s


def registration(name: str = "w1", runtimes: tuple[str, ...] = ("shell", "python")) -> Registration:
    return Registration(
        name=name,
        runtimes=runtimes,
        queues=("attune.shell", f"attune.worker.{name}"),
        host="host-a",
        pid=1234,
        capabilities={"concurrency": 2},
    )


def register(database: Database, name: str = "w1", **kwargs: object) -> None:
    with database.session_scope() as session:
        workers.register(session, registration(name, **kwargs))  # type: ignore[arg-type]


def age_heartbeat(database: Database, name: str, seconds: float | None) -> None:
    """Set the worker's heartbeat ``seconds`` before the database clock (None: never)."""
    value = None if seconds is None else db_ago(seconds)
    with database.session_scope() as session:
        session.execute(update(Worker).where(Worker.name == name).values(last_heartbeat=value))


def worker_row(database: Database, name: str) -> Worker:
    with database.session_scope() as session:
        return session.scalars(select(Worker).where(Worker.name == name)).one()


def sweep(database: Database, now: datetime | None = None) -> SweepReport:
    with database.session_scope() as session:
        return sweeps.sweep(session, SETTINGS, now)


def test_register_inserts_an_active_row_with_a_heartbeat_on_the_database_clock(
    database: Database,
) -> None:
    register(database)

    row = worker_row(database, "w1")
    with database.session_scope() as session:
        now = session.scalar(select(db_now()))
    assert row.status == "active"
    assert row.runtimes == ["shell", "python"]
    assert row.queues == ["attune.shell", "attune.worker.w1"]
    assert (row.host, row.pid, row.capabilities) == ("host-a", 1234, {"concurrency": 2})
    assert row.last_heartbeat is not None
    assert now is not None
    assert abs(now - row.last_heartbeat) < timedelta(seconds=5)


def test_register_again_updates_the_row_by_name_and_reactivates_it(database: Database) -> None:
    register(database)
    with database.session_scope() as session:
        session.execute(update(Worker).values(status="inactive", last_heartbeat=None))

    register(database, runtimes=("native",))

    with database.session_scope() as session:
        rows = session.scalars(select(Worker)).all()
    assert [(row.name, row.status, row.runtimes) for row in rows] == [("w1", "active", ["native"])]
    assert rows[0].last_heartbeat is not None


def test_heartbeat_of_an_active_worker_moves_only_the_heartbeat(database: Database) -> None:
    register(database)
    age_heartbeat(database, "w1", 10)
    before = worker_row(database, "w1")

    outcome = workers.heartbeat(database, "w1")

    after = worker_row(database, "w1")
    assert outcome is HeartbeatOutcome.ALIVE
    assert after.status == "active"
    assert after.updated_at == before.updated_at
    assert before.last_heartbeat is not None
    assert after.last_heartbeat is not None
    assert after.last_heartbeat - before.last_heartbeat >= timedelta(seconds=9)


def test_heartbeat_of_a_swept_worker_reactivates_it(database: Database) -> None:
    register(database)
    with database.session_scope() as session:
        session.execute(update(Worker).values(status="inactive"))

    first = workers.heartbeat(database, "w1")
    second = workers.heartbeat(database, "w1")

    assert (first, second) == (HeartbeatOutcome.REACTIVATED, HeartbeatOutcome.ALIVE)
    assert worker_row(database, "w1").status == "active"


def test_heartbeat_of_a_missing_row_says_so(database: Database) -> None:
    assert workers.heartbeat(database, "ghost") is HeartbeatOutcome.MISSING


@pytest.mark.parametrize(
    ("age_s", "stale"),
    [
        (THRESHOLD_S, True),
        (THRESHOLD_S - 0.000001, False),
        (THRESHOLD_S + 30, True),
        (0, False),
        (None, True),
    ],
    ids=["exactly-threshold", "just-younger", "older", "fresh", "never"],
)
def test_the_staleness_boundary_with_an_injected_now(
    database: Database, age_s: float | None, stale: bool
) -> None:
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    register(database)
    heartbeat_at = None if age_s is None else now - timedelta(seconds=age_s)
    with database.session_scope() as session:
        session.execute(update(Worker).values(last_heartbeat=heartbeat_at))

    report = sweep(database, now)

    assert [d.name for d in report.deactivated] == (["w1"] if stale else [])
    assert worker_row(database, "w1").status == ("inactive" if stale else "active")


def test_the_sweep_settles_the_executions_of_the_workers_it_deactivates(
    database: Database,
) -> None:
    register(database, "dead")
    register(database, "alive")
    age_heartbeat(database, "dead", THRESHOLD_S + 5)
    running = add_execution(database, "dead", ExecutionStatus.RUNNING)
    canceling = add_execution(database, "dead", ExecutionStatus.CANCELING)
    done = add_execution(database, "dead", ExecutionStatus.SUCCEEDED)
    other = add_execution(database, "alive", ExecutionStatus.RUNNING)
    last_heartbeat = worker_row(database, "dead").last_heartbeat
    assert last_heartbeat is not None

    report = sweep(database)

    assert report.counts() == {"deactivated": 1, "abandoned": 2, "failed_scheduled": 0}
    assert [(d.name, d.abandoned) for d in report.deactivated] == [("dead", 2)]
    when = last_heartbeat.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    for execution_id in (running, canceling):
        row = execution_row(database, execution_id)
        assert row.status == "abandoned"
        assert row.error == f"worker dead stopped heartbeating; last heartbeat {when}"
        assert row.finished_at is not None
    assert execution_row(database, done).status == "succeeded"
    assert execution_row(database, other).status == "running"
    assert worker_row(database, "alive").status == "active"


def test_a_worker_that_never_heartbeated_is_swept_with_never_in_the_reason(
    database: Database,
) -> None:
    register(database, "w0")
    age_heartbeat(database, "w0", None)
    execution_id = add_execution(database, "w0", ExecutionStatus.RUNNING)

    sweep(database)

    assert execution_row(database, execution_id).error == (
        "worker w0 stopped heartbeating; last heartbeat never"
    )


def test_the_sweep_is_idempotent(database: Database) -> None:
    register(database)
    age_heartbeat(database, "w1", THRESHOLD_S * 2)
    add_execution(database, "w1", ExecutionStatus.RUNNING)

    first, second = sweep(database), sweep(database)

    assert first.counts() == {"deactivated": 1, "abandoned": 1, "failed_scheduled": 0}
    assert second.counts() == {"deactivated": 0, "abandoned": 0, "failed_scheduled": 0}


def test_each_sweep_judges_by_its_own_settings_in_one_process(database: Database) -> None:
    # Given a worker last heard from 60 s ago, holding an execution, and one scheduled 60 s ago
    register(database)
    age_heartbeat(database, "w1", 60)
    held = add_execution(database, "w1", ExecutionStatus.RUNNING)
    waiting = add_execution(database, None, ExecutionStatus.SCHEDULED)
    with database.session_scope() as session:
        session.execute(
            update(Execution).where(Execution.id == waiting).values(eligible_at=db_ago(60))
        )
    lenient = Settings(heartbeat_interval_s=30, heartbeat_staleness_multiplier=3)
    strict = Settings(
        heartbeat_interval_s=10, heartbeat_staleness_multiplier=3, scheduled_timeout_s=30
    )

    # When a sweep with a 90 s threshold runs, then one with a 30 s threshold and timeout
    with database.session_scope() as session:
        first = sweeps.sweep(session, lenient)
    with database.session_scope() as session:
        second = sweeps.sweep(session, strict)

    # Then the first left both alone, and the second, built after it, applied its own limits
    assert first.counts() == {"deactivated": 0, "abandoned": 0, "failed_scheduled": 0}
    assert second.counts() == {"deactivated": 1, "abandoned": 1, "failed_scheduled": 1}
    assert execution_row(database, held).status == "abandoned"
    assert execution_row(database, waiting).status == "failed"


def test_the_sweep_fails_scheduled_executions_older_than_the_scheduled_timeout(
    database: Database,
) -> None:
    settings = Settings(scheduled_timeout_s=60)
    old = add_execution(database, None, ExecutionStatus.SCHEDULED)
    young = add_execution(database, None, ExecutionStatus.SCHEDULED)
    with database.session_scope() as session:
        session.execute(
            update(Execution)
            .where(Execution.id == old)
            .values(requested_at=db_ago(60), eligible_at=db_ago(60))
        )

    with database.session_scope() as session:
        report = sweeps.sweep(session, settings)
    with database.session_scope() as session:
        disabled = sweeps.sweep(session, Settings(scheduled_timeout_s=0, sweep_interval_s=1))

    assert report.failed_scheduled == 1
    assert disabled.failed_scheduled == 0
    assert execution_row(database, old).status == "failed"
    assert execution_row(database, old).error == "not picked up by any worker within 60 s"
    assert execution_row(database, young).status == "scheduled"


def test_one_sweep_settles_a_dead_worker_and_fails_the_unpicked_together(
    database: Database,
) -> None:
    # On PostgreSQL both happen in the sweep's one statement: neither count may hide the other.
    register(database, "dead")
    age_heartbeat(database, "dead", THRESHOLD_S + 5)
    held = add_execution(database, "dead", ExecutionStatus.CANCELING)
    unpicked = add_execution(database, None, ExecutionStatus.SCHEDULED)
    with database.session_scope() as session:
        session.execute(
            update(Execution)
            .where(Execution.id == unpicked)
            .values(requested_at=db_ago(120), eligible_at=db_ago(120))
        )

    with database.session_scope() as session:
        report = sweeps.sweep(session, Settings(scheduled_timeout_s=60))

    assert report.counts() == {"deactivated": 1, "abandoned": 1, "failed_scheduled": 1}
    assert execution_row(database, held).status == "abandoned"
    assert execution_row(database, unpicked).status == "failed"


def test_deactivate_marks_only_its_own_process_row_and_settles_what_it_left(
    database: Database,
) -> None:
    register(database)
    execution_id = add_execution(database, "w1", ExecutionStatus.RUNNING)

    with database.session_scope() as session:
        stranger = workers.deactivate(session, "w1", host="host-b", pid=1234, reason="shut down")
    assert stranger is None
    assert worker_row(database, "w1").status == "active"

    with database.session_scope() as session:
        own = workers.deactivate(session, "w1", host="host-a", pid=1234, reason="shut down")

    assert own is not None
    assert own.abandoned == 1
    assert worker_row(database, "w1").status == "inactive"
    row = execution_row(database, execution_id)
    assert (row.status, row.error) == ("abandoned", "worker w1 shut down")


@pytest.mark.parametrize(
    ("setup", "name", "runtime", "reason"),
    [
        ("fresh", None, "python", None),
        ("fresh", None, "native", "no active worker serves runtime 'native'"),
        ("stale", None, "python", "no active worker serves runtime 'python'"),
        ("inactive", None, "python", "no active worker serves runtime 'python'"),
        ("fresh", "w1", "python", None),
        ("fresh", "w9", "python", "worker 'w9' is not registered"),
        ("inactive", "w1", "python", "worker 'w1' is inactive"),
        ("fresh", "w1", "native", "worker 'w1' does not serve runtime 'native'"),
    ],
)
def test_unavailable_reason(
    database: Database, setup: str, name: str | None, runtime: str, reason: str | None
) -> None:
    register(database)
    if setup == "stale":
        age_heartbeat(database, "w1", THRESHOLD_S)
    if setup == "inactive":
        with database.session_scope() as session:
            session.execute(update(Worker).values(status="inactive"))

    with database.session_scope() as session:
        assert freshness.unavailable_reason(session, SETTINGS, runtime, name) == reason


def test_unavailable_reason_gives_the_age_of_a_stale_named_worker(database: Database) -> None:
    register(database)
    age_heartbeat(database, "w1", 123.4)

    with database.session_scope() as session:
        reason = freshness.unavailable_reason(session, SETTINGS, "shell", "w1")

    assert reason is not None
    assert reason.startswith("worker 'w1' is stale (last heartbeat 123.")
    assert reason.endswith(" s ago)")
    age_heartbeat(database, "w1", None)
    with database.session_scope() as session:
        never = freshness.unavailable_reason(session, SETTINGS, "shell", "w1")
    assert never == "worker 'w1' is stale (never heartbeated)"


def test_listing_shows_age_staleness_and_running_executions(database: Database) -> None:
    register(database, "a")
    register(database, "b", runtimes=("native",))
    age_heartbeat(database, "a", 5)
    age_heartbeat(database, "b", THRESHOLD_S + 1)
    add_execution(database, "a", ExecutionStatus.RUNNING)
    add_execution(database, "a", ExecutionStatus.CANCELING)
    add_execution(database, "a", ExecutionStatus.SUCCEEDED)

    with database.session_scope() as session:
        views = workers.list_workers(session, SETTINGS)

    assert [(v.name, v.status, v.stale, v.running) for v in views] == [
        ("a", "active", False, 2),
        ("b", "active", True, 0),
    ]
    assert views[0].heartbeat_age_s is not None
    assert 4 < views[0].heartbeat_age_s < 30
    assert views[1].runtimes == ("native",)
    assert views[1].to_json()["stale"] is True


def test_the_database_clock_judges_sub_second_ages(database: Database) -> None:
    settings = Settings(heartbeat_interval_s=0.2, heartbeat_staleness_multiplier=3)
    register(database, "young")
    register(database, "old")
    age_heartbeat(database, "young", 0.3)
    age_heartbeat(database, "old", 0.7)

    with database.session_scope() as session:
        report = sweeps.sweep(session, settings)

    assert [d.name for d in report.deactivated] == ["old"]
