"""Firing in one statement (PostgreSQL): once the process knows the rules and their actions, an
emitted event, its enforcements and executions are one guarded statement that writes what the
general path writes; a changed rule or action, a repeated dedup key, a template naming
``event`` leave it to the general path, and nothing is written twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from attune.liveness import registry as workers
from attune.liveness.registry import Registration
from attune.packs.loader import load_packs
from attune.rules import catalog, finished, firing
from attune.rules.emission import emit
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Action, Enforcement, Execution, TriggerEvent
from tests.pack_builder import rule, write_rules

pytestmark = pytest.mark.postgres
HOOK = {"type": "core.webhook", "params": {"path": "deploys"}}
PAYLOAD = {"body": {"branch": "main", "n": 3}, "path": "deploys"}


@pytest.fixture(autouse=True)
def rules_looked_up_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests load rules of their own into databases of one URL: no remembered watch."""
    monkeypatch.setattr(finished, "RULES_SEEN_FOR_S", 0.0)


def on_hook(ref: str, branch: str, **parameters: Any) -> dict[str, Any]:
    return rule(
        ref=ref,
        trigger=HOOK,
        criteria={"trigger.body.branch": {"op": "equals", "value": branch}},
        action={"ref": "demo.hello", "parameters": parameters},
    )


def load(database: Database, packs_dir: Path, **rules: dict[str, Any]) -> None:
    write_rules(packs_dir, rules)
    result = load_packs(database, packs_dir)
    assert result.ok, result.errors


def live_worker(database: Database) -> None:
    with database.session_scope() as session:
        workers.register(session, Registration("w1", ("shell",), (), "h", 1))


def fire(database: Database, dedup_key: str | None = None) -> firing.Fired | None:
    return firing.fire(
        database, Settings(), "core.webhook", PAYLOAD, dedup_key=dedup_key, source="emit", depth=-1
    )


def rows_of(database: Database, event_id: int) -> list[tuple[Any, ...]]:
    """Each enforcement of the event with its execution, as comparable values."""
    with database.session_scope() as session:
        found = session.execute(
            select(Enforcement, Execution)
            .outerjoin(Execution, Execution.enforcement_id == Enforcement.id)
            .where(Enforcement.event_id == event_id)
            .order_by(Enforcement.rule_ref)
        ).all()
    return [
        (
            enforcement.rule_ref,
            enforcement.status,
            enforcement.reason,
            enforcement.criteria_trace,
            enforcement.parameters,
            None if execution is None else execution.id == enforcement.execution_id,
            None if execution is None else (execution.status, execution.error),
            None if execution is None else (execution.parameters, execution.trigger_depth),
            None if execution is None else (execution.policy, execution.max_attempts),
        )
        for enforcement, execution in found
    ]


def count(database: Database, model: Any) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_known_rule_fires_in_one_statement_writing_what_the_general_path_writes(
    pg_database: Database, tmp_path: Path
) -> None:
    live_worker(pg_database)
    load(
        pg_database,
        tmp_path,
        runs=on_hook(
            "demo.runs", "main", who="{{ trigger.body.branch }}", times="{{ trigger.body.n }}"
        ),
        skips=on_hook("demo.skips", "dev"),
    )
    general = emit(pg_database, Settings(), "core.webhook", PAYLOAD)

    fired = fire(pg_database)

    assert fired is not None
    assert [e.status for e in fired.enforcements] == [e.status for e in general.enforcements]
    [ran] = [e for e in fired.enforcements if e.execution_id is not None]
    assert ran.queue == "attune.shell"
    expected = rows_of(pg_database, general.event_id)
    assert rows_of(pg_database, fired.event_id) == expected
    assert [row[1] for row in expected] == ["scheduled", "no_match"]
    assert expected[0][7] == ({"who": "main", "times": 3}, 0)
    with pg_database.session_scope() as session:
        event = session.get_one(TriggerEvent, fired.event_id)
    assert (event.type, event.source, event.payload, event.status) == (
        "core.webhook",
        "emit",
        PAYLOAD,
        "fired",
    )


def test_an_edited_disabled_or_changed_rule_or_action_goes_the_general_way(
    pg_database: Database, tmp_path: Path
) -> None:
    live_worker(pg_database)
    load(pg_database, tmp_path, runs=on_hook("demo.runs", "main", who="first"))
    emit(pg_database, Settings(), "core.webhook", PAYLOAD)
    load(pg_database, tmp_path, runs=on_hook("demo.runs", "main", who="edited"))
    before = count(pg_database, TriggerEvent)

    assert fire(pg_database) is None  # the edit bumped the rule: nothing written
    assert count(pg_database, TriggerEvent) == before
    edited = emit(pg_database, Settings(), "core.webhook", PAYLOAD)
    assert rows_of(pg_database, edited.event_id)[0][4]["who"] == "edited"
    assert fire(pg_database) is not None  # learned again

    with pg_database.session_scope() as session:
        session.execute(update(Action).values(updated_at=func.now()))
    assert fire(pg_database) is None
    emit(pg_database, Settings(), "core.webhook", PAYLOAD)
    assert fire(pg_database) is not None

    with pg_database.session_scope() as session:
        assert catalog.set_enabled(session, "demo.runs", False)
    assert fire(pg_database) is None
    quiet = emit(pg_database, Settings(), "core.webhook", PAYLOAD)
    assert quiet.enforcements == ()


def test_a_repeated_dedup_key_writes_nothing_in_one_statement(
    pg_database: Database, tmp_path: Path
) -> None:
    live_worker(pg_database)
    load(pg_database, tmp_path, runs=on_hook("demo.runs", "main"))
    emit(pg_database, Settings(), "core.webhook", PAYLOAD)
    first = fire(pg_database, dedup_key="delivery-1")

    again = fire(pg_database, dedup_key="delivery-1")
    emitted = emit(pg_database, Settings(), "core.webhook", PAYLOAD, dedup_key="delivery-1")

    assert first is not None
    assert again is None
    assert (emitted.duplicate, emitted.event_id) == (True, first.event_id)
    assert count(pg_database, TriggerEvent) == 2
    assert count(pg_database, Execution) == 2


def test_with_no_live_worker_the_execution_is_recorded_failed_with_the_reason(
    pg_database: Database, tmp_path: Path
) -> None:
    load(pg_database, tmp_path, runs=on_hook("demo.runs", "main"))
    general = emit(pg_database, Settings(), "core.webhook", PAYLOAD)

    fired = fire(pg_database)

    assert fired is not None
    [enforced] = fired.enforcements
    assert (enforced.status, enforced.queue) == ("scheduled", None)
    [row] = rows_of(pg_database, fired.event_id)
    assert row == rows_of(pg_database, general.event_id)[0]
    assert row[6][0] == "failed"
    assert "no active worker serves" in row[6][1]


def test_a_rule_whose_templates_name_event_goes_the_general_way(
    pg_database: Database, tmp_path: Path
) -> None:
    live_worker(pg_database)
    load(pg_database, tmp_path, runs=on_hook("demo.runs", "main", who="event {{ event.id }}"))
    emit(pg_database, Settings(), "core.webhook", PAYLOAD)

    assert fire(pg_database) is None
    emitted = emit(pg_database, Settings(), "core.webhook", PAYLOAD)
    assert rows_of(pg_database, emitted.event_id)[0][4]["who"] == f"event {emitted.event_id}"
