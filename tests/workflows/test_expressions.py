"""Expressions at run time with real workers: a sandbox escape and undefined names fail the task
clearly (never a default branch), input text with ``{{ }}`` reaches the action verbatim, and a
secret parameter stays masked in ``vars``, the output and the children's parameters."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

import attune
from attune.store.models import MASK, ExecutionStatus
from tests.cluster import Cluster
from tests.workflows.runs import child_of, children, task_states, workflow_run

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
_S = ExecutionStatus
WAIT_S = 60


@pytest.mark.parametrize(
    ("ref", "field", "message"),
    [
        ("wf.escape", "tasks[0].input", "__class__"),
        ("wf.undefined_input", "tasks[0].input", "nothing_here"),
        ("wf.undefined_when", "tasks[0].next[0].when", "missing"),
    ],
)
def test_an_expression_that_fails_fails_its_task_naming_task_and_field(
    deployment: Cluster, ref: str, field: str, message: str
) -> None:
    record = attune.execute(ref).wait(WAIT_S)

    assert record.status is _S.FAILED
    (error,) = record.result["errors"]
    assert error["task"] == "speak"
    assert field in error["error"]
    assert message in error["error"]
    assert record.error is not None
    assert record.error.startswith("task speak: ")
    assert field in record.error
    assert task_states(deployment.database, record.id) == {"speak": "failed"}
    started = children(deployment.database, record.id)
    if ref == "wf.undefined_when":  # the task ran; its transition never defaulted to a branch
        assert [child.status for child in started] == ["succeeded"]
    else:  # nothing was started with a broken input
        assert started == []


def test_input_text_containing_braces_reaches_the_action_verbatim(deployment: Cluster) -> None:
    given = "{{ 7 * 6 }} and {% if true %}x{% endif %} stay as typed"

    record = attune.execute("wf.verbatim", {"text": given}).wait(WAIT_S)

    assert record.status is _S.SUCCEEDED, record.error
    assert record.result == {"text": given}
    (say,) = children(deployment.database, record.id)
    assert say.parameters == {"message": given}
    assert say.stdout == given + "\n"


def test_a_secret_parameter_stays_masked_in_vars_output_and_children(
    deployment: Cluster,
) -> None:
    secret = "s3cr3t-value-9173"

    record = attune.execute("wf.secret", {"token": secret}).wait(WAIT_S)

    assert record.status is _S.SUCCEEDED, record.error
    assert record.parameters == {"token": MASK}
    assert record.result == {"kept": MASK, "seen": f"token {MASK}"}
    assert workflow_run(deployment.database, record.id).vars == {
        "kept": MASK,
        "seen": f"token {MASK}",
    }
    (show,) = child_of(deployment.database, record.id, "show")
    assert show.status == "succeeded"
    assert show.parameters["token"] == MASK
    assert secret not in show.stdout  # the runtime redacts it by value
    assert "token=" in show.stdout
    with deployment.database.engine.connect() as connection:
        stored = connection.execute(
            text(
                "SELECT e.parameters::text, e.result::text, e.error, e.stdout, w.vars::text,"
                " w.errors::text FROM execution e LEFT JOIN workflow_run w"
                " ON w.execution_id = e.id WHERE e.id = :id OR e.parent_id = :id"
            ),
            {"id": record.id},
        ).all()
    assert stored, "the run and its children are stored"
    assert secret not in json.dumps([list(row) for row in stored])
