"""Events and enforcements: criteria traced, typed templates, params_invalid, dedup, chain limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from attune.errors import TriggerError
from attune.executions.retention import purge
from attune.packs.loader import load_packs
from attune.rules.emission import emit
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Action, Enforcement, Execution, TriggerEvent
from tests.pack_builder import rule, write_rules

HOOK = {"type": "core.webhook", "params": {"path": "deploys"}}


def load(database: Database, packs_dir: Path, **rules: dict[str, Any]) -> None:
    write_rules(packs_dir, rules)
    result = load_packs(database, packs_dir)
    assert result.ok, result.errors


def enforcements(database: Database) -> list[Enforcement]:
    with database.session_scope() as session:
        return list(session.scalars(select(Enforcement).order_by(Enforcement.id)))


def executions(database: Database) -> list[Execution]:
    with database.session_scope() as session:
        return list(session.scalars(select(Execution).order_by(Execution.id)))


def on_hook(**action: Any) -> dict[str, Any]:
    return rule(
        trigger=HOOK,
        criteria={
            "trigger.body.branch": {"op": "equals", "value": "main"},
            "trigger.body.size": {"op": "gt", "value": 10},
        },
        action={"ref": "demo.hello", **action},
    )


def test_a_matching_event_schedules_the_action_with_typed_parameters(
    database: Database, tmp_path: Path
) -> None:
    params = {
        "who": "{{ trigger.body.branch }} by {{ event.type }}",
        "times": "{{ trigger.body.n }}",
    }
    load(database, tmp_path, hook=on_hook(parameters=params))

    emitted = emit(
        database, Settings(), "core.webhook", {"body": {"branch": "main", "size": 11, "n": 3}}
    )

    [enforced] = emitted.enforcements
    [row] = enforcements(database)
    [execution] = executions(database)
    assert (row.status, enforced.execution_id) == ("scheduled", execution.id)
    assert execution.enforcement_id == row.id
    assert execution.trigger_depth == 0
    assert execution.parameters == {"who": "main by core.webhook", "times": 3}
    assert [(c["key"], c["actual"], c["ok"]) for c in row.criteria_trace] == [
        ("trigger.body.branch", "main", True),
        ("trigger.body.size", 11, True),
    ]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"branch": "dev", "size": 11}, "no match"),
        ({"branch": "main", "size": "11"}, "type mismatch"),
        ({"branch": "main"}, "missing"),
    ],
)
def test_a_non_matching_event_is_recorded_no_match_with_its_trace(
    sqlite_database: Database, tmp_path: Path, body: dict[str, Any], why: str
) -> None:
    load(sqlite_database, tmp_path, hook=on_hook())

    emit(sqlite_database, Settings(), "core.webhook", {"body": body})

    [row] = enforcements(sqlite_database)
    assert row.status == "no_match"
    assert why in row.reason
    assert [c["why"] for c in row.criteria_trace if not c["ok"]] == [why]
    assert executions(sqlite_database) == []


def test_a_template_giving_invalid_parameters_is_params_invalid_and_runs_nothing(
    database: Database, tmp_path: Path
) -> None:
    load(database, tmp_path, hook=on_hook(parameters={"times": "{{ trigger.body.size }}"}))

    emit(database, Settings(), "core.webhook", {"body": {"branch": "main", "size": 99}})

    [row] = enforcements(database)
    assert row.status == "params_invalid"
    assert row.reason.startswith("times: 99")
    assert row.execution_id is None
    assert executions(database) == []


def test_a_template_that_fails_is_render_failed_naming_the_expression(
    sqlite_database: Database, tmp_path: Path
) -> None:
    load(sqlite_database, tmp_path, hook=on_hook(parameters={"who": "{{ trigger.body.nope }}"}))

    emit(sqlite_database, Settings(), "core.webhook", {"body": {"branch": "main", "size": 12}})

    [row] = enforcements(sqlite_database)
    assert row.status == "render_failed"
    assert "action.parameters.who" in row.reason
    assert "nope" in row.reason
    assert executions(sqlite_database) == []


def test_emit_with_a_repeated_dedup_key_records_and_fires_once(
    database: Database, tmp_path: Path
) -> None:
    load(database, tmp_path, hook=on_hook())
    payload = {"body": {"branch": "main", "size": 12}}

    first = emit(database, Settings(), "core.webhook", payload, dedup_key="delivery-1")
    again = emit(database, Settings(), "core.webhook", payload, dedup_key="delivery-1")

    assert (again.duplicate, again.event_id, again.enforcements) == (True, first.event_id, ())
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TriggerEvent)) == 1
    assert len(executions(database)) == 1


def test_emit_refuses_an_unknown_type_and_a_payload_its_schema_refuses(
    sqlite_database: Database,
) -> None:
    with pytest.raises(TriggerError, match="unknown trigger type"):
        emit(sqlite_database, Settings(), "core.nosuch", {})
    with pytest.raises(TriggerError, match="'body' is a required property"):
        emit(sqlite_database, Settings(), "core.webhook", {"headers": {}})


def test_an_execution_finished_event_past_the_depth_limit_is_chain_limit(
    database: Database, tmp_path: Path
) -> None:
    finished = {"type": "core.execution_finished", "params": {"action": "demo.*"}}
    load(database, tmp_path, again=rule(trigger=finished, action={"ref": "demo.hello"}))
    payload = {"execution_id": 1, "action_ref": "demo.hello", "status": "succeeded"}

    emit(
        database, Settings(max_trigger_depth=2), "core.execution_finished", {**payload, "depth": 1}
    )
    emit(
        database, Settings(max_trigger_depth=2), "core.execution_finished", {**payload, "depth": 2}
    )

    rows = enforcements(database)
    # No worker here: the execution at depth 2 fails at once, and its own event is limited too.
    assert [row.status for row in rows] == ["scheduled", "chain_limit", "chain_limit"]
    assert all("ATTUNE_MAX_TRIGGER_DEPTH (2)" in row.reason for row in rows[1:])
    assert [execution.trigger_depth for execution in executions(database)] == [2]


def test_events_and_enforcements_are_purged_with_their_executions(
    database: Database, tmp_path: Path
) -> None:
    load(database, tmp_path, hook=on_hook())
    payload = {"body": {"branch": "main", "size": 12}}
    kept = emit(database, Settings(), "core.webhook", payload).enforcements[0].execution_id
    emit(database, Settings(), "core.webhook", {"body": {"branch": "dev"}})  # no_match: no run
    later = datetime.now(UTC) + timedelta(days=2)
    with database.session_scope() as session:  # no worker here: it was stored failed
        session.execute(update(Execution).where(Execution.id == kept).values(status="running"))

    with database.session_scope() as session:
        purge(session, 1, now=later)  # the running execution stays, and so does its event
    with database.session_scope() as session:
        remaining = session.scalars(select(TriggerEvent.id)).all()
        session.execute(update(Execution).where(Execution.id == kept).values(status="succeeded"))
    with database.session_scope() as session:
        purge(session, 1, now=later)

    assert len(remaining) == 1
    assert enforcements(database) == []
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TriggerEvent)) == 0


def test_a_rule_whose_action_was_disabled_is_action_missing(
    sqlite_database: Database, tmp_path: Path
) -> None:
    load(sqlite_database, tmp_path, hook=on_hook())
    with sqlite_database.session_scope() as session:
        session.execute(update(Action).values(enabled=False))

    emit(sqlite_database, Settings(), "core.webhook", {"body": {"branch": "main", "size": 12}})

    [row] = enforcements(sqlite_database)
    assert (row.status, row.reason) == (
        "action_missing",
        "action 'demo.hello': the action is disabled",
    )
    assert executions(sqlite_database) == []
