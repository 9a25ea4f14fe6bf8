"""Fan-out and concurrent advances with real workers on PostgreSQL + Redis: 100 items at
concurrency 5 (never more than 5 running, results in item order, one child per item), and 50
threads advancing one run at once (each outcome taken in once, no child recorded twice)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

import attune
from attune.settings import Settings
from attune.store.models import Execution, ExecutionStatus
from attune.workflows.engine import Advanced, advance
from tests.cluster import Cluster
from tests.processes import wait_until
from tests.workflows.runs import (
    activations,
    child_of,
    children,
    duplicates,
    most_at_once,
    wait_gone,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
_S = ExecutionStatus


def running_children(deployment: Cluster, parent_id: int) -> int:
    with deployment.database.session_scope() as session:
        return (
            session.scalar(
                select(func.count()).where(
                    Execution.parent_id == parent_id,
                    Execution.status.in_([_S.RUNNING.value, _S.CANCELING.value]),
                )
            )
            or 0
        )


def test_a_hundred_items_at_concurrency_five(deployment: Cluster) -> None:
    items = list(range(100))
    random.Random(13).shuffle(items)  # item order is not numeric order
    handle = attune.execute("wf.fan", {"numbers": items})
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(running_children(deployment, handle.id))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        record = handle.wait(120)
    finally:
        done.set()
        sampler.join()

    assert record.status is _S.SUCCEEDED, record.error
    assert record.result == {"items": items, "squares": [item * item for item in items]}
    started = children(deployment.database, handle.id)
    assert sorted(child.wf_item or 0 for child in started) == list(range(100))  # one per item
    assert all(child.status == "succeeded" for child in started)
    assert [child.result for child in sorted(started, key=lambda c: c.wf_item or 0)] == [
        {"i": index, "sq": item * item} for index, item in enumerate(items)
    ]
    assert most_at_once(started) <= 5  # on the database clock, at every instant
    assert len(samples) > 20
    assert max(samples) <= 5
    assert max(samples) >= 3  # the limit is used, not just respected (6 slots are free)


def test_fifty_concurrent_advances_take_each_outcome_once_and_start_nothing_twice(
    deployment: Cluster, tmp_path: Path
) -> None:
    # Given a fan-out of 20 items whose children all ended at once, none taken in yet
    handle = attune.execute("wf.race", {"dir": str(tmp_path)})
    wait_until(lambda: len(children(deployment.database, handle.id)) == 20, 30, "20 children")
    wait_until(lambda: running_children(deployment, handle.id) >= 2, 30, "children to run")
    running = [c for c in children(deployment.database, handle.id) if c.status == "running"]
    with deployment.database.engine.begin() as connection:
        ended = connection.execute(
            text(
                "UPDATE execution SET status = 'succeeded', finished_at = now(),"
                " result = json_build_object('item', wf_item)::jsonb"
                " WHERE parent_id = :id AND status IN ('scheduled', 'running')"
            ),
            {"id": handle.id},
        ).rowcount
    assert ended == 20
    settings = Settings.from_env()
    barrier = threading.Barrier(50)
    outcomes: list[Advanced] = []
    failures: list[BaseException] = []

    def racer() -> None:
        barrier.wait()
        try:
            outcomes.append(advance(deployment.database, settings, handle.id))
        except BaseException as exc:  # reported below
            failures.append(exc)

    # When 50 threads advance it at the same moment
    threads = [threading.Thread(target=racer) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    (tmp_path / "release").touch()  # the processes still holding end; their results are late
    record = handle.wait(60)

    # Then the run went on once: one `after`, no attempt twice, every outcome consumed
    assert failures == []
    assert len(outcomes) == 50
    assert sum(outcome.sent for outcome in outcomes) <= 1  # beat's net may have been first
    assert record.status is _S.SUCCEEDED, record.error
    assert [a.task for a in activations(deployment.database, handle.id)] == ["first", "after"]
    assert len(child_of(deployment.database, handle.id, "after")) == 1
    assert len(children(deployment.database, handle.id)) == 21
    assert duplicates(deployment.database, handle.id) == {}
    assert all(c.wf_consumed for c in children(deployment.database, handle.id))
    assert activations(deployment.database, handle.id)[0].result == [
        {"item": n, "ok": True, "status": "succeeded", "result": {"item": n}, "error": None}
        for n in range(20)
    ]
    wait_gone(*(child.pgid for child in running if child.pgid is not None))
