"""Durability with real processes: ``kill -9`` of the worker running a task, with and without a
retry (one successful run per task, nothing left running), and a lost advance (its worker
frozen) that beat's safety net makes up for."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

import attune
from attune.store.models import ExecutionStatus
from attune.workflows.reconcile import RECONCILE_INTERVAL_S
from tests.cluster import Cluster
from tests.processes import CeleryProcess, markers
from tests.workflows.runs import (
    child_of,
    kill_group,
    task_states,
    unfinished,
    wait_gone,
    wait_running,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
_S = ExecutionStatus
_names = itertools.count(1)
SLACK_S = 3.0


@pytest.fixture
def holders(deployment: Cluster) -> Iterator[dict[str, CeleryProcess]]:
    """Two workers of one slot that alone serve ``native`` (``wf.hold``)."""
    serial = next(_names)
    started = [
        deployment.fleet.worker(f"wf-hold-{serial}-{n}", runtimes=["native"], concurrency=1)
        for n in (1, 2)
    ]
    deployment.fleet.wait_registered(deployment.database, *started)
    yield {process.name: process for process in started}
    for process in started:
        process.destroy()


@pytest.mark.parametrize("retry", [False, True], ids=["no-retry", "retry-on-abandoned"])
def test_kill_9_of_the_worker_running_a_task(
    deployment: Cluster, holders: dict[str, CeleryProcess], tmp_path: Path, retry: bool
) -> None:
    # Given a task holding on one of two workers
    handle = attune.execute("wf.held_retry" if retry else "wf.held", {"dir": str(tmp_path)})
    held = wait_running(deployment.database, handle.id, "hold")
    held_id, worker, pgid = held.id, str(held.worker), int(held.pgid or 0)
    assert markers(tmp_path, "started") == 1

    # When its host dies: the worker, its pool and the action's process group, all at once
    holders[worker].destroy()
    kill_group(pgid)
    (tmp_path / "release").touch()  # an attempt started from now on ends at once
    record = handle.wait(60)

    # Then the task ran to success once at most, and nothing is left running
    attempts = child_of(deployment.database, handle.id, "hold")
    assert attempts[0].id == held_id
    if retry:
        assert record.status is _S.SUCCEEDED, record.error
        assert [(a.attempt, a.status) for a in attempts] == [(1, "abandoned"), (2, "succeeded")]
        assert attempts[1].worker != worker
        assert markers(tmp_path, "done") == 1
        assert task_states(deployment.database, handle.id) == {
            "hold": "succeeded",
            "after": "succeeded",
        }
        assert len(child_of(deployment.database, handle.id, "after")) == 1
    else:
        assert record.status is _S.FAILED
        assert [(a.attempt, a.status) for a in attempts] == [(1, "abandoned")]
        assert markers(tmp_path, "done") == 0
        (error,) = record.result["errors"]
        assert (error["task"], error["status"], error["execution_id"]) == (
            "hold",
            "abandoned",
            held_id,
        )
        assert child_of(deployment.database, handle.id, "after") == []
    assert unfinished(deployment.database) == []
    wait_gone(pgid)


def test_a_lost_advance_is_made_by_beats_safety_net(
    deployment: Cluster, holders: dict[str, CeleryProcess], tmp_path: Path
) -> None:
    # Given a task's child that ends while its worker is frozen (SIGSTOP, pool included): its
    # runner neither advances the run nor sends the message; the row goes terminal in SQL
    handle = attune.execute("wf.lost", {"dir": str(tmp_path)})
    first = wait_running(deployment.database, handle.id, "first")
    frozen = holders[str(first.worker)]
    os.killpg(frozen.pid, signal.SIGSTOP)
    with deployment.database.engine.begin() as connection:
        moved = connection.execute(
            text(
                "UPDATE execution SET status = 'succeeded', finished_at = now(), result = '{}'"
                " WHERE id = :id AND status = 'running' AND NOT wf_consumed"
            ),
            {"id": first.id},
        ).rowcount
    assert moved == 1
    ended_at = time.monotonic()

    # When nothing else happens
    record = handle.wait(30)

    # Then beat's reconcile advanced it, within one interval (plus slack)
    took_s = time.monotonic() - ended_at
    frozen.destroy()
    kill_group(int(first.pgid or 0))
    assert record.status is _S.SUCCEEDED, record.error
    assert took_s < RECONCILE_INTERVAL_S + SLACK_S
    assert task_states(deployment.database, handle.id) == {
        "first": "succeeded",
        "after": "succeeded",
    }
    (ended,) = child_of(deployment.database, handle.id, "first")
    assert ended.wf_consumed
    assert markers(tmp_path, "done") == 0  # the held process never ended on its own
    wait_gone(first.pgid)
