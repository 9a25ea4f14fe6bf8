"""Concurrency gates in SQL, on SQLite and PostgreSQL: claims racing from many threads admit
at most ``limit``, in request order; declined claims change nothing; releases and the sweep
send the heads; ``reject`` cancels at the claim."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from attune.executions import claims, dispatch, releases, standings
from attune.executions.dispatch import Dispatch
from attune.executions.routing import Routed
from attune.executions.scheduler import schedule
from attune.liveness import sweep as sweeps
from attune.liveness.announcements import announce
from attune.packs.loader import load_packs
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Execution, Worker
from attune.store.sqltypes import db_now
from tests.pack_builder import action, write_pack
from tests.rows import execution_row


@pytest.fixture
def sent() -> Iterator[list[Dispatch]]:
    """The task messages the policies send, captured instead of published."""
    captured: list[Dispatch] = []
    dispatch.use(captured.append)
    yield captured
    dispatch.use(lambda message: None)


def load(database: Database, tmp_path: Path, **concurrency: Any) -> Settings:
    document = action("gating.hello", concurrency=concurrency)
    write_pack(tmp_path, "gating", {"hello": document})
    assert not load_packs(database, tmp_path, ["gating"]).errors
    with database.session_scope() as session:
        session.add(Worker(name="w", runtimes=["shell"], status="active"))
        session.flush()
        session.execute(update(Worker).values(last_heartbeat=db_now()))
    return Settings(database_url=str(database.engine.url))


def request(database: Database, settings: Settings, who: str = "x") -> Routed:
    routed = schedule(database, settings, "gating.hello", {"who": who})
    assert isinstance(routed, Routed)
    return routed


def claim(database: Database, execution_id: int) -> bool:
    return claims.claim(database, execution_id, "w", execution_id)[0] is not None


def test_a_gated_claim_repeated_after_its_answer_was_lost_finds_its_own(
    pg_database: Database, tmp_path: Path, sent: list[Dispatch]
) -> None:
    # Given a gate of 1 with two waiting executions, the first claimed under token 7
    settings = load(pg_database, tmp_path, limit=1)
    first, second = (request(pg_database, settings).execution_id for _ in range(2))
    claimed, _action = claims.claim(pg_database, first, "w", 7)
    assert claimed is not None

    # When that claim is repeated (its answer lost), and a redelivery claims it afresh
    again, action = claims.claim(pg_database, first, "w", 7)
    redelivered = claims.claim(pg_database, first, "w", 8)

    # Then the repeat gets the same row and action, the redelivery nothing, the gate stays full
    assert again is not None
    assert action is not None
    assert (again.action_ref, again.gate_key, action.runner_type) == (
        claimed.action_ref,
        claimed.gate_key,
        "shell",
    )
    assert redelivered == (None, None)
    assert claims.claim(pg_database, second, "w", 9) == (None, None)
    assert execution_row(pg_database, first).claim_token == 7
    assert execution_row(pg_database, second).status == "scheduled"


def test_racing_claims_admit_at_most_the_limit_in_request_order(
    database: Database, tmp_path: Path
) -> None:
    # Given 12 waiting executions of a gate of 3
    settings = load(database, tmp_path, limit=3)
    routed = [request(database, settings) for _ in range(12)]
    ids = [r.execution_id for r in routed]
    assert [r.send for r in routed] == [True] + [False] * 11  # the rest wait for their turn

    # When 12 threads claim all of them at once, each on its own connection
    barrier = threading.Barrier(len(ids))
    admitted: list[int] = []

    def race(execution_id: int) -> None:
        barrier.wait()
        if claim(database, execution_id):
            admitted.append(execution_id)

    threads = [threading.Thread(target=race, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then only a prefix of the oldest runs (strict FIFO: one starts once those before it did)
    assert 1 <= len(admitted) <= 3
    assert sorted(admitted) == ids[: len(admitted)]
    # And claimed again in order, exactly the three oldest run; the others wait, in order
    for execution_id in ids:
        claim(database, execution_id)
    assert [execution_row(database, i).status for i in ids[:3]] == ["running"] * 3
    assert [execution_row(database, i).status for i in ids[3:]] == ["scheduled"] * 9
    assert standings.standing(database, ids[4]) == standings.Queue(busy=3, ahead=1, limit=3)


def test_an_ending_execution_releases_its_slot_to_the_next_heads(
    database: Database, tmp_path: Path, sent: list[Dispatch]
) -> None:
    settings = load(database, tmp_path, limit=1)
    first, second, third = (request(database, settings).execution_id for _ in range(3))
    assert claim(database, first)
    assert not claim(database, third)  # not its turn: second is older
    assert not claim(database, second)  # the slot is taken

    with database.session_scope() as session:
        session.execute(update(Execution).where(Execution.id == first).values(status="succeeded"))
    heads = releases.release(database, "gating.hello", gates_key(database, first), 1)

    assert [head.execution_id for head in heads] == [second]
    assert not claim(database, third)
    assert claim(database, second)


def gates_key(database: Database, execution_id: int) -> str:
    key = execution_row(database, execution_id).gate_key
    assert key is not None
    return key


def test_keys_are_gates_of_their_own(database: Database, tmp_path: Path) -> None:
    settings = load(database, tmp_path, limit=1, by=["who"])
    a1, a2 = (request(database, settings, "a").execution_id for _ in range(2))
    b1 = request(database, settings, "b").execution_id

    assert claim(database, a1)
    assert not claim(database, a2)
    assert claim(database, b1)


def test_reject_cancels_at_schedule_and_at_the_claim(database: Database, tmp_path: Path) -> None:
    settings = load(database, tmp_path, limit=1, on_limit="reject")
    first, second = (request(database, settings) for _ in range(2))

    assert claim(database, first.execution_id)
    assert not second.send
    row = execution_row(database, second.execution_id)
    assert row.status == "canceled"
    assert row.error is not None
    assert row.error.startswith("concurrency limit 1 reached for gating.hello (key ")


def test_the_sweep_sends_the_heads_of_gates_with_free_slots(
    database: Database, tmp_path: Path, sent: list[Dispatch]
) -> None:
    settings = load(database, tmp_path, limit=2)
    ids = [request(database, settings).execution_id for _ in range(3)]

    with database.session_scope() as session:
        report = sweeps.sweep(session, settings)
    announce(report)

    assert [message.execution_id for message in sent] == ids[:1]  # its claim sends the next
    assert {message.queue for message in sent} == {"attune.shell"}


def test_a_gated_execution_waiting_too_long_fails_naming_its_limit(
    database: Database, tmp_path: Path
) -> None:
    settings = load(database, tmp_path, limit=1)
    first, second = (request(database, settings).execution_id for _ in range(2))
    assert claim(database, first)

    with database.session_scope() as session:
        sweeps.sweep(session, Settings(scheduled_timeout_s=0.001))

    row = execution_row(database, second)
    assert row.status == "failed"
    assert row.error == "waited 0.001 s for a concurrency slot (limit 1)"
