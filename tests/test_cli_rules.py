"""``attune rules|events|enforcements|triggers|timers``: list, show, enable, schedule, test."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from attune.rules.emission import emit
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Enforcement, TriggerEvent
from tests.test_cli_packs import attune

FAILED = {"action_ref": "examples.x", "status": "failed", "exit_code": 1, "execution_id": 5}


def test_rules_list_show_enable_and_schedule(sqlite_database: Database) -> None:
    assert attune(sqlite_database, "packs", "load").exit_code == 0

    listed = attune(sqlite_database, "rules", "list")
    enabled = attune(sqlite_database, "rules", "enable", "examples.every_minute")
    shown = attune(sqlite_database, "rules", "show", "examples.every_minute", "--json")
    scheduled = attune(sqlite_database, "rules", "schedule", "examples.every_minute", "--json")

    assert "examples.on_failure    yes      core.execution_finished" in listed.stdout
    assert enabled.stdout == "examples.every_minute enabled\n"
    document = json.loads(shown.stdout)
    assert document["enabled"] is True
    assert document["next_fire_time"].endswith(":00+00:00")
    times = json.loads(scheduled.stdout)
    assert len(times) == 5
    assert times[0]["utc"] == document["next_fire_time"]
    missing = attune(sqlite_database, "rules", "show", "examples.nosuch")
    assert missing.exit_code == 1
    assert "rule 'examples.nosuch' is not loaded" in missing.output


def test_rules_test_exits_0_on_a_match_1_on_no_match_and_creates_nothing(
    sqlite_database: Database,
) -> None:
    attune(sqlite_database, "packs", "load")

    match = attune(
        sqlite_database, "rules", "test", "examples.on_failure", "--payload", json.dumps(FAILED)
    )
    no_match = attune(
        sqlite_database, "rules", "test", "examples.on_failure", "--payload", '{"exit_code": 0}'
    )

    assert match.exit_code == 0, match.output
    assert "trigger.exit_code nequals 0: actual 1 -> ok" in match.stdout
    assert '"message": "examples.x ended failed (execution 5)"' in match.stdout
    assert no_match.exit_code == 1
    assert "verdict: no_match" in no_match.stdout
    with sqlite_database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TriggerEvent)) == 0
        assert session.scalar(select(func.count()).select_from(Enforcement)) == 0


def test_events_and_enforcements_list_filter_by_rule_and_status(
    sqlite_database: Database,
) -> None:
    attune(sqlite_database, "packs", "load")
    emit(sqlite_database, Settings(), "core.execution_finished", FAILED)  # no worker: stored only

    events = attune(
        sqlite_database, "events", "list", "--type", "core.execution_finished", "--json"
    )
    scheduled = attune(sqlite_database, "enforcements", "list", "--status", "scheduled", "--json")
    none = attune(sqlite_database, "enforcements", "list", "--status", "no_match", "--json")

    assert [event["status"] for event in json.loads(events.stdout)] == ["fired"]
    [row] = json.loads(scheduled.stdout)
    assert row["rule_ref"] == "examples.on_failure"
    assert json.loads(none.stdout) == []
