"""``attune run`` against a real deployment: PostgreSQL + Redis and a real `celery worker`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest

import attune
from attune.store.models import ExecutionStatus
from tests.cluster import Cluster, attune_cli, cluster
from tests.conftest import clear
from tests.processes import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployment(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with cluster(postgres_url, redis_url, tmp_path_factory.mktemp("cluster")) as running:
        running.start_worker("w-run", ["shell"])
        yield running
        running.stop_all()
        clear(running.database)


def test_no_wait_json_prints_the_scheduled_record(deployment: Cluster) -> None:
    # Given every pool slot of the only worker busy, so nothing starts the next execution yet
    sleepers = [attune.execute("core.sleep", {"seconds": 60}) for _ in range(2)]
    wait_until(
        lambda: all(h.status() is ExecutionStatus.RUNNING for h in sleepers), 30, "both sleeping"
    )

    # When an execution is enqueued with --no-wait --json
    done = attune_cli(
        deployment.fleet.environment(), "run", "core.echo", "message=later", "--no-wait", "--json"
    )

    # Then stdout is its ExecutionRecord as one JSON object, status scheduled, as stored
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["status"] == "scheduled"
    assert printed["action_ref"] == "core.echo"
    assert printed["parameters"] == {"message": "later"}
    assert printed["worker"] is None
    assert printed["started_at"] is None
    assert printed["finished_at"] is None
    stored = attune.get_execution(printed["id"])
    assert stored.status is ExecutionStatus.SCHEDULED
    assert printed == stored.to_json()
    assert datetime.fromisoformat(printed["requested_at"]) == stored.requested_at

    # And the worker runs it once a slot is free
    for handle in sleepers:
        handle.cancel()
    record = attune.ExecutionHandle(printed["id"]).wait(30)
    assert record.status is ExecutionStatus.SUCCEEDED
    assert record.stdout == "later\n"


def test_no_wait_without_json_prints_only_the_id(deployment: Cluster) -> None:
    done = attune_cli(deployment.fleet.environment(), "run", "core.echo", "message=x", "--no-wait")

    assert done.returncode == 0, done.stderr
    record = attune.ExecutionHandle(int(done.stdout)).wait(30)
    assert record.status is ExecutionStatus.SUCCEEDED
