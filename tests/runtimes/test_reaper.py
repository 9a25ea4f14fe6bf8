"""The reaper: a process that runs actions dies, its reaper stops their groups; pids are checked.

Real processes throughout: a Python process runs an action through the runtime's
``run_process`` and is killed with SIGKILL; groups are real sessions started with ``setsid``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from attune.runtimes.reaper import ProcessGroup, group_of, start_ticks, stop_groups
from tests.processes import ROOT, wait_until

GRACE_S = 0.5

_RUNNER = """
import sys, threading
from pathlib import Path
from attune.runtimes.process import Spawn, run_process
spawn = Spawn(argv=["bash", "-c", sys.argv[1]], cwd=Path("."), env={"PATH": "/usr/bin:/bin"},
              stdin=None, timeout_s=300, kill_grace_s=float(sys.argv[2]), max_output_bytes=1000)
run_process(spawn, threading.Event())
"""


@pytest.fixture
def sessions() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started in sessions of their own, killed (groups and all) afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def session(started: list[subprocess.Popen[bytes]], script: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    started.append(process)
    return process


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def test_killing_the_process_that_runs_an_action_stops_its_whole_group(tmp_path: Path) -> None:
    # Given a process running an action that has a grandchild
    pids = tmp_path / "pids"
    script = f"sleep 120 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runner = subprocess.Popen([sys.executable, "-c", _RUNNER, script, str(GRACE_S)], env=env)
    try:
        wait_until(pids.exists, 30, "the action writing its pids")
        leader, grandchild = (int(pid) for pid in pids.read_text().split())
        assert not gone(leader)
        assert not gone(grandchild)

        # When that process is killed with SIGKILL
        runner.kill()
        runner.wait()

        # Then its reaper stops the action's group, grandchild included
        wait_until(lambda: gone(leader) and gone(grandchild), GRACE_S + 5, "the group stopped")
    finally:
        runner.kill()
        runner.wait()


def test_a_group_whose_leader_is_another_process_now_is_not_signalled(
    sessions: list[subprocess.Popen[bytes]],
) -> None:
    # Given a live group, and a record of it whose start time is not its leader's
    leader = session(sessions, "sleep 120").pid
    group = group_of(leader)
    reused = ProcessGroup(leader, group.start_ticks + 1)

    # When the record is signalled, then the true group
    sent_to_reused = reused.signal(signal.SIGKILL)
    time.sleep(0.1)
    survived = not gone(leader)
    sent_to_group = group.signal(signal.SIGKILL)

    # Then only the true record reaches the process
    assert (sent_to_reused, survived, sent_to_group) == (False, True, True)
    assert start_ticks(leader) == group.start_ticks
    wait_until(lambda: gone(leader), 5, "the group killed")


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(
    sessions: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    # Given a group that ignores SIGTERM, and one that does not
    ready = tmp_path / "trapped"
    stubborn = session(sessions, f"trap '' TERM; touch {ready}; while :; do sleep 0.05; done")
    polite = session(sessions, "sleep 120")
    wait_until(ready.exists, 10, "the trap set")

    # When both are stopped
    started = time.monotonic()
    stopped = stop_groups([group_of(stubborn.pid), group_of(polite.pid)], GRACE_S)
    took_s = time.monotonic() - started

    # Then both are gone: the polite one at SIGTERM, the stubborn one by SIGKILL after the grace
    assert [group.pgid for group in stopped] == [stubborn.pid, polite.pid]
    assert stubborn.wait(5) == -signal.SIGKILL
    assert polite.wait(5) == -signal.SIGTERM
    assert took_s >= GRACE_S
