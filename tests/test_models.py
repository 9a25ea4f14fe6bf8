"""The data model on both databases: constraints, defaults, the database clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from attune.store.db import Database
from attune.store.models import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    Action,
    Execution,
    ExecutionStatus,
    Pack,
    Worker,
)
from attune.store.sqltypes import db_now


def add_pack(database: Database, ref: str = "core") -> int:
    with database.session_scope() as session:
        pack = Pack(ref=ref, label=ref, version="1.0.0")
        session.add(pack)
        session.flush()
        return pack.id


def refused(database: Database, row: object) -> bool:
    try:
        with database.session_scope() as session:
            session.add(row)
    except IntegrityError:
        return True
    return False


def test_a_worker_row_round_trips_with_defaults(database: Database) -> None:
    with database.session_scope() as session:
        session.add(Worker(name="w1", runtimes=["shell"], queues=["attune.shell"]))

    with database.session_scope() as session:
        worker = session.scalars(select(Worker)).one()
        now = session.scalar(select(db_now()))

    assert worker.status == "active"
    assert worker.worker_role == "action"
    assert worker.last_heartbeat is None
    assert worker.created_at.tzinfo is not None
    assert now is not None
    assert abs(now - worker.created_at) < timedelta(seconds=5)


def test_a_duplicate_worker_name_is_refused(database: Database) -> None:
    with database.session_scope() as session:
        session.add(Worker(name="w1"))

    assert refused(database, Worker(name="w1"))


@pytest.mark.parametrize(
    "row",
    [
        Worker(name="w2", status="dead"),
        Worker(name="w3", worker_role="sensor"),
        Execution(action_ref="core.echo", status="finished"),
    ],
    ids=["worker-status", "worker-role", "execution-status"],
)
def test_an_unknown_status_or_role_is_refused(database: Database, row: object) -> None:
    assert refused(database, row)


@pytest.mark.parametrize(
    ("ref", "accepted"),
    [
        ("core.echo", True),
        ("my-pack.list_example", True),
        ("core", False),
        ("core.echo.x", False),
        ("Core.echo", False),
        ("c.echo", False),
        ("core.", False),
        ("core.e cho", False),
    ],
)
def test_action_ref_format_is_checked_by_the_database(
    database: Database, ref: str, accepted: bool
) -> None:
    pack_id = add_pack(database)
    action = Action(pack_id=pack_id, ref=ref, runner_type="shell", entry_point="a.sh")

    assert refused(database, action) is not accepted


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("runner_type", "ruby"),
        ("parameter_delivery", "argv"),
        ("parameter_format", "xml"),
        ("output_format", "csv"),
        ("timeout_s", 0),
    ],
)
def test_action_enum_columns_are_checked(database: Database, column: str, value: object) -> None:
    pack_id = add_pack(database)
    action = Action(pack_id=pack_id, ref="core.echo", runner_type="shell", entry_point="a.sh")
    setattr(action, column, value)

    assert refused(database, action)


@pytest.mark.parametrize("ref", ["a", "Core", "co.re", "1pack", "pa ck"])
def test_pack_ref_format_is_checked(database: Database, ref: str) -> None:
    assert refused(database, Pack(ref=ref, label="x", version="1.0.0"))


def test_deleting_a_pack_removes_its_actions(database: Database) -> None:
    pack_id = add_pack(database)
    with database.session_scope() as session:
        session.add(Action(pack_id=pack_id, ref="core.echo", runner_type="shell", entry_point="e"))

    with database.session_scope() as session:
        session.delete(session.get(Pack, pack_id))

    with database.session_scope() as session:
        assert session.scalars(select(Action)).all() == []


def test_execution_json_and_timestamps_round_trip(database: Database) -> None:
    started = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with database.session_scope() as session:
        execution = Execution(
            action_ref="core.echo",
            parameters={"message": "hi", "n": [1, 2]},
            result=[{"id": 1}],
            started_at=started,
        )
        session.add(execution)
        session.flush()
        execution_id = execution.id

    with database.session_scope() as session:
        stored = session.get(Execution, execution_id)
        assert stored is not None
        assert stored.parameters == {"message": "hi", "n": [1, 2]}
        assert stored.result == [{"id": 1}]
        assert stored.started_at == started
        assert stored.status == ExecutionStatus.REQUESTED
        assert stored.stdout == ""


def test_the_database_clock_has_sub_second_precision(database: Database) -> None:
    with database.session_scope() as session:
        readings = {session.scalar(select(db_now())) for _ in range(50)}
        session.commit()
        readings |= {session.scalar(select(db_now())) for _ in range(50)}

    assert any(reading is not None and reading.microsecond for reading in readings)


def test_terminal_states_have_no_way_out() -> None:
    for target, sources in TRANSITIONS.items():
        assert not sources & TERMINAL_STATUSES, target
