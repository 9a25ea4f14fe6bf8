"""Bulk inserts and updates: the rows stored are those an executemany stores, on both databases
(PostgreSQL sends arrays, values the same in every row once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from attune.store.bulk import insert_rows, update_rows
from attune.store.db import Database
from attune.store.models import ENFORCEMENT_TABLE, TRIGGER_EVENT_TABLE

_T = TRIGGER_EVENT_TABLE.c
_E = ENFORCEMENT_TABLE.c
TICK = datetime(2030, 1, 1, tzinfo=UTC)


def event_row(n: int, payload: Any, fire_time: datetime = TICK) -> dict[str, Any]:
    return {
        "type": "t",
        "source": "timer",
        "rule_id": n,
        "fire_time": fire_time,
        "payload": payload,
    }


def stored_events(database: Database) -> list[tuple[Any, ...]]:
    columns = (_T.rule_id, _T.fire_time, _T.payload, _T.status, _T.source, _T.dedup_key)
    with database.session_scope() as session:
        return [tuple(r) for r in session.execute(select(*columns).order_by(_T.id))]


def test_rows_come_back_in_order_with_their_defaults_and_exact_values(database: Database) -> None:
    # Given rows whose JSON values are equal in Python but not in JSON (1, True, 1.0)
    payloads = [{"x": [1]}, {"x": [True]}, {"x": [1.0]}]
    rows = [event_row(n, payload) for n, payload in enumerate(payloads)]
    # When they are inserted
    with database.session_scope() as session:
        returned = insert_rows(
            session, TRIGGER_EVENT_TABLE, rows, (_T.id, _T.rule_id), ordered=True
        )
    # Then each is stored as given, the column defaults filled, the ids in the rows' order
    assert [row.rule_id for row in returned] == [0, 1, 2]
    assert [row.id for row in returned] == sorted(row.id for row in returned)
    stored = stored_events(database)
    assert [row[2] for row in stored] == payloads
    assert [type(row[2]["x"][0]) for row in stored] == [int, bool, float]
    assert {(row[1], row[3], row[4], row[5]) for row in stored} == {(TICK, "fired", "timer", None)}


def test_identical_rows_are_all_inserted_and_a_single_row_too(database: Database) -> None:
    # Given three identical enforcement rows, then a single one
    row = {"event_id": 1, "rule_id": None, "rule_ref": "r", "status": "no_match", "reason": ""}
    with database.session_scope() as session:
        (event_id,) = insert_rows(session, TRIGGER_EVENT_TABLE, [event_row(1, {})], (_T.id,))[0]
        rows = [{**row, "event_id": event_id}] * 3
        many = insert_rows(session, ENFORCEMENT_TABLE, rows, (_E.id,), ordered=True)
        one = insert_rows(session, ENFORCEMENT_TABLE, rows[:1], (_E.id,), ordered=True)
    # Then four rows are stored, with the defaults of the columns not given
    assert (len(many), len(one)) == (3, 1)
    with database.session_scope() as session:
        stored = session.execute(select(_E.rule_ref, _E.criteria_trace, _E.parameters)).all()
    assert [tuple(r) for r in stored] == [("r", [], {})] * 4


def test_a_row_a_unique_constraint_refuses_is_skipped(database: Database) -> None:
    # Given an event of rule 1 at TICK already stored
    with database.session_scope() as session:
        insert_rows(session, TRIGGER_EVENT_TABLE, [event_row(1, {"first": 1})], (_T.id,))
    # When rule 1 and rule 2 insert their TICK events, ignoring conflicts
    rows = [event_row(1, {"second": 1}), event_row(2, {"second": 2})]
    with database.session_scope() as session:
        returned = insert_rows(
            session, TRIGGER_EVENT_TABLE, rows, (_T.id, _T.rule_id), ignore_conflicts=True
        )
    # Then only rule 2's is inserted and returned; rule 1 keeps its first
    assert [row.rule_id for row in returned] == [2]
    assert [(row[0], row[2]) for row in stored_events(database)] == [
        (1, {"first": 1}),
        (2, {"second": 2}),
    ]


def test_each_row_updates_only_the_row_its_where_matches(database: Database) -> None:
    # Given three events
    rows = [event_row(n, {}, TICK + timedelta(seconds=n)) for n in range(3)]
    with database.session_scope() as session:
        ids = [
            r.id for r in insert_rows(session, TRIGGER_EVENT_TABLE, rows, (_T.id,), ordered=True)
        ]
    # When two updates name the first two by id and fire time, one of them with a stale time
    changes = [
        {"b_id": ids[0], "b_at": TICK, "b_status": "missed"},
        {"b_id": ids[1], "b_at": TICK, "b_status": "duplicate"},
    ]
    with database.session_scope() as session:
        where = {"id": "b_id", "fire_time": "b_at"}
        update_rows(session, TRIGGER_EVENT_TABLE, changes, where, {"status": "b_status"})
    # Then only the first changed
    assert [row[3] for row in stored_events(database)] == ["missed", "fired", "fired"]
