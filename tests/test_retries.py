"""Retries in SQL, on SQLite and PostgreSQL: successors made with the terminal transition,
exactly one whatever races, the sweep's repair, the claim's eligible_at, the abandoned rules,
chains listed and canceled from any id."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from attune.errors import InvalidTransitionError
from attune.executions import chains, claims, dispatch, retries
from attune.executions.dispatch import Dispatch
from attune.executions.routing import Routed
from attune.executions.scheduler import schedule
from attune.liveness import sweep as sweeps
from attune.liveness.announcements import announce
from attune.packs.loader import load_packs
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Execution, ExecutionStatus, Worker
from attune.store.sqltypes import db_ago, db_now
from tests.pack_builder import action, write_pack
from tests.rows import execution_row

_S = ExecutionStatus
RETRY = {"on": ["failed", "timeout"], "max_attempts": 3, "delay_s": 10, "backoff": "exponential"}


@pytest.fixture
def sent() -> Iterator[list[Dispatch]]:
    """The task messages the policies send, captured instead of published."""
    captured: list[Dispatch] = []
    dispatch.use(captured.append)
    yield captured
    dispatch.use(lambda message: None)


def load(database: Database, tmp_path: Path, **policy: Any) -> Settings:
    """Pack ``retrying`` with ``retrying.hello`` under ``policy``, and a live worker ``w``."""
    document = action("retrying.hello", timeout=30, **policy)
    document["parameters"]["token"] = {"type": "string", "secret": True, "default": "s3cret"}
    write_pack(tmp_path, "retrying", {"hello": document})
    assert not load_packs(database, tmp_path, ["retrying"]).errors
    with database.session_scope() as session:
        session.add(Worker(name="w", runtimes=["shell"], status="active"))
        session.flush()
        session.execute(update(Worker).values(last_heartbeat=db_now()))
    return Settings(database_url=str(database.engine.url), kill_grace_s=5, secret_key=_KEY)


_KEY = "0" * 43 + "="


def request(database: Database, settings: Settings) -> int:
    routed = schedule(database, settings, "retrying.hello", {"who": "x"})
    assert isinstance(routed, Routed)
    return routed.execution_id


def start(database: Database, execution_id: int) -> None:
    claimed, _action = claims.claim(database, execution_id, "w", execution_id)
    assert claimed is not None


def end(
    database: Database, settings: Settings, execution_id: int, status: ExecutionStatus
) -> retries.Transitioned | None:
    return retries.end_attempt(database, settings, execution_id, status, error="boom")


def successor_of(database: Database, execution_id: int) -> Execution | None:
    with database.session_scope() as session:
        return session.scalars(
            select(Execution).where(Execution.retry_of_id == execution_id)
        ).one_or_none()


def test_a_failed_attempt_gets_its_successor_with_exponential_delays(
    database: Database, tmp_path: Path
) -> None:
    settings = load(database, tmp_path, retry=RETRY)
    first = request(database, settings)
    gaps = []
    current = first
    for attempt in (1, 2):
        start(database, current)
        ended = end(database, settings, current, _S.FAILED)
        assert ended is not None
        assert ended.successor is not None
        following = successor_of(database, current)
        before = execution_row(database, current)
        assert following is not None
        assert before.finished_at is not None
        gaps.append((following.eligible_at - before.finished_at).total_seconds())
        assert (following.attempt, following.first_attempt_id) == (attempt + 1, first)
        assert following.status == "scheduled"
        assert following.secrets == before.secrets  # still sealed, carried as is
        assert following.parameters == before.parameters
        assert following.parameters["token"] == "********"
        assert 9 < ended.successor.countdown_s <= 10 * attempt
        # Not claimable before it is due
        assert claims.claim(database, following.id, "w", following.id) == (None, None)
        with database.session_scope() as session:
            session.execute(
                update(Execution)
                .where(Execution.id == following.id)
                .values(eligible_at=db_ago(0.001))
            )
        current = following.id
    start(database, current)
    assert end(database, settings, current, _S.FAILED) is not None

    assert gaps == [pytest.approx(10, abs=0.01), pytest.approx(20, abs=0.01)]
    assert successor_of(database, current) is None  # three attempts in all
    assert [record.attempt for record in chains.attempts(database, current)] == [1, 2, 3]
    assert [record.try_label for record in chains.attempts(database, first)] == [
        "1/3",
        "2/3",
        "3/3",
    ]


def test_an_early_claim_sends_the_message_again_for_when_it_is_due(
    database: Database, tmp_path: Path, sent: list[Dispatch]
) -> None:
    settings = load(database, tmp_path, retry=RETRY)
    first = request(database, settings)
    start(database, first)
    end(database, settings, first, _S.FAILED)
    following = successor_of(database, first)
    assert following is not None

    assert claims.claim(database, following.id, "w", following.id) == (None, None)

    assert [message.execution_id for message in sent] == [following.id]
    assert 9 < sent[0].countdown_s <= 10
    assert execution_row(database, following.id).status == "scheduled"


@pytest.mark.parametrize("status", [_S.SUCCEEDED, _S.CANCELED])
def test_nothing_follows_a_success_or_a_cancel(
    database: Database, tmp_path: Path, status: ExecutionStatus
) -> None:
    settings = load(database, tmp_path, retry=RETRY)
    first = request(database, settings)
    start(database, first)
    if status is _S.CANCELED:
        chains.cancel(database, first)

    assert end(database, settings, first, status) is not None
    assert successor_of(database, first) is None


def test_abandoned_is_retried_only_under_its_rules(database: Database, tmp_path: Path) -> None:
    # Given an action retried on failed only
    settings = load(database, tmp_path, retry=RETRY)
    ran, never_ran = request(database, settings), request(database, settings)
    for execution_id in (ran, never_ran):
        start(database, execution_id)
    with database.session_scope() as session:
        session.execute(update(Execution).where(Execution.id == ran).values(spawned_at=db_now()))

    # When both are abandoned
    end(database, settings, ran, _S.ABANDONED)
    end(database, settings, never_ran, _S.ABANDONED)

    # Then only the one whose process never started is retried (it counts as failed)
    assert successor_of(database, ran) is None
    assert successor_of(database, never_ran) is not None


def test_an_idempotent_abandoned_attempt_waits_out_its_timeout_and_kill_grace(
    database: Database, tmp_path: Path
) -> None:
    retry = {"on": ["abandoned"], "max_attempts": 2}
    settings = load(database, tmp_path, idempotent=True, retry=retry)
    first = request(database, settings)
    start(database, first)
    with database.session_scope() as session:
        session.execute(update(Execution).where(Execution.id == first).values(spawned_at=db_now()))

    end(database, settings, first, _S.ABANDONED)

    following = successor_of(database, first)
    started_at = execution_row(database, first).started_at
    assert following is not None
    assert started_at is not None
    # timeout 30 s + kill grace 5 s from the start: the old process may still be running
    assert following.eligible_at - started_at == timedelta(seconds=35)


def test_exactly_one_successor_however_many_race_to_create_it(
    database: Database, tmp_path: Path
) -> None:
    settings = load(database, tmp_path, retry={**RETRY, "delay_s": 0})
    first = request(database, settings)
    start(database, first)
    # A crash between the terminal transition and the successor: the row is failed alone.
    with database.session_scope() as session:
        session.execute(
            update(Execution)
            .where(Execution.id == first)
            .values(status="failed", finished_at=db_now())
        )
    barrier = threading.Barrier(6)
    made: list[int] = []

    def sweep_repair() -> None:
        barrier.wait()
        with database.session_scope() as session:
            made.extend(d.execution_id for d in retries.repair(session, settings))

    threads = [threading.Thread(target=sweep_repair) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with database.session_scope() as session:
        count = session.scalar(select(func.count()).where(Execution.retry_of_id == first))
    assert count == 1
    assert len(made) == 1


def test_the_sweep_creates_a_successor_a_crash_left_missing_and_sends_it(
    database: Database, tmp_path: Path, sent: list[Dispatch]
) -> None:
    settings = load(database, tmp_path, retry={**RETRY, "delay_s": 0})
    first = request(database, settings)
    start(database, first)
    with database.session_scope() as session:
        session.execute(
            update(Execution)
            .where(Execution.id == first)
            .values(status="timeout", finished_at=db_now())
        )

    with database.session_scope() as session:
        report = sweeps.sweep(session, settings)
    announce(report)

    following = successor_of(database, first)
    assert following is not None
    assert [message.execution_id for message in sent] == [following.id]
    assert sent[0].queue == "attune.shell"


def test_cancel_of_any_id_of_a_chain_cancels_its_live_attempt(
    database: Database, tmp_path: Path
) -> None:
    settings = load(database, tmp_path, retry=RETRY)
    first = request(database, settings)
    start(database, first)
    end(database, settings, first, _S.FAILED)
    following = successor_of(database, first)
    assert following is not None

    target, status = chains.cancel(database, first)

    assert (target, status) == (following.id, _S.CANCELED)
    assert successor_of(database, following.id) is None
    with pytest.raises(InvalidTransitionError):
        chains.cancel(database, following.id)


def test_the_sweep_sends_again_a_scheduled_execution_whose_message_may_be_lost(
    tmp_path: Path, database: Database
) -> None:
    # Given an execution scheduled a minute ago and never picked up (its message lost)
    settings = load(database, tmp_path)
    stuck = request(database, settings)
    fresh = request(database, settings)
    with database.session_scope() as session:
        session.execute(
            update(Execution).where(Execution.id == stuck).values(eligible_at=db_ago(60))
        )
    resending = Settings(resend_after_s=30, scheduled_timeout_s=0)

    # When the sweep runs, then it sends that one again, to its runtime's queue, only once
    with database.session_scope() as session:
        first = sweeps.sweep(session, resending)
    assert [(d.execution_id, d.queue) for d in first.dispatches] == [(stuck, "attune.shell")]
    with database.session_scope() as session:
        again = sweeps.sweep(session, resending)
    assert again.dispatches == ()
    assert execution_row(database, fresh).dispatched_at is None
    # And with the interval at 0 nothing is ever sent again
    with database.session_scope() as session:
        session.execute(update(Execution).values(dispatched_at=None))
        assert sweeps.sweep(session, Settings(resend_after_s=0)).dispatches == ()
