"""Execution-finished events on every path that ends an execution, with real processes on
PostgreSQL + Redis: a worker killed with SIGKILL (beat's sweep abandons), an execution no worker
picked up (beat's sweep fails it), a cancel before the start (the ``attune`` command line), a
dead pool process (its worker abandons), retried attempts (the runner's retry path). Each
execution gets exactly one event, and the rule it fires runs its follow-up on a real worker.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

import attune
from attune.executions import chains
from attune.store.models import Enforcement, Execution, ExecutionStatus, TriggerEvent
from tests.cluster import Cluster, attune_cli, cluster
from tests.conftest import clear
from tests.pack_builder import write_yaml
from tests.processes import wait_until
from tests.rows import add_execution, execution_row

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
_S = ExecutionStatus
UNPICKED_TIMEOUT_S = 5
ON_FINISHED = {
    "ref": "policies.on_finished",
    "description": "Echo how every execution but an echo ended.",
    "trigger": {"type": "core.execution_finished", "params": {"action": "*"}},
    "criteria": {"trigger.action_ref": {"op": "nequals", "value": "core.echo"}},
    "action": {"ref": "core.echo", "parameters": {"message": "{{ trigger.status }}"}},
}


@pytest.fixture(scope="module")
def deployment(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with cluster(postgres_url, redis_url, tmp_path_factory.mktemp("finished")) as running:
        env = running.fleet.environment()
        rules_dir = Path(env["ATTUNE_PACKS_DIR"]) / "policies" / "rules"
        rules_dir.mkdir()
        write_yaml(rules_dir / "on_finished.yaml", ON_FINISHED)
        loaded = attune_cli(env, "packs", "load")
        assert loaded.returncode == 0, loaded.stderr
        running.start_worker("f-shell", ["shell"])
        running.fleet.beat(env={"ATTUNE_SCHEDULED_TIMEOUT_S": str(UNPICKED_TIMEOUT_S)})
        yield running
        running.stop_all()
        clear(running.database)


def events_of(deployment: Cluster, execution_id: int) -> list[TriggerEvent]:
    """Every execution-finished event recorded for the execution."""
    with deployment.database.session_scope() as session:
        query = select(TriggerEvent).where(
            TriggerEvent.type == "core.execution_finished",
            TriggerEvent.dedup_key.like(f"exec:{execution_id}:%"),
        )
        return list(session.scalars(query))


def followed_up(deployment: Cluster, execution_id: int, status: str) -> Execution:
    """The follow-up the rule ran for the execution's one event, once it succeeded."""

    def done() -> Execution | None:
        [event] = events_of(deployment, execution_id) or [None]
        if event is None:
            return None
        with deployment.database.session_scope() as session:
            enforcement = session.scalars(
                select(Enforcement).where(Enforcement.event_id == event.id)
            ).one()
            assert enforcement.status == "scheduled", enforcement.reason
            follow_up = session.get_one(Execution, enforcement.execution_id)
        return follow_up if follow_up.status == "succeeded" else None

    follow_up = wait_until(done, 60, f"the follow-up of execution {execution_id}")
    [event] = events_of(deployment, execution_id)
    assert event.payload["status"] == status
    assert event.payload["execution_id"] == execution_id
    assert follow_up.parameters == {"message": status}
    assert follow_up.trigger_depth == 1
    return follow_up


def test_a_worker_killed_mid_action_leaves_one_event_per_abandoned_execution(
    deployment: Cluster,
) -> None:
    victim = deployment.start_worker("f-victim", ["shell"])
    handle = attune.execute("core.sleep", {"seconds": 60}, worker="f-victim")
    wait_until(lambda: handle.status() is _S.RUNNING, 30, "the action running")
    held = add_execution(deployment.database, "f-victim")  # a second one it held

    victim.kill()

    for execution_id in (handle.id, held):
        followed_up(deployment, execution_id, "abandoned")
    assert execution_row(deployment.database, held).error is not None


def test_an_execution_no_worker_picked_up_fails_with_one_event(deployment: Cluster) -> None:
    execution_id = add_execution(deployment.database, None, _S.SCHEDULED)  # its message lost

    followed_up(deployment, execution_id, "failed")

    error = execution_row(deployment.database, execution_id).error
    assert error == f"not picked up by any worker within {UNPICKED_TIMEOUT_S} s"


def test_a_cancel_before_the_start_records_one_event(deployment: Cluster) -> None:
    execution_id = add_execution(deployment.database, None, _S.SCHEDULED)

    canceled = attune_cli(deployment.fleet.environment(), "executions", "cancel", str(execution_id))

    assert canceled.returncode == 0, canceled.stderr
    assert f"execution {execution_id}: canceled" in canceled.stdout
    followed_up(deployment, execution_id, "canceled")


def test_a_dead_pool_process_records_one_event(deployment: Cluster) -> None:
    worker = deployment.start_worker("f-pool", ["shell"])
    handle = attune.execute("core.sleep", {"seconds": 60}, worker="f-pool")
    wait_until(lambda: handle.status() is _S.RUNNING, 30, "the action running")

    for child in Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split():
        os.kill(int(child), signal.SIGKILL)

    followed_up(deployment, handle.id, "abandoned")
    assert worker.alive()
    error = execution_row(deployment.database, handle.id).error
    assert error is not None
    assert error.startswith("the worker process running it on f-pool died")


def test_each_retried_attempt_records_one_event(deployment: Cluster, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    cmd = f"n=$(ls {runs} | wc -l); touch {runs}/run-$n; [ $n -ge 2 ] || exit 1"
    handle = attune.execute("policies.flaky", {"cmd": cmd})

    assert handle.wait(60).status is _S.SUCCEEDED

    chain = chains.attempts(deployment.database, handle.id)
    assert [a.status for a in chain] == [_S.FAILED, _S.FAILED, _S.SUCCEEDED]
    for attempt in chain:
        followed_up(deployment, attempt.id, attempt.status.value)
