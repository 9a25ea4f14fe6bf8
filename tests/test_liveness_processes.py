"""Worker liveness end to end: real celery workers and beat on PostgreSQL, with Redis and with
RabbitMQ (tests where the broker plays no part run on Redis only).

Time is scaled down (heartbeat 0.2 s, stale after 0.6 s, sweep every 0.3 s). Executions a
dead worker leaves behind are rows put ``running`` for it directly; the long action itself is a
test task (``tests.celery_tasks``). Every wait polls with a deadline; the margins are for a busy
two-core machine, not part of what is asserted.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from attune.executions.queues import runtime_queue
from attune.liveness import registry as workers
from attune.liveness.registry import Registration
from attune.liveness.sweeper import sweeper_status
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import ExecutionStatus
from tests.exposition import scrape
from tests.processes import (
    HEARTBEAT_S,
    START_TIMEOUT_S,
    SWEEP_S,
    THRESHOLD_S,
    Processes,
    free_port,
    markers,
    shifted_clock,
    wait_until,
)
from tests.rows import add_execution, execution_row, worker_row, worker_status

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

SETTINGS = Settings(
    heartbeat_interval_s=HEARTBEAT_S, heartbeat_staleness_multiplier=3, sweep_interval_s=SWEEP_S
)
SLACK_S = 3.0
"""Room for a loaded machine on top of what the rule itself allows."""
SWEPT_WITHIN_S = THRESHOLD_S + SWEEP_S + SLACK_S
"""A dead worker is inactive within one threshold and one sweep period (plus the slack)."""


def wait_status(database: Database, name: str, status: str, timeout_s: float) -> None:
    """Wait until worker ``name`` has ``status``."""
    wait_until(
        lambda: worker_status(database, name) == status, timeout_s, f"worker {name} {status}"
    )


def test_kill_9_mid_action_deactivates_the_worker_and_abandons_its_execution(
    processes: Processes, pg_database: Database, tmp_path: Path
) -> None:
    victim, survivor = processes.worker("victim"), processes.worker("survivor")
    processes.beat()
    processes.wait_registered(pg_database, victim, survivor)
    processes.start_task("tests.sleep", 60, "victim", tmp_path)
    doomed = add_execution(pg_database, "victim")
    untouched = add_execution(pg_database, "survivor")

    victim.kill()
    killed_at = time.monotonic()
    wait_until(
        lambda: execution_row(pg_database, doomed).status == "abandoned",
        SWEPT_WITHIN_S,
        "the execution to be abandoned",
    )

    settled_after_s = time.monotonic() - killed_at
    row = execution_row(pg_database, doomed)
    assert worker_status(pg_database, "victim") == "inactive"
    assert row.error is not None
    assert row.error.startswith("worker victim stopped heartbeating; last heartbeat 20")
    assert row.finished_at is not None
    assert worker_status(pg_database, "survivor") == "active"
    assert execution_row(pg_database, untouched).status == "running"
    assert settled_after_s < SWEPT_WITHIN_S


def test_sigstop_deactivates_and_sigcont_reactivates_without_a_restart(
    processes: Processes, pg_database: Database
) -> None:
    paused, sweeper = processes.worker("paused"), processes.worker("sweeper")
    processes.beat()
    processes.wait_registered(pg_database, paused, sweeper)

    paused.pause()
    try:
        wait_status(pg_database, "paused", "inactive", SWEPT_WITHIN_S)
    finally:
        paused.resume()
    resumed_at = time.monotonic()
    wait_status(pg_database, "paused", "active", HEARTBEAT_S + SLACK_S)

    reactivated_after_s = time.monotonic() - resumed_at
    row = worker_row(pg_database, "paused")
    assert row is not None
    assert row.pid == paused.pid
    assert paused.alive()
    # A heartbeat is due at once after SIGCONT; allow the database round trip on a busy box.
    assert reactivated_after_s < HEARTBEAT_S + 1.0
    wait_until(lambda: "worker paused reactivated" in paused.log, 5, "the reactivation log line")
    assert paused.log.count("worker paused reactivated") == 1


@pytest.mark.brokers("redis")  # liveness is all in the database
def test_a_worker_whose_every_slot_burns_cpu_stays_active(
    processes: Processes, pg_database: Database, tmp_path: Path
) -> None:
    busy, sweeper = processes.worker("busy", concurrency=2), processes.worker("sweeper")
    processes.beat()
    processes.wait_registered(pg_database, busy, sweeper)
    burn_s = 10 * THRESHOLD_S
    processes.start_task("tests.burn_cpu", burn_s, "busy", tmp_path, count=2)

    samples = []
    while markers(tmp_path, "finished") < 2:
        with pg_database.session_scope() as session:
            view = {v.name: v for v in workers.list_workers(session, SETTINGS)}["busy"]
        samples.append(view)
        assert view.status == "active", f"swept while busy: {view}"
        assert not view.stale, f"stale while busy: {view}"
        time.sleep(0.05)

    assert len(samples) > 20
    assert "worker busy deactivated" not in sweeper.log + busy.log


@pytest.mark.brokers("redis")  # liveness is all in the database
def test_a_worker_with_a_far_off_clock_is_judged_by_the_database_clock(
    processes: Processes, pg_database: Database
) -> None:
    day_s = 86_400
    behind = processes.worker("behind", env=shifted_clock(-day_s))
    ahead = processes.worker("ahead", env=shifted_clock(day_s))
    processes.beat()
    processes.wait_registered(pg_database, behind, ahead)
    today = datetime.now().strftime("%Y-%m-%d")
    assert f"[{today}" not in behind.log  # its log timestamps come from the shifted clock
    assert f"[{today}" not in ahead.log

    deadline = time.monotonic() + 5 * THRESHOLD_S
    while time.monotonic() < deadline:
        with pg_database.session_scope() as session:
            views = {v.name: v for v in workers.list_workers(session, SETTINGS)}
        for name in ("behind", "ahead"):
            assert views[name].status == "active"
            assert views[name].heartbeat_age_s is not None
            assert views[name].heartbeat_age_s < THRESHOLD_S
        time.sleep(0.1)

    behind.kill()
    wait_status(pg_database, "behind", "inactive", SWEPT_WITHIN_S)
    assert worker_status(pg_database, "ahead") == "active"


@pytest.mark.brokers("redis")  # liveness is all in the database
def test_a_worker_survives_its_database_connections_being_killed(
    processes: Processes, pg_database: Database
) -> None:
    worker = processes.worker("sturdy")
    processes.beat()
    processes.wait_registered(pg_database, worker)
    terminate = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )

    def heartbeat_after(moment: object) -> bool:
        row = worker_row(pg_database, "sturdy")
        return row is not None and row.last_heartbeat is not None and row.last_heartbeat > moment

    killed = 0
    for _ in range(8):
        previous = worker_row(pg_database, "sturdy")
        assert previous is not None
        with pg_database.engine.connect() as connection:
            killed += connection.execute(terminate).scalar_one()
            connection.commit()
        # The worker reconnects by itself: it heartbeats again before the next round kills.
        moment = previous.last_heartbeat
        wait_until(lambda moment=moment: heartbeat_after(moment), SLACK_S, "a reconnect")
        assert worker_status(pg_database, "sturdy") == "active"

    assert killed >= 8
    before = worker_row(pg_database, "sturdy")
    assert before is not None
    assert before.last_heartbeat is not None
    wait_until(
        lambda: (
            (row := worker_row(pg_database, "sturdy")) is not None
            and row.last_heartbeat is not None
            and row.last_heartbeat > before.last_heartbeat
        ),  # type: ignore[operator]
        SLACK_S,
        "a heartbeat after the connections were killed",
    )
    assert worker.alive()
    assert worker_status(pg_database, "sturdy") == "active"


def test_a_scheduled_execution_whose_message_was_lost_fails_after_the_timeout(
    processes: Processes, pg_database: Database
) -> None:
    env = {"ATTUNE_SCHEDULED_TIMEOUT_S": "1"}
    worker = processes.worker("shell-only", env=env)
    processes.beat(env=env)
    processes.wait_registered(pg_database, worker)
    execution_id = add_execution(pg_database, None, ExecutionStatus.SCHEDULED)
    client = processes.client()
    try:
        queue = runtime_queue("python")  # no worker here serves python
        client.send_task("attune.execute_action", args=[execution_id], queue=queue)
        with client.connection_for_write() as connection:
            purged = connection.default_channel.queue_purge(queue)
    finally:
        client.close()
    assert purged == 1

    wait_until(
        lambda: execution_row(pg_database, execution_id).status == "failed",
        1 + SWEEP_S + SLACK_S,
        "the unpicked execution to fail",
    )
    assert (
        execution_row(pg_database, execution_id).error == "not picked up by any worker within 1 s"
    )


def test_warm_shutdown_waits_for_running_tasks_then_goes_inactive(
    processes: Processes, pg_database: Database, tmp_path: Path
) -> None:
    worker = processes.worker("graceful")
    processes.wait_registered(pg_database, worker)
    processes.start_task("tests.sleep", 1.5, "graceful", tmp_path)

    worker.popen.send_signal(signal.SIGTERM)
    while worker.alive():
        status = worker_status(pg_database, "graceful")
        finished = markers(tmp_path, "finished")
        assert status == "active" or finished, "inactive while its task still ran"
        time.sleep(0.05)

    assert worker.popen.returncode == 0
    assert markers(tmp_path, "finished") == 1
    assert worker_status(pg_database, "graceful") == "inactive"


def test_cold_shutdown_settles_the_executions_it_cut_off(
    processes: Processes, pg_database: Database, tmp_path: Path
) -> None:
    worker = processes.worker("cold")
    processes.wait_registered(pg_database, worker)
    processes.start_task("tests.sleep", 60, "cold", tmp_path)
    cut_off = add_execution(pg_database, "cold")

    worker.stop(signal.SIGQUIT)

    row = execution_row(pg_database, cut_off)
    assert (row.status, row.error) == ("abandoned", "worker cold shut down")
    assert worker_status(pg_database, "cold") == "inactive"
    assert markers(tmp_path, "finished") == 0


@pytest.mark.brokers("redis")  # what is left in the broker is looked for in Redis
def test_beat_alone_settles_a_dead_worker_and_leaves_nothing_in_the_broker(
    processes: Processes, pg_database: Database, redis_url: str
) -> None:
    with pg_database.session_scope() as session:  # registered, then never heartbeats again
        workers.register(session, Registration("ghost", ("shell",), (), "h", 1))
    held = add_execution(pg_database, "ghost")

    processes.beat()

    wait_until(
        lambda: execution_row(pg_database, held).status == "abandoned",
        START_TIMEOUT_S,
        "beat, with no worker alive, to abandon the execution",
    )
    assert worker_status(pg_database, "ghost") == "inactive"
    first = last_sweep_at(pg_database)
    wait_until(
        lambda: last_sweep_at(pg_database) > first + timedelta(seconds=5 * SWEEP_S),
        5 * SWEEP_S + SLACK_S,
        "five more sweeps",
    )
    client = redis.Redis.from_url(redis_url)
    try:
        lists = {key: client.llen(key) for key in client.scan_iter() if client.type(key) == b"list"}
    finally:
        client.close()
    assert lists == {}


def last_sweep_at(database: Database) -> datetime:
    """When the last sweep ran (the test fails if none did)."""
    with database.session_scope() as session:
        status = sweeper_status(session, SETTINGS)
    assert status.last_sweep_at is not None
    return status.last_sweep_at


@pytest.mark.brokers("redis")  # liveness is all in the database
def test_metrics_count_a_deactivation_and_a_reactivation(
    processes: Processes, pg_database: Database, tmp_path: Path
) -> None:
    def metrics_env(name: str, port: int) -> dict[str, str]:
        # The workers are killed at the end, so they cannot remove a directory of their own.
        directory = tmp_path / f"{name}-metrics"
        directory.mkdir()
        return {"ATTUNE_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(directory)}

    beat_port, flaky_port = free_port(), free_port()
    flaky = processes.worker("flaky", env=metrics_env("flaky", flaky_port))
    processes.beat(env={"ATTUNE_METRICS_PORT": str(beat_port)})
    processes.wait_registered(pg_database, flaky)
    add_execution(pg_database, "flaky")

    flaky.pause()
    try:
        wait_status(pg_database, "flaky", "inactive", SWEPT_WITHIN_S)
        swept = wait_until(
            lambda: (m := scrape(beat_port))["attune_worker_deactivations_total"] == 1 and m,
            SLACK_S,
            "beat's deactivation count",
        )
    finally:
        flaky.resume()
    wait_status(pg_database, "flaky", "active", SLACK_S)
    back = scrape(flaky_port)

    assert swept["attune_executions_abandoned_total"] == 1
    assert swept['attune_workers{status="inactive"}'] == 1
    assert abs(swept["attune_last_sweep_timestamp_seconds"] - time.time()) < SLACK_S
    assert back["attune_worker_reactivations_total"] == 1
    assert back['attune_workers{status="active"}'] == 1
    assert back['attune_workers{status="inactive"}'] == 0
