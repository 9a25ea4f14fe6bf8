"""No action outlives its worker: real celery workers on PostgreSQL + Redis, real shell actions.

The action (``core.local``) writes its own pid (its process group's id) and a grandchild's pid
to a file, then waits. Whatever happens to the worker — kill -9 of its main process or of the
pool process running the action, a freeze past the sweep, a restart after the whole worker and
its reaper were killed — no process of the action's group is left afterwards. Time is scaled
down (heartbeat 0.2 s, sweep 0.3 s, kill grace 1 s); every wait polls with a deadline.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import attune
from attune.store.models import ExecutionStatus
from tests.cluster import Cluster, cluster
from tests.conftest import clear
from tests.processes import HEARTBEAT_S, SWEEP_S, THRESHOLD_S, CeleryProcess, wait_until
from tests.rows import execution_row

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

KILL_GRACE_S = 1.0
"""ATTUNE_KILL_GRACE_S of the cluster's workers."""
SLACK_S = 3.0
"""Room for a loaded machine on top of what the guarantee itself allows."""
GONE_WITHIN_S = KILL_GRACE_S + 2 + SLACK_S
POOL_MAINTENANCE_S = 5.0
"""How often Celery's prefork pool looks for processes that exited."""


@pytest.fixture(scope="module")
def deployment(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with cluster(postgres_url, redis_url, tmp_path_factory.mktemp("lifetime")) as running:
        yield running
        running.stop_all()
        clear(running.database)


@pytest.fixture(autouse=True)
def own_processes(deployment: Cluster) -> Iterator[None]:
    """Each test starts the workers (and beat) it needs; they are all killed after it."""
    yield
    deployment.fleet.close()


def stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rpartition(")")[2].split()
    except OSError:
        return None


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    fields = stat(pid)
    return fields is not None and fields[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Every live (non-zombie) process whose process group is ``pgid``, by pid."""
    return sorted(
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit()
        and (fields := stat(int(entry)))
        and fields[0] != "Z"
        and int(fields[2]) == pgid
    )


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and (fields := stat(int(entry))) and int(fields[1]) == pid
    ]


def group_gone(pgid: int) -> bool:
    """True when no process of the group is left (a zombie init has not reaped yet aside)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return not group_members(pgid)


def assert_group_gone(pgid: int, grandchild: int, what: str) -> None:
    """Wait (a kill grace and two seconds, plus the slack) until no process of the group lives."""
    wait_until(lambda: group_gone(pgid), GONE_WITHIN_S, f"the action's group gone {what}")
    assert not running(pgid)
    assert not running(grandchild)


def late_note(error: str | None) -> bool:
    """True once the runner stored its late result on the abandoned execution: it stopped the
    action itself, or it saw the action end (killed by the heartbeat's kill of the group)."""
    notes = ("its worker stopped the action once it saw it abandoned", "the result arrived late")
    return error is not None and any(note in error for note in notes)


def start_worker(deployment: Cluster, name: str) -> CeleryProcess:
    process = deployment.fleet.worker(name, runtimes=["shell"], concurrency=1)
    deployment.fleet.wait_registered(deployment.database, process)
    return process


@dataclass(frozen=True)
class Busy:
    """A worker running the action: its pool process, the execution, the group, the grandchild."""

    worker: CeleryProcess
    pool: int
    execution_id: int
    leader: int
    grandchild: int


def busy_worker(deployment: Cluster, name: str, pid_file: Path, *, recorded: bool = False) -> Busy:
    """Start worker ``name`` and the action on it; with ``recorded``, wait until the worker
    recorded the action's group in the execution row."""
    worker = start_worker(deployment, name)
    (pool,) = wait_until(lambda: children(worker.pid), 10, "the pool process")
    cmd = f"sleep 120 & echo $$ $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; wait"
    handle = attune.execute("core.local", {"cmd": cmd}, worker=name)
    wait_until(pid_file.exists, 30, "the action writing its pids")
    leader, grandchild = (int(pid) for pid in pid_file.read_text().split())
    assert group_members(leader) == sorted([leader, grandchild])
    if recorded:
        wait_until(
            lambda: execution_row(deployment.database, handle.id).pgid == leader,
            SLACK_S,
            "the action's group recorded",
        )
    return Busy(worker, pool, handle.id, leader, grandchild)


def test_kill_9_of_the_main_process_kills_the_action_group(
    deployment: Cluster, tmp_path: Path
) -> None:
    # Given a worker running an action that has a grandchild
    busy = busy_worker(deployment, "lifetime-main", tmp_path / "pids")

    # When its main process is killed with SIGKILL
    busy.worker.kill()

    # Then the pool process and the whole action group are gone
    assert_group_gone(busy.leader, busy.grandchild, "after kill -9 of the main process")
    assert not running(busy.pool)


def test_kill_9_of_the_pool_process_kills_the_action_group(
    deployment: Cluster, tmp_path: Path
) -> None:
    # Given a worker running an action that has a grandchild
    busy = busy_worker(deployment, "lifetime-pool", tmp_path / "pids")

    # When the pool process supervising the action is killed with SIGKILL
    os.kill(busy.pool, signal.SIGKILL)

    # Then the whole action group is gone, and the worker abandoned the execution (once
    # Celery noticed the lost process: its pool maintenance runs every 5 s)
    assert_group_gone(busy.leader, busy.grandchild, "after kill -9 of the pool process")
    wait_until(
        lambda: execution_row(deployment.database, busy.execution_id).status == "abandoned",
        POOL_MAINTENANCE_S + SLACK_S,
        "the execution abandoned",
    )
    assert busy.worker.alive()


@pytest.mark.parametrize("frozen", ["main process", "whole worker"])
def test_a_worker_frozen_past_the_sweep_kills_the_action_once_resumed(
    deployment: Cluster, tmp_path: Path, frozen: str
) -> None:
    # Given a worker running an action, its group recorded; a second worker and beat sweep
    name = f"lifetime-frozen-{frozen.split()[0]}"
    busy = busy_worker(deployment, name, tmp_path / "pids", recorded=True)
    start_worker(deployment, "lifetime-sweeper")
    deployment.fleet.beat()

    # When the worker is frozen (SIGSTOP) until the sweep abandoned the execution, then resumed
    if frozen == "main process":
        busy.worker.pause()
    else:
        os.killpg(busy.worker.pid, signal.SIGSTOP)
    try:
        wait_until(
            lambda: execution_row(deployment.database, busy.execution_id).status == "abandoned",
            THRESHOLD_S + SWEEP_S + SLACK_S,
            "the sweep abandoning the execution",
        )
    finally:
        os.killpg(busy.worker.pid, signal.SIGCONT)

    # Then the action's group is gone (within a heartbeat and the grace) and the execution,
    # its late result stored, stays abandoned
    assert_group_gone(busy.leader, busy.grandchild, "after the frozen worker resumed")
    wait_until(
        lambda: late_note(execution_row(deployment.database, busy.execution_id).error),
        HEARTBEAT_S + SLACK_S,
        "the worker's late note on the execution",
    )
    row = execution_row(deployment.database, busy.execution_id)
    assert row.status == ExecutionStatus.ABANDONED
    assert row.error is not None
    assert row.error.startswith(f"worker {name} stopped heartbeating")
    assert row.pgid is None
    assert busy.worker.alive()


def test_a_restarted_worker_kills_the_live_group_its_dead_predecessor_recorded(
    deployment: Cluster, tmp_path: Path
) -> None:
    # Given a worker whose action's group is recorded, killed with its reaper (kill -9 of all)
    busy = busy_worker(deployment, "lifetime-phoenix", tmp_path / "pids", recorded=True)
    (reaper,) = [pid for pid in children(busy.pool) if pid != busy.leader]
    os.kill(reaper, signal.SIGKILL)
    busy.worker.destroy()  # SIGKILL to the worker's process group: main and pool process
    assert not busy.worker.alive()
    assert group_members(busy.leader) == sorted([busy.leader, busy.grandchild])  # left behind

    # When a worker starts again under the same name
    start_worker(deployment, "lifetime-phoenix")

    # Then the recorded group is killed and the execution its predecessor held abandoned
    assert_group_gone(busy.leader, busy.grandchild, "after the worker restarted")
    row = execution_row(deployment.database, busy.execution_id)
    assert (row.status, row.error) == ("abandoned", "worker lifetime-phoenix restarted")
    assert row.pgid is None
