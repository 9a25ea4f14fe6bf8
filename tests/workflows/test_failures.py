"""Failures with real workers: ``fail_fast`` across branches and in a fan-out, a child canceled
on its own, and a deadline reaching into a nested workflow."""

from __future__ import annotations

import pytest

import attune
from attune.store.models import ExecutionStatus
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
WAIT_S = 60


def test_fail_fast_starts_nothing_new_but_lets_running_tasks_finish(deployment: Cluster) -> None:
    record = attune.execute("wf.branches_fail_fast").wait(WAIT_S)

    assert record.status is _S.FAILED
    assert [e["task"] for e in record.result["errors"]] == ["bad"]
    assert task_states(deployment.database, record.id) == {
        "split": "succeeded",
        "bad": "failed",
        "slow": "succeeded",  # it was running: it drained, nothing came after it
    }
    (slow,) = child_of(deployment.database, record.id, "slow")
    assert record.finished_at is not None
    assert slow.finished_at is not None
    assert record.finished_at >= slow.finished_at


def test_without_fail_fast_the_other_branches_finish_then_the_run_fails(
    deployment: Cluster,
) -> None:
    record = attune.execute("wf.branches_keep_going").wait(WAIT_S)

    assert record.status is _S.FAILED
    assert [e["task"] for e in record.result["errors"]] == ["bad"]
    assert task_states(deployment.database, record.id)["late"] == "succeeded"


def test_a_failed_item_stops_a_fail_fast_fan_out(deployment: Cluster) -> None:
    record = attune.execute("wf.items_fail_fast").wait(WAIT_S)

    assert record.status is _S.FAILED
    started = {child.wf_item: child.status for child in children(deployment.database, record.id)}
    assert started[2] == "failed"
    assert set(started) <= {0, 1, 2, 3}  # two at a time: nothing after the failure's turn
    errors = {e["item"]: e for e in record.result["errors"]}
    assert errors[2]["status"] == "failed"
    assert {errors[n]["status"] for n in range(4, 8)} == {"canceled"}
    assert "not started" in errors[7]["error"]


def test_a_fan_out_without_fail_fast_runs_every_item_and_names_the_failed_one(
    deployment: Cluster,
) -> None:
    record = attune.execute("wf.items_keep_going").wait(WAIT_S)

    assert record.status is _S.FAILED
    started = children(deployment.database, record.id)
    assert sorted(child.wf_item or 0 for child in started) == list(range(8))
    (error,) = record.result["errors"]
    assert (error["task"], error["item"], error["status"]) == ("each", 2, "failed")
    assert task_states(deployment.database, record.id) == {"each": "failed"}


def test_a_child_canceled_on_its_own_is_an_unhandled_canceled_outcome(
    deployment: Cluster,
) -> None:
    handle = attune.execute("wf.cancel_inner")
    nap = wait_running(deployment.database, handle.id, "nap")

    canceled = attune_cli(deployment.fleet.environment(), "executions", "cancel", str(nap.id))
    record = handle.wait(WAIT_S)

    assert canceled.returncode == 0, canceled.stderr
    assert record.status is _S.FAILED
    (error,) = record.result["errors"]
    assert (error["task"], error["status"], error["execution_id"]) == ("nap", "canceled", nap.id)


def test_a_deadline_cancels_a_nested_workflow_and_its_processes(deployment: Cluster) -> None:
    handle = attune.execute("wf.timeout_nested")
    middle = wait_until(lambda: children(deployment.database, handle.id), 30, "the middle run")[0]
    nap = wait_running(deployment.database, middle.id, "nap")

    record = handle.wait(WAIT_S)

    assert record.status is _S.TIMEOUT
    (inner,) = children(deployment.database, handle.id)
    assert inner.status == "canceled"
    (ended,) = children(deployment.database, middle.id)
    assert (ended.id, ended.status) == (nap.id, "canceled")
    wait_gone(nap.pgid)
    assert unfinished(deployment.database) == []
