"""The next task of a run taken on by the pool process whose task just ended (real processes):
it is claimed in the advance's transaction and run in that process, a death of the process
abandons it at once (and its retry runs), and a task of a runtime the worker does not serve
still goes to a worker that does, by message."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import bindparam, update

import attune
from attune.settings import Settings
from attune.store.models import EXECUTION_TABLE, ExecutionStatus
from attune.workflows.engine import advance
from tests.cluster import Cluster
from tests.processes import CeleryProcess
from tests.workflows.runs import (
    child_of,
    kill_group,
    unfinished,
    wait_gone,
    wait_running,
    workflow_run,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
_S = ExecutionStatus
# A store in an advance: one that writes (a running task's empty stdout, unchanged) or not.
_TOUCH = (
    update(EXECUTION_TABLE)
    .where(EXECUTION_TABLE.c.id == bindparam("execution_id"))
    .values(stdout=EXECUTION_TABLE.c.stdout)
    .returning(EXECUTION_TABLE.c.id)
)
_names = itertools.count(1)


@pytest.fixture
def relay(deployment: Cluster) -> Iterator[CeleryProcess]:
    """A worker of two slots that alone serves ``native`` (``wf.hold``)."""
    process = deployment.fleet.worker(
        f"wf-relay-{next(_names)}", runtimes=["native"], concurrency=2
    )
    deployment.fleet.wait_registered(deployment.database, process)
    yield process
    process.destroy()


def _pool_of(pgid: int) -> int:
    """The pool process that started process group ``pgid`` (its leader's parent)."""
    status = Path(f"/proc/{pgid}/status").read_text(encoding="utf-8")
    return int(next(line.split()[1] for line in status.splitlines() if line[:5] == "PPid:"))


@pytest.mark.parametrize("retry", [False, True], ids=["no-retry", "retry-on-abandoned"])
def test_the_next_task_runs_in_the_process_that_ended_the_last_and_its_death_abandons_it(
    deployment: Cluster, relay: CeleryProcess, tmp_path: Path, retry: bool
) -> None:
    # Given a run whose first task ends at once and whose second holds, both native
    (tmp_path / "first").mkdir()
    (tmp_path / "first" / "release").touch()
    handle = attune.execute("wf.relay_retry" if retry else "wf.relay", {"dir": str(tmp_path)})

    # When the first ends, its pool process claims the second in the advance's transaction
    # (started when it was recorded, the database clock being the transaction's) and runs it
    held = wait_running(deployment.database, handle.id, "second")
    pgid = int(held.pgid or 0)
    (first,) = child_of(deployment.database, handle.id, "first")
    assert held.worker == first.worker == relay.name
    assert held.started_at == held.requested_at
    # and the first's end was stored in that same transaction (one commit per step)
    assert first.finished_at == held.requested_at

    # Then the death of that pool process abandons the second at once (the worker lives on)
    os.kill(_pool_of(pgid), signal.SIGKILL)
    kill_group(pgid)
    (tmp_path / "release").touch()  # a retry's attempt ends at once
    record = handle.wait(60)
    attempts = child_of(deployment.database, handle.id, "second")
    assert attempts[0].status == "abandoned"
    assert str(attempts[0].error).startswith(f"the worker process running it on {relay.name}")
    if retry:
        assert record.status is _S.SUCCEEDED, record.error
        assert [(a.attempt, a.status) for a in attempts] == [(1, "abandoned"), (2, "succeeded")]
        assert len(child_of(deployment.database, handle.id, "after")) == 1
    else:
        assert record.status is _S.FAILED
        assert len(attempts) == 1
        assert child_of(deployment.database, handle.id, "after") == []
    assert unfinished(deployment.database) == []
    wait_gone(pgid)


def test_a_task_of_a_runtime_the_worker_does_not_serve_goes_by_message(
    deployment: Cluster, relay: CeleryProcess, tmp_path: Path
) -> None:
    # Given a run whose native task ends on the native-only worker, followed by a shell task
    (tmp_path / "release").touch()
    handle = attune.execute("wf.lost", {"dir": str(tmp_path)})

    # When the native task's process advances the run
    record = handle.wait(60)

    # Then a worker serving shell ran the next task, from its message
    assert record.status is _S.SUCCEEDED, record.error
    (first,) = child_of(deployment.database, handle.id, "first")
    (after,) = child_of(deployment.database, handle.id, "after")
    assert first.worker == relay.name
    assert after.worker in ("wf-one", "wf-two")
    assert after.started_at is not None
    assert after.started_at > after.requested_at


def test_a_store_in_the_advance_that_finds_its_child_settled_rolls_the_advance_back(
    deployment: Cluster, relay: CeleryProcess, tmp_path: Path
) -> None:
    # Given a run whose second task holds (running on the relay worker)
    (tmp_path / "first").mkdir()
    (tmp_path / "first" / "release").touch()
    handle = attune.execute("wf.relay", {"dir": str(tmp_path)})
    second = wait_running(deployment.database, handle.id, "second").id
    before = workflow_run(deployment.database, handle.id).version
    settings = Settings.from_env()

    # When an advance is given a store that finds its child no longer its to end (writes
    # nothing)
    refused = advance(
        deployment.database, settings, handle.id, storing=(_TOUCH, {"execution_id": -1})
    )

    # Then nothing is kept: the lock's version bump is rolled back with it
    assert not refused.stored
    assert workflow_run(deployment.database, handle.id).version == before

    # And one whose store holds commits with its pass (the run goes on as before)
    kept = advance(
        deployment.database, settings, handle.id, storing=(_TOUCH, {"execution_id": second})
    )
    assert kept.stored
    assert workflow_run(deployment.database, handle.id).version == before + 1
    (tmp_path / "release").touch()
    assert handle.wait(60).status is _S.SUCCEEDED
    assert unfinished(deployment.database) == []
