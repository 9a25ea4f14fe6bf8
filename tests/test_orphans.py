"""Orphans on both databases: recorded action groups a worker no longer holds are killed.

The groups are real processes in sessions of their own; the execution rows record them as the
runner does (pgid, leader start ticks, host identity).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from attune.liveness.orphans import settle_predecessor, stop_orphans
from attune.runtimes.reaper import group_of, host_identity
from attune.store.db import Database
from attune.store.models import Execution, ExecutionStatus, Worker
from tests.rows import execution_row

GRACE_S = 0.2


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process group (``sleep`` leading its own session), killed afterwards."""
    process = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield process
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def recorded(
    database: Database,
    worker: str,
    status: ExecutionStatus,
    pid: int,
    *,
    host: str | None = None,
    ticks_off: int = 0,
) -> int:
    """An execution of ``worker`` in ``status`` whose row records the group ``pid`` leads."""
    group = group_of(pid)
    with database.session_scope() as session:
        if session.get(Worker, 1) is None:
            session.add(Worker(id=1, name=worker))
        execution = Execution(
            action_ref="core.sleep",
            worker=worker,
            status=status,
            pgid=group.pgid,
            pgid_start_ticks=group.start_ticks + ticks_off,
            pgid_host=host or host_identity(),
        )
        session.add(execution)
        session.flush()
        return execution.id


def test_a_restart_abandons_what_its_predecessor_held_and_kills_its_live_group(
    database: Database, sleeper: subprocess.Popen[bytes]
) -> None:
    execution_id = recorded(database, "w1", ExecutionStatus.RUNNING, sleeper.pid)

    found = settle_predecessor(database, "w1", GRACE_S)

    row = execution_row(database, execution_id)
    assert found == 1
    assert (row.status, row.error) == ("abandoned", "worker w1 restarted")
    assert (row.pgid, row.pgid_start_ticks, row.pgid_host) == (None, None, None)
    assert sleeper.wait(5) == -signal.SIGTERM


def test_a_reactivated_worker_kills_only_the_groups_of_what_it_no_longer_holds(
    database: Database, sleeper: subprocess.Popen[bytes]
) -> None:
    abandoned = recorded(database, "w1", ExecutionStatus.ABANDONED, sleeper.pid)
    still_running = recorded(database, "w1", ExecutionStatus.RUNNING, sleeper.pid)

    found = stop_orphans(database, "w1", GRACE_S)

    assert found == 1
    assert execution_row(database, abandoned).pgid is None
    assert execution_row(database, still_running).pgid == sleeper.pid
    assert sleeper.wait(5) == -signal.SIGTERM


def test_a_group_recorded_elsewhere_or_with_another_start_time_is_left_alone(
    database: Database, sleeper: subprocess.Popen[bytes]
) -> None:
    elsewhere = recorded(
        database, "w1", ExecutionStatus.ABANDONED, sleeper.pid, host="other-host boot"
    )
    reused = recorded(database, "w1", ExecutionStatus.ABANDONED, sleeper.pid, ticks_off=1)

    found = stop_orphans(database, "w1", GRACE_S)

    assert found == 1  # the reused pid's record, cleared without a signal
    assert execution_row(database, elsewhere).pgid == sleeper.pid
    assert execution_row(database, reused).pgid is None
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.wait(GRACE_S + 0.3)
    assert sleeper.poll() is None
