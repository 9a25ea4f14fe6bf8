"""Restarts under load: 200 queued executions, two workers, and the broker or the database
restarted while they drain. The restarted server is a private one (tests/servers.py); the
shared servers are never restarted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import attune
from attune.errors import NoWorkerAvailableError
from attune.store.db import Database
from attune.store.models import ExecutionStatus
from tests.brokers import Broker
from tests.cluster import Cluster, cluster
from tests.conftest import migrate
from tests.processes import wait_until
from tests.rows import worker_row
from tests.servers import private_postgres, private_redis

pytestmark = pytest.mark.slow

QUEUED = 200
DRAIN_TIMEOUT_S = 240.0


def ride_out(deployment: Cluster, restart: Callable[[], None], runs: Path) -> None:
    """Queue :data:`QUEUED` executions on two workers, ``restart`` a server once some ran,
    then check that each ran once and succeeded and that both workers carry on by themselves."""
    workers = [deployment.start_worker(name, ["shell"]) for name in ("w1", "w2")]
    # The safety net for a message the restart lost: beat's sweep sends it again (the claim
    # refuses whatever turns out to be a duplicate).
    deployment.fleet.beat(env={"ATTUNE_RESEND_AFTER_S": "5"})
    command = f"echo $ATTUNE_EXECUTION_ID >> {runs}; sleep 0.05"
    handles = [attune.execute("core.local", {"cmd": command}) for _ in range(QUEUED)]
    wait_until(lambda: len(ran(runs)) >= QUEUED // 10, 60, "the first executions to run")

    restart()

    records = [handle.wait(DRAIN_TIMEOUT_S) for handle in handles]
    assert [r.id for r in records if r.status is not ExecutionStatus.SUCCEEDED] == []
    assert sorted(ran(runs)) == sorted(handle.id for handle in handles)  # each ran once
    database = deployment.database  # its pooled connections may have died in a restart
    for worker in workers:
        assert worker.alive()
        row = database.reconnecting(lambda name=worker.name: worker_row(database, name))
        assert row is not None
        assert (row.pid, row.status) == (worker.pid, "active")
        record = wait_until(lambda name=worker.name: routed(name), 30, f"{worker.name} serving")
        assert record.worker == worker.name


def ran(runs: Path) -> list[int]:
    """The execution ids the actions wrote, one line per run."""
    return [int(line) for line in runs.read_text().split()] if runs.exists() else []


def routed(worker: str) -> attune.ExecutionRecord | None:
    """An echo run on ``worker`` (None while it is not yet fresh again)."""
    try:
        record = attune.execute("core.echo", {"message": "after"}, worker=worker).wait(30)
    except NoWorkerAvailableError:
        return None
    assert record.status is ExecutionStatus.SUCCEEDED
    return record


@pytest.mark.redis
def test_workers_ride_out_a_redis_restart_under_load(
    pg_database: Database, postgres_url: str, tmp_path: Path
) -> None:
    with private_redis() as redis_server, cluster(postgres_url, redis_server.url, tmp_path) as up:
        ride_out(up, redis_server.restart, tmp_path / "runs")


def test_workers_ride_out_a_database_restart_under_load(broker: Broker, tmp_path: Path) -> None:
    broker.reset()
    with private_postgres() as postgres:
        migrate(postgres.url)
        with cluster(postgres.url, broker.url, tmp_path) as deployment:
            ride_out(deployment, postgres.restart, tmp_path / "runs")
            queues = deployment.fleet.queues()
    broker.reset(queues)
