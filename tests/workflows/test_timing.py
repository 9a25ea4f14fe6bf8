"""Time with real workers and beat: backoff gaps between a task's retries, a task's timeout,
a workflow's timeout, and a cancel that cascades two levels deep, killing the processes."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

import attune
from attune.store.models import ExecutionStatus
from attune.workflows.reconcile import RECONCILE_INTERVAL_S
from tests.cluster import Cluster, attune_cli
from tests.processes import wait_until
from tests.workflows.runs import (
    child_of,
    children,
    task_states,
    unfinished,
    wait_gone,
    wait_running,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
_S = ExecutionStatus
SLACK_S = 3.0
KILL_GRACE_S = 1.0  # tests.cluster's ATTUNE_KILL_GRACE_S


def test_retries_of_a_task_wait_their_exponential_backoff(
    deployment: Cluster, tmp_path: Path
) -> None:
    record = attune.execute("wf.backoff", {"dir": str(tmp_path)}).wait(60)

    assert record.status is _S.SUCCEEDED, record.error
    attempts = child_of(deployment.database, record.id, "first")
    assert [(a.attempt, a.status) for a in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]
    assert attempts[2].result == {"runs": 3}
    for before, after, delay_s in (
        (attempts[0], attempts[1], 0.5),
        (attempts[1], attempts[2], 1.0),
    ):
        assert before.finished_at is not None
        assert after.started_at is not None
        assert after.retry_of_id == before.id
        assert after.eligible_at == before.finished_at + timedelta(seconds=delay_s)
        assert after.started_at >= after.eligible_at  # never before its delay
    assert task_states(deployment.database, record.id) == {
        "first": "succeeded",
        "after": "succeeded",
    }


def test_a_task_timeout_ends_its_child_timeout_and_timed_out_matches(
    deployment: Cluster,
) -> None:
    handle = attune.execute("wf.task_timeout")
    pgid = wait_running(deployment.database, handle.id).pgid

    record = handle.wait(30)

    assert record.status is _S.SUCCEEDED, record.error
    assert record.result == {"timed_out": True, "status": "timeout"}
    (slow,) = children(deployment.database, record.id)
    assert (slow.status, slow.timeout_s) == ("timeout", 1.0)
    assert slow.started_at is not None
    assert slow.finished_at is not None
    took_s = (slow.finished_at - slow.started_at).total_seconds()
    assert 1.0 <= took_s < 1.0 + KILL_GRACE_S + SLACK_S
    wait_gone(pgid)


def test_a_workflow_timeout_ends_the_run_timeout_and_cancels_its_tasks(
    deployment: Cluster,
) -> None:
    started = time.monotonic()
    handle = attune.execute("wf.workflow_timeout")
    nap = wait_running(deployment.database, handle.id, "nap")

    record = handle.wait(30)

    took_s = time.monotonic() - started
    assert record.status is _S.TIMEOUT
    assert record.error == "the workflow ended timeout: its deadline passed"
    assert took_s < 1.0 + RECONCILE_INTERVAL_S + KILL_GRACE_S + SLACK_S
    (ended,) = children(deployment.database, record.id)
    assert (ended.id, ended.status) == (nap.id, "canceled")
    assert task_states(deployment.database, record.id) == {"nap": "canceled"}
    wait_gone(nap.pgid)


def test_cancel_cascades_two_levels_deep_and_kills_the_processes(deployment: Cluster) -> None:
    # Given a workflow whose task is a workflow whose task sleeps
    handle = attune.execute("wf.cancel_outer")
    middle = wait_until(lambda: children(deployment.database, handle.id), 30, "the middle run")[0]
    nap = wait_running(deployment.database, middle.id, "nap")

    # When the outer run is canceled from the command line
    canceled = attune_cli(deployment.fleet.environment(), "executions", "cancel", str(handle.id))
    record = handle.wait(30)

    # Then every level ends canceled and the sleep's processes are gone
    assert canceled.returncode == 0, canceled.stderr
    assert record.status is _S.CANCELED
    (inner,) = children(deployment.database, handle.id)
    assert (inner.id, inner.action_ref, inner.status) == (middle.id, "wf.cancel_inner", "canceled")
    (ended,) = children(deployment.database, middle.id)
    assert (ended.id, ended.action_ref, ended.status) == (nap.id, "core.sleep", "canceled")
    wait_gone(nap.pgid)
    assert unfinished(deployment.database) == []
