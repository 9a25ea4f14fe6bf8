"""Control flow with real workers: a sequence passing data, branches on success, failure and
an expression, ``fail`` against ``noop``, joins after a failed branch, a join that can never be
reached, and a nested workflow's output."""

from __future__ import annotations

import pytest

import attune
from attune.store.models import ExecutionStatus
from tests.cluster import Cluster
from tests.workflows.runs import activations, child_of, children, task_states, workflow_run

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
_S = ExecutionStatus
WAIT_S = 60


def test_a_sequence_passes_data_from_task_to_task_with_native_types(deployment: Cluster) -> None:
    record = attune.execute("wf.sequence", {"start": 40}).wait(WAIT_S)

    assert record.status is _S.SUCCEEDED, record.error
    first, second, third = children(deployment.database, record.id)
    assert record.result == {
        "n": 41,
        "m": 82,
        "second": {"n": 82, "label": "n41"},
        "first_id": first.id,
    }
    assert [c.action_ref for c in (first, second, third)] == ["wf.sh", "wf.sh", "core.noop"]
    assert third.parameters == {"message": "m=82", "exit_code": 0}
    for before, after in ((first, second), (second, third)):  # one after the other
        assert before.finished_at is not None
        assert after.started_at is not None
        assert after.started_at >= before.finished_at
    assert workflow_run(deployment.database, record.id).vars == {"base": 40, "n": 41, "m": 82}


@pytest.mark.parametrize(
    ("code", "mode", "ran"),
    [
        (0, "fast", {"on_success", "on_fast"}),
        (0, "slow", {"on_success"}),
        (1, "fast", {"on_failure"}),  # the expression's branch needs success as well
    ],
)
def test_branches_follow_success_failure_and_an_expression(
    deployment: Cluster, code: int, mode: str, ran: set[str]
) -> None:
    record = attune.execute("wf.branch", {"code": code, "mode": mode}).wait(WAIT_S)

    assert record.status is _S.SUCCEEDED, record.error  # a handled failure fails nothing
    states = task_states(deployment.database, record.id)
    assert states.pop("probe") == ("succeeded" if code == 0 else "failed")
    assert states == dict.fromkeys(ran, "succeeded")


def test_noop_marks_a_failure_handled_and_the_run_succeeds(deployment: Cluster) -> None:
    record = attune.execute("wf.handled_noop").wait(WAIT_S)

    assert record.status is _S.SUCCEEDED, record.error
    assert task_states(deployment.database, record.id) == {"broken": "failed"}


def test_fail_runs_the_other_targets_then_fails_the_run_naming_the_task(
    deployment: Cluster,
) -> None:
    record = attune.execute("wf.handled_fail").wait(WAIT_S)

    assert record.status is _S.FAILED
    assert task_states(deployment.database, record.id) == {
        "broken": "failed",
        "report": "succeeded",
    }
    (broken,) = child_of(deployment.database, record.id, "broken")
    (error,) = record.result["errors"]
    assert error == {
        "task": "broken",
        "item": None,
        "attempt": 1,
        "execution_id": broken.id,
        "status": "failed",
        "error": broken.error,
    }
    assert record.error is not None
    assert record.error.startswith("task broken: ")


def test_an_unhandled_failure_fails_the_run(deployment: Cluster) -> None:
    record = attune.execute("wf.unhandled").wait(WAIT_S)

    assert record.status is _S.FAILED
    assert [e["task"] for e in record.result["errors"]] == ["broken"]
    assert task_states(deployment.database, record.id) == {"broken": "failed"}


def test_a_join_after_a_failed_branch_runs_once_when_completed_arrives(
    deployment: Cluster,
) -> None:
    record = attune.execute("wf.join_completed").wait(WAIT_S)

    assert record.status is _S.SUCCEEDED, record.error
    assert record.result == {"bad_ok": False, "merge": "succeeded"}
    assert len(child_of(deployment.database, record.id, "merge")) == 1
    assert task_states(deployment.database, record.id) == {
        "split": "succeeded",
        "good": "succeeded",
        "bad": "failed",
        "merge": "succeeded",
    }


def test_a_join_that_can_never_be_reached_fails_naming_the_missing_inbound_task(
    deployment: Cluster,
) -> None:
    record = attune.execute("wf.join_unreachable").wait(WAIT_S)

    assert record.status is _S.FAILED
    (error,) = record.result["errors"]
    assert error["task"] == "merge"
    assert "join never reached: 1 of 2 arrivals" in error["error"]
    assert "missing: bad" in error["error"]
    assert child_of(deployment.database, record.id, "merge") == []


def test_a_nested_workflow_is_a_child_and_its_output_is_the_tasks_result(
    deployment: Cluster,
) -> None:
    record = attune.execute("wf.outer", {"x": 4}).wait(WAIT_S)

    assert record.status is _S.SUCCEEDED, record.error
    assert record.result == {"inner_y": 40, "nested": {"y": 40}}
    (inner,) = children(deployment.database, record.id)
    assert (inner.action_ref, inner.status, inner.result) == ("wf.inner", "succeeded", {"y": 40})
    (leaf,) = children(deployment.database, inner.id)
    assert (leaf.action_ref, leaf.result) == ("wf.sh", {"y": 40})
    assert workflow_run(deployment.database, inner.id).depth == 2


def test_a_task_that_names_itself_runs_again_as_a_new_activation(deployment: Cluster) -> None:
    record = attune.execute("wf.loop").wait(WAIT_S)

    assert record.status is _S.SUCCEEDED, record.error
    assert record.result == {"n": 3}
    counted = [a for a in activations(deployment.database, record.id) if a.task == "count"]
    assert [(a.occurrence, a.state) for a in counted] == [(n, "succeeded") for n in (1, 2, 3, 4)]
    messages = [c.parameters["message"] for c in child_of(deployment.database, record.id, "count")]
    assert messages == ["n=0", "n=1", "n=2", "n=3"]
