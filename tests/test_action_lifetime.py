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
    """Every live (non-zombie) process whose process group is ``pgid``."""
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit()
        and (fields := stat(int(entry)))
        and fields[0] != "Z"
        and int(fields[2]) == pgid
    ]


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and (fields := stat(int(entry))) and int(fields[1]) == pid
    ]


def start_action(worker: str, pid_file: Path) -> tuple[int, int, int]:
    """Run the action on ``worker``; its execution id, its group id and its grandchild's pid."""
    cmd = f"sleep 120 & echo $$ $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; wait"
    handle = attune.execute("core.local", {"cmd": cmd}, worker=worker)
    wait_until(pid_file.exists, 30, "the action writing its pids")
    leader, grandchild = (int(pid) for pid in pid_file.read_text().split())
    assert running(leader)
    assert running(grandchild)
    assert group_members(leader) == sorted([leader, grandchild])
    return handle.id, leader, grandchild


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


def pool_process(worker: CeleryProcess) -> int:
    """The worker's only pool process (the one that runs its actions)."""
    pool = wait_until(lambda: children(worker.pid), 10, "the pool process")
    assert len(pool) == 1
    return pool[0]


def test_kill_9_of_the_main_process_kills_the_action_group(
    deployment: Cluster, tmp_path: Path
) -> None:
    # Given a worker running an action that has a grandchild
    worker = start_worker(deployment, "lifetime-main")
    pool = pool_process(worker)
    _execution, leader, grandchild = start_action("lifetime-main", tmp_path / "pids")

    # When its main process is killed with SIGKILL
    worker.kill()

    # Then the pool process and the whole action group are gone
    assert_group_gone(leader, grandchild, "after kill -9 of the main process")
    assert not running(pool)


def test_kill_9_of_the_pool_process_kills_the_action_group(
    deployment: Cluster, tmp_path: Path
) -> None:
    # Given a worker running an action that has a grandchild
    worker = start_worker(deployment, "lifetime-pool")
    pool = pool_process(worker)
    execution_id, leader, grandchild = start_action("lifetime-pool", tmp_path / "pids")

    # When the pool process supervising the action is killed with SIGKILL
    os.kill(pool, signal.SIGKILL)

    # Then the whole action group is gone, and the worker abandoned the execution (once
    # Celery noticed the lost process: its pool maintenance runs every 5 s)
    assert_group_gone(leader, grandchild, "after kill -9 of the pool process")
    wait_until(
        lambda: execution_row(deployment.database, execution_id).status == "abandoned",
        POOL_MAINTENANCE_S + SLACK_S,
        "the execution abandoned",
    )
    assert worker.alive()


@pytest.mark.parametrize("frozen", ["main process", "whole worker"])
def test_a_worker_frozen_past_the_sweep_kills_the_action_once_resumed(
    deployment: Cluster, tmp_path: Path, frozen: str
) -> None:
    # Given a worker running an action, a second worker and beat (they sweep)
    name = f"lifetime-frozen-{frozen.split()[0]}"
    worker, _sweeper = start_worker(deployment, name), start_worker(deployment, "lifetime-sweeper")
    deployment.fleet.beat()
    execution_id, leader, grandchild = start_action(name, tmp_path / "pids")
    wait_until(
        lambda: execution_row(deployment.database, execution_id).pgid == leader,
        SLACK_S,
        "the action's group recorded",
    )

    # When the worker is frozen (SIGSTOP) until the sweep abandoned the execution, then resumed
    if frozen == "main process":
        worker.pause()
    else:
        os.killpg(worker.pid, signal.SIGSTOP)
    try:
        wait_until(
            lambda: execution_row(deployment.database, execution_id).status == "abandoned",
            THRESHOLD_S + SWEEP_S + SLACK_S,
            "the sweep abandoning the execution",
        )
    finally:
        os.killpg(worker.pid, signal.SIGCONT)

    # Then the action's group is gone (within a heartbeat and the grace) and the execution,
    # its late result stored, stays abandoned
    assert_group_gone(leader, grandchild, "after the frozen worker resumed")
    wait_until(
        lambda: late_note(execution_row(deployment.database, execution_id).error),
        HEARTBEAT_S + SLACK_S,
        "the worker's late note on the execution",
    )
    row = execution_row(deployment.database, execution_id)
    assert row.status == ExecutionStatus.ABANDONED
    assert row.error is not None
    assert row.error.startswith(f"worker {name} stopped heartbeating")
    assert row.pgid is None
    assert worker.alive()


def test_a_restarted_worker_kills_the_live_group_its_dead_predecessor_recorded(
    deployment: Cluster, tmp_path: Path
) -> None:
    # Given a worker whose action's group is recorded, killed with its reaper (kill -9 of all)
    first = start_worker(deployment, "lifetime-phoenix")
    pool = pool_process(first)
    execution_id, leader, grandchild = start_action("lifetime-phoenix", tmp_path / "pids")
    wait_until(
        lambda: execution_row(deployment.database, execution_id).pgid == leader,
        SLACK_S,
        "the action's group recorded",
    )
    (reaper,) = [pid for pid in children(pool) if pid != leader]
    os.kill(reaper, signal.SIGKILL)
    first.destroy()  # SIGKILL to the worker's process group: main and pool process
    assert not first.alive()
    assert sorted(group_members(leader)) == sorted([leader, grandchild])  # left behind

    # When a worker starts again under the same name
    start_worker(deployment, "lifetime-phoenix")

    # Then the recorded group is killed and the execution its predecessor held abandoned
    assert_group_gone(leader, grandchild, "after the worker restarted")
    row = execution_row(deployment.database, execution_id)
    assert (row.status, row.error) == ("abandoned", "worker lifetime-phoenix restarted")
    assert row.pgid is None
