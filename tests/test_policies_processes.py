"""Execution policies end to end: real `celery -A attune worker` processes and beat on
PostgreSQL + Redis, the tests' ``policies`` pack.

Two shell workers run the module's executions; the tests that kill a worker use a python
worker of their own (the ``policies.held`` and ``policies.idempotent`` actions are python, so
only it can hold them). Every wait polls with a deadline; no duration is asserted beyond what
the policies themselves guarantee (a retry never starts before its delay).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

import attune
from attune.executions import chains
from attune.store.models import Execution, ExecutionStatus
from tests.cluster import Cluster, attune_cli, cluster
from tests.conftest import clear
from tests.processes import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
_S = ExecutionStatus


@pytest.fixture(scope="module")
def deployment(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with cluster(postgres_url, redis_url, tmp_path_factory.mktemp("policies")) as running:
        running.start_worker("p-one", ["shell"])
        running.start_worker("p-two", ["shell"])
        running.fleet.beat()
        yield running
        running.stop_all()
        clear(running.database)


def counting(directory: Path, succeed_from: int, on_failure: str = "exit 1") -> str:
    """A command line that fails (``on_failure``) until its ``succeed_from``-th run."""
    directory.mkdir(exist_ok=True)
    return (
        f"n=$(ls {directory} | wc -l); touch {directory}/run-$n; "
        f"[ $n -ge {succeed_from - 1} ] || {on_failure}"
    )


def test_a_failing_action_is_retried_with_exponential_backoff(
    deployment: Cluster, tmp_path: Path
) -> None:
    handle = attune.execute("policies.flaky", {"cmd": counting(tmp_path / "runs", 3)})

    record = handle.wait(60)

    assert record.status is _S.SUCCEEDED
    assert record.try_label == "3/3"
    chain = chains.attempts(deployment.database, handle.id)
    assert [(a.attempt, a.status) for a in chain] == [
        (1, _S.FAILED),
        (2, _S.FAILED),
        (3, _S.SUCCEEDED),
    ]
    assert [a.retry_of_id for a in chain] == [None, chain[0].id, chain[1].id]
    assert {a.first_attempt_id for a in chain} == {handle.id}
    for before, after, delay_s in ((chain[0], chain[1], 0.4), (chain[1], chain[2], 0.8)):
        assert before.finished_at is not None
        assert after.started_at is not None
        assert after.eligible_at == before.finished_at + timedelta(seconds=delay_s)
        assert after.started_at >= after.eligible_at  # never before its delay
    assert attune.get_execution(handle.id).status is _S.FAILED
    assert handle.wait(5, follow=False).id == handle.id


def test_a_timed_out_attempt_is_retried(deployment: Cluster, tmp_path: Path) -> None:
    command = counting(tmp_path / "runs", 2, on_failure="sleep 30")

    record = attune.execute("policies.flaky", {"cmd": command}).wait(60)

    chain = chains.attempts(deployment.database, record.id)
    assert [(a.attempt, a.status) for a in chain] == [(1, _S.TIMEOUT), (2, _S.SUCCEEDED)]
    assert record.id == chain[1].id


def test_attune_run_follows_the_chain_and_no_follow_stops_at_the_first(
    deployment: Cluster, tmp_path: Path
) -> None:
    env = deployment.fleet.environment()

    followed = attune_cli(env, "run", "policies.flaky", f"cmd={counting(tmp_path / 'a', 3)}")
    first_only = attune_cli(
        env, "run", "policies.flaky", f"cmd={counting(tmp_path / 'b', 3)}", "--no-follow"
    )

    assert followed.returncode == 0, followed.stderr
    assert "succeeded on attempt 3/3" in followed.stdout
    assert first_only.returncode == 1
    assert "failed on attempt 1/3" in first_only.stdout
    listing = attune_cli(env, "executions", "list", "--action", "policies.flaky", "--limit", "3")
    assert "TRY" in listing.stdout
    assert "3/3" in listing.stdout


def running_now(deployment: Cluster, ref: str) -> int:
    with deployment.database.session_scope() as session:
        return (
            session.scalar(
                select(func.count()).where(
                    Execution.action_ref == ref, Execution.status.in_(["running", "canceling"])
                )
            )
            or 0
        )


def starts(deployment: Cluster, ids: list[int]) -> list[int]:
    """``ids`` in the order they started."""
    with deployment.database.session_scope() as session:
        rows = session.execute(
            select(Execution.id, Execution.started_at).where(Execution.id.in_(ids))
        ).all()
    return [row.id for row in sorted(rows, key=lambda row: (row.started_at, row.id))]


def test_a_limit_of_two_holds_across_two_workers_and_starts_in_request_order(
    deployment: Cluster,
) -> None:
    # Given 10 requests of an action limited to 2 running at once, on two workers of 2 slots
    handles = [attune.execute("policies.gated", {"cmd": "sleep 0.3"}) for _ in range(10)]
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(running_now(deployment, "policies.gated"))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        records = [handle.wait(120) for handle in handles]
    finally:
        done.set()
        sampler.join()

    # Then all ran, never more than two at once, in the order requested, on both workers
    assert all(record.status is _S.SUCCEEDED for record in records)
    assert max(samples) <= 2
    assert 2 in samples
    ids = [handle.id for handle in handles]
    assert starts(deployment, ids) == ids
    assert {record.worker for record in records} == {"p-one", "p-two"}


def test_keys_of_by_are_independent_gates(deployment: Cluster) -> None:
    handles = [
        attune.execute("policies.per_host", {"cmd": "sleep 1", "host": host})
        for host in ("a", "a", "b", "b")
    ]

    records = [handle.wait(60) for handle in handles]

    a1, a2, b1, b2 = records
    for first, second in ((a1, a2), (b1, b2)):  # one at a time per host
        assert first.finished_at is not None
        assert second.started_at is not None
        assert second.started_at >= first.finished_at
    assert a1.started_at is not None
    assert b1.started_at is not None
    assert a1.finished_at is not None
    assert b1.started_at < a1.finished_at  # host b did not wait for host a


def test_reject_cancels_a_request_over_the_limit(deployment: Cluster, tmp_path: Path) -> None:
    release = tmp_path / "release"
    first = attune.execute(
        "policies.reject", {"cmd": f"until [ -e {release} ]; do sleep 0.05; done"}
    )
    wait_until(lambda: first.status() is _S.RUNNING, 30, "the first to run")

    rejected = attune.execute("policies.reject", {"cmd": "true"}).wait(30)
    release.touch()

    assert rejected.status is _S.CANCELED
    assert rejected.error is not None
    assert rejected.error.startswith("concurrency limit 1 reached for policies.reject (key ")
    assert first.wait(30).status is _S.SUCCEEDED


def test_max_waiting_rejects_requests_beyond_it(deployment: Cluster, tmp_path: Path) -> None:
    release = tmp_path / "release"
    first = attune.execute(
        "policies.bounded", {"cmd": f"until [ -e {release} ]; do sleep 0.05; done"}
    )
    wait_until(lambda: first.status() is _S.RUNNING, 30, "the first to run")
    waiting = [attune.execute("policies.bounded", {"cmd": "true"}) for _ in range(2)]

    beyond = attune.execute("policies.bounded", {"cmd": "true"}).wait(30)

    shown = attune_cli(deployment.fleet.environment(), "executions", "get", str(waiting[1].id))
    release.touch()
    assert beyond.status is _S.CANCELED
    assert beyond.error == "2 executions already wait for a slot (max_waiting 2)"
    assert "waiting for a slot: position 2, limit 1" in shown.stdout
    assert [handle.wait(30).status for handle in [first, *waiting]] == [_S.SUCCEEDED] * 3


def test_cancel_of_a_waiting_execution_keeps_the_others_in_order(
    deployment: Cluster, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    hold = f"until [ -e {release} ]; do sleep 0.05; done"
    first = attune.execute("policies.per_host", {"cmd": hold, "host": "c"})
    wait_until(lambda: first.status() is _S.RUNNING, 30, "the first to run")
    queued = [attune.execute("policies.per_host", {"cmd": "true", "host": "c"}) for _ in range(3)]

    assert queued[1].cancel() is _S.CANCELED
    release.touch()

    records = [handle.wait(30) for handle in [first, *queued]]
    assert [record.status for record in records] == [
        _S.SUCCEEDED,
        _S.SUCCEEDED,
        _S.CANCELED,
        _S.SUCCEEDED,
    ]
    assert starts(deployment, [first.id, queued[0].id, queued[2].id]) == [
        first.id,
        queued[0].id,
        queued[2].id,
    ]


def test_a_worker_killed_while_holding_a_slot_frees_it_after_the_sweep(
    deployment: Cluster, tmp_path: Path
) -> None:
    victim = deployment.start_worker("p-victim", ["python"])
    holder = attune.execute("policies.held", {"cmd": f"touch {tmp_path}/held; sleep 60"})
    wait_until((tmp_path / "held").exists, 30, "the slot to be held")
    waiting = attune.execute("policies.held", {"cmd": "true"})

    victim.destroy()  # the whole worker, its pool and the action
    heir = deployment.start_worker("p-heir", ["python"])
    try:
        assert holder.wait(60, follow=False).status is _S.ABANDONED
        record = waiting.wait(60)
    finally:
        heir.stop()  # the next test's python worker is to be the only one
    assert record.status is _S.SUCCEEDED
    assert record.worker == "p-heir"


def test_the_process_that_frees_a_slot_runs_the_next_head_and_its_death_abandons_it(
    deployment: Cluster, tmp_path: Path
) -> None:
    # Given a worker running the one slot of a gate, and a second request waiting behind it
    worker = deployment.start_worker("p-chain", ["python"])
    pool_of_action = "awk '/^PPid/{print $2}' /proc/$PPID/status"  # bash < run.py < pool
    first = attune.execute(
        "policies.held", {"cmd": f"{pool_of_action} > {tmp_path}/first; sleep 1"}
    )
    wait_until((tmp_path / "first").exists, 30, "the first to run")
    second = attune.execute(
        "policies.held",
        {
            "cmd": f"{pool_of_action} > {tmp_path}/second.tmp; "
            f"mv {tmp_path}/second.tmp {tmp_path}/second; sleep 60"
        },
    )
    try:
        # When the first ends, the pool process it ran in claims and runs the second itself
        wait_until((tmp_path / "second").exists, 30, "the second to run")
        pool = int((tmp_path / "second").read_text())
        assert pool == int((tmp_path / "first").read_text())
        assert first.wait(30, follow=False).status is _S.SUCCEEDED

        # Then when that pool process dies, the main process abandons the second at once
        os.kill(pool, signal.SIGKILL)
        record = second.wait(30, follow=False)
    finally:
        worker.stop()
    assert record.status is _S.ABANDONED
    assert record.error is not None
    assert record.error.startswith("the worker process running it on p-chain died")


def test_an_idempotent_action_abandoned_is_retried_not_before_its_window(
    deployment: Cluster, tmp_path: Path
) -> None:
    victim = deployment.start_worker("p-victim2", ["python"])
    command = counting(tmp_path / "runs", 2, on_failure="sleep 60")
    handle = attune.execute("policies.idempotent", {"cmd": command})
    wait_until(lambda: (tmp_path / "runs" / "run-0").exists(), 30, "the first attempt to run")

    victim.destroy()
    heir = deployment.start_worker("p-heir2", ["python"])
    try:
        record = handle.wait(90)
    finally:
        heir.stop()
    chain = chains.attempts(deployment.database, handle.id)
    assert [(a.attempt, a.status) for a in chain] == [(1, _S.ABANDONED), (2, _S.SUCCEEDED)]
    assert chain[0].started_at is not None
    assert chain[1].started_at is not None
    # timeout 5 s + kill grace 1 s from the first start: the old process may have run on
    assert chain[1].started_at >= chain[0].started_at + timedelta(seconds=6)
    assert record.worker == "p-heir2"
