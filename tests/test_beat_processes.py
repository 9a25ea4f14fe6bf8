"""The sweep in the beat process, end to end: real `celery beat` and workers on PostgreSQL + Redis.

Time is scaled down (heartbeat 0.2 s, stale after 0.6 s, sweep every 0.3 s). The point of each
test is a fleet that cannot sweep for itself — no worker left, or every slot busy — or a fleet
with too many beats; every wait polls with a deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

import attune
from attune.executions.queues import SWEEP_QUEUE
from attune.liveness.sweeper import SweeperStatus, sweeper_status
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Execution, ExecutionStatus, PeriodicRun
from attune.store.sqltypes import db_ago
from tests.cluster import Cluster, attune_cli, cluster
from tests.processes import (
    START_TIMEOUT_S,
    SWEEP_S,
    THRESHOLD_S,
    CeleryProcess,
    Processes,
    wait_until,
)
from tests.rows import add_execution, execution_row, worker_status

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

SETTLED_WITHIN_S = THRESHOLD_S + SWEEP_S + 2.0
"""The bound the issue sets: a dead worker is settled within threshold + sweep interval + 2 s."""
SETTINGS = Settings(sweep_interval_s=SWEEP_S)


@pytest.fixture
def only_worker(
    pg_database: Database, postgres_url: str, redis_url: str, tmp_path: Path
) -> Iterator[Cluster]:
    """A deployment with the packs loaded and this process as its caller; no worker yet."""
    with cluster(postgres_url, redis_url, tmp_path) as deployment:
        yield deployment


def wait_swept_once(database: Database, beat: CeleryProcess) -> None:
    """Wait until ``beat`` is up and has swept (its first tick sweeps at once)."""

    def swept() -> bool:
        assert beat.alive(), beat.log[-3000:]
        return status(database).last_sweep_at is not None

    wait_until(swept, START_TIMEOUT_S, "beat's first sweep")


def status(database: Database) -> SweeperStatus:
    with database.session_scope() as session:
        return sweeper_status(session, SETTINGS)


def test_beat_alone_settles_the_only_worker_killed_mid_action(only_worker: Cluster) -> None:
    worker = only_worker.start_worker("only", ["shell"])
    beat = only_worker.fleet.beat()
    wait_swept_once(only_worker.database, beat)
    handle = attune.execute("core.sleep", {"seconds": 20})
    wait_until(lambda: handle.status() is ExecutionStatus.RUNNING, 30, "the action running")

    worker.kill()
    wait_until(
        lambda: handle.status() is ExecutionStatus.ABANDONED,
        SETTLED_WITHIN_S,
        "beat to abandon the execution of the only worker",
    )

    assert worker_status(only_worker.database, "only") == "inactive"
    record = attune.get_execution(handle.id)
    assert record.error is not None
    assert record.error.startswith("worker only stopped heartbeating; last heartbeat 20")
    assert beat.alive()


def test_a_dead_worker_is_settled_while_every_slot_of_the_live_one_is_busy(
    processes: Processes, pg_database: Database, tmp_path: Path
) -> None:
    busy, victim = processes.worker("busy", concurrency=1), processes.worker("victim")
    processes.wait_registered(pg_database, busy, victim)
    processes.start_task("tests.sleep", 60, "busy", tmp_path)  # its one slot, taken for good
    beat = processes.beat()
    wait_swept_once(pg_database, beat)
    held = add_execution(pg_database, "victim")

    victim.kill()
    wait_until(
        lambda: execution_row(pg_database, held).status == "abandoned",
        SETTLED_WITHIN_S,
        "the dead worker's execution to be abandoned",
    )

    assert worker_status(pg_database, "victim") == "inactive"
    assert worker_status(pg_database, "busy") == "active"


def test_the_sweeper_is_fine_while_beat_runs_and_overdue_once_it_stops(
    processes: Processes, pg_database: Database
) -> None:
    env = processes.environment()
    beat = processes.beat()
    wait_swept_once(pg_database, beat)

    running = attune_cli(env, "workers", "sweeper", "--json")
    listed = attune_cli(env, "workers", "list")
    beat.stop()
    wait_until(lambda: status(pg_database).overdue, 3 * SWEEP_S + 5, "the sweeper to be overdue")
    stopped = attune_cli(env, "workers", "sweeper", "--json")
    listed_late = attune_cli(env, "workers", "list")

    assert running.returncode == 0, running.stderr
    assert '"overdue": false' in running.stdout
    assert running.stderr == ""
    assert listed.stdout.splitlines()[-1].startswith("last sweep: ")
    assert listed.stderr == ""
    assert '"overdue": true' in stopped.stdout
    assert "warning: no sweep within the last 3 sweep intervals (0.9 s" in stopped.stderr
    assert listed_late.stdout.splitlines()[-1].endswith(" s ago")
    assert "warning: no sweep within the last 3 sweep intervals" in listed_late.stderr


def test_two_beats_at_once_settle_a_dead_worker_once(
    processes: Processes, pg_database: Database
) -> None:
    victim, survivor = processes.worker("victim"), processes.worker("survivor")
    processes.wait_registered(pg_database, victim, survivor)
    beats = [processes.beat(), processes.beat()]
    for beat in beats:
        wait_until(lambda beat=beat: "sweep every 0.3 s" in beat.log, START_TIMEOUT_S, "a beat")
    held = [add_execution(pg_database, "victim") for _ in range(3)]

    victim.kill()
    wait_until(
        lambda: all(execution_row(pg_database, i).status == "abandoned" for i in held),
        SETTLED_WITHIN_S,
        "the executions to be abandoned",
    )
    settled_at = status(pg_database).last_sweep_at
    assert settled_at is not None
    wait_until(  # both beats sweep several more times over the settled worker
        lambda: (
            (status(pg_database).last_sweep_at or settled_at)
            > settled_at + timedelta(seconds=5 * SWEEP_S)
        ),
        5 * SWEEP_S + 5,
        "more sweeps after the settlement",
    )

    logs = "".join(beat.log for beat in beats)
    assert logs.count("worker victim deactivated") == 1
    assert "worker victim deactivated: stopped heartbeating; last heartbeat 20" in logs
    assert "3 execution(s) abandoned" in logs
    assert worker_status(pg_database, "survivor") == "active"
    assert all(beat.alive() for beat in beats)
    with pg_database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(PeriodicRun)) == 1


def test_beat_purges_old_executions_when_retention_is_set(
    processes: Processes, pg_database: Database
) -> None:
    old = add_execution(pg_database, None, ExecutionStatus.SUCCEEDED)
    recent = add_execution(pg_database, None, ExecutionStatus.SUCCEEDED)
    with pg_database.session_scope() as session:
        session.execute(
            update(Execution).where(Execution.id == old).values(finished_at=db_ago(3 * 86400))
        )

    processes.beat(env={"ATTUNE_RETENTION_DAYS": "2"})

    def ids() -> list[int]:
        with pg_database.session_scope() as session:
            return list(session.scalars(select(Execution.id)))

    wait_until(lambda: ids() == [recent], START_TIMEOUT_S, "the old execution to be purged")


def test_the_sweep_task_still_runs_on_a_worker_and_is_recorded(
    processes: Processes, pg_database: Database
) -> None:
    worker = processes.worker("sweeper")
    processes.wait_registered(pg_database, worker)
    assert status(pg_database).last_sweep_at is None

    processes.send("attune.sweep_workers", [], SWEEP_QUEUE)

    wait_until(lambda: status(pg_database).last_sweep_at, 30, "the task's sweep to be recorded")
    assert "attune.sweep_workers" in worker.log
