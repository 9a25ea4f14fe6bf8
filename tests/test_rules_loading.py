"""Rule files in packs: strict validation naming file and field, upsert by ref, pruning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from attune.packs.loader import load_packs
from attune.store.db import Database
from attune.store.models import Rule, RuleTimer
from tests.pack_builder import rule, write_pack, write_rules, write_yaml


def refs(database: Database) -> list[str]:
    with database.session_scope() as session:
        return list(session.scalars(select(Rule.ref).order_by(Rule.ref)))


def problems_of(database: Database, packs_dir: Path, document: dict[str, Any]) -> str:
    write_rules(packs_dir, {"greet": document})
    result = load_packs(database, packs_dir)
    assert not result.ok
    return "\n".join(result.errors[0].problems)


CRON = {"type": "core.crontimer", "params": {"expression": "30 6 * * 1-5"}}


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"trigger": {"type": "core.nosuch"}}, "trigger.type", "not a trigger type"),
        ({"trigger": {"type": "core.intervaltimer", "params": {}}}, "trigger.params", "interval"),
        (
            {"trigger": {**CRON, "params": {"expression": "61 * * * *"}}},
            "trigger.params: expression",
            "61",
        ),
        (
            {"trigger": {**CRON, "params": {"expression": "* * * * *", "timezone": "Mars/Base"}}},
            "trigger.params: timezone",
            "IANA",
        ),
        (
            {"criteria": {"trigger.status": {"op": "resembles", "value": 1}}},
            "criteria.trigger.status.op",
            "not an operator",
        ),
        (
            {"criteria": {"trigger.status": {"op": "regex", "value": "("}}},
            "criteria.trigger.status.value",
            "regular expression",
        ),
        (
            {"action": {"ref": "demo.hello", "parameters": {"who": "{{ os.environ }}"}}},
            "action.parameters.who",
            "unknown name os",
        ),
        (
            {"action": {"ref": "demo.hello", "parameters": {"who": "{{ trigger. }}"}}},
            "action.parameters.who",
            "does not parse",
        ),
        ({"action": {"ref": "demo.nosuch"}}, "action.ref", "no action 'demo.nosuch'"),
        (
            {"action": {"ref": "demo.hello", "parameters": {"times": 99}}},
            "action.parameters.times",
            "99",
        ),
        (
            {"action": {"ref": "demo.hello", "parameters": {"whom": "x"}}},
            "action.parameters.whom",
            "unknown parameter",
        ),
        ({"misfire": {"policy": "sometimes"}}, "misfire.policy", "once, skip, all"),
        ({"ref": "other.greet"}, "ref", "must start with the pack's ref"),
        ({"when": "now"}, "when", "unknown key"),
    ],
)
def test_a_malformed_rule_is_refused_naming_file_and_field(
    sqlite_database: Database, tmp_path: Path, changes: dict[str, Any], field: str, text: str
) -> None:
    problems = problems_of(sqlite_database, tmp_path, rule(**changes))

    assert f"rules/greet.yaml: {field}" in problems
    assert text in problems
    assert refs(sqlite_database) == []


def test_a_misfire_policy_on_a_non_timer_rule_is_refused(
    sqlite_database: Database, tmp_path: Path
) -> None:
    document = rule(trigger={"type": "core.execution_finished"}, misfire={"policy": "all"})

    problems = problems_of(sqlite_database, tmp_path, document)

    assert "rules/greet.yaml: misfire: only timer triggers" in problems


def test_rules_upsert_by_ref_keep_their_cursor_and_are_pruned(
    database: Database, tmp_path: Path
) -> None:
    write_rules(tmp_path, {"greet": rule(), "bye": rule("demo.bye")})
    assert load_packs(database, tmp_path).ok
    with database.session_scope() as session:
        first_cursor = session.scalars(select(RuleTimer).order_by(RuleTimer.rule_id)).all()

    write_rules(tmp_path, {"greet": rule(description="Changed.")})
    report = load_packs(database, tmp_path).reports[0].rules

    assert (report.created, report.updated, report.removed) == (0, 1, 1)
    assert refs(database) == ["demo.greet"]
    with database.session_scope() as session:
        cursors = session.scalars(select(RuleTimer)).all()
    assert [c.last_fire_time for c in cursors] == [first_cursor[-1].last_fire_time]


def test_a_changed_trigger_restarts_the_cursor_and_disabling_drops_it(
    database: Database, tmp_path: Path
) -> None:
    write_rules(tmp_path, {"greet": rule()})
    load_packs(database, tmp_path)
    with database.session_scope() as session:
        before = session.scalars(select(RuleTimer.params_hash)).one()

    write_rules(tmp_path, {"greet": rule(trigger=CRON)})
    load_packs(database, tmp_path)
    with database.session_scope() as session:
        after = session.scalars(select(RuleTimer.params_hash)).one()
    write_rules(tmp_path, {"greet": rule(trigger=CRON, enabled=False)})
    load_packs(database, tmp_path)

    assert before != after
    with database.session_scope() as session:
        assert session.scalars(select(RuleTimer)).all() == []


def test_the_shipped_example_rules_load(sqlite_database: Database) -> None:
    packs_dir = Path(__file__).resolve().parent.parent / "packs"

    result = load_packs(sqlite_database, packs_dir)

    assert result.ok, result.errors
    assert {"examples.every_minute", "examples.on_failure"} <= set(refs(sqlite_database))


def hook(path: str, **params: Any) -> dict[str, Any]:
    """A webhook rule on ``path`` running ``demo.hello``."""
    return {"type": "core.webhook", "params": {"path": path, **params}}


def test_rules_sharing_a_webhook_path_must_agree_on_its_params_across_packs(
    sqlite_database: Database, tmp_path: Path
) -> None:
    write_rules(tmp_path, {"push": rule("demo.push", trigger=hook("git", secret_env="GIT_KEY"))})
    assert load_packs(sqlite_database, tmp_path, ["demo"]).ok
    other = write_pack(tmp_path, "other")
    (other / "rules").mkdir()
    same = rule("other.same", trigger=hook("git", secret_env="GIT_KEY", max_bytes=1_048_576))
    write_yaml(other / "rules" / "same.yaml", same)
    assert load_packs(sqlite_database, tmp_path, ["other"]).ok  # defaults spelled out agree

    write_yaml(other / "rules" / "same.yaml", rule("other.same", trigger=hook("git")))
    result = load_packs(sqlite_database, tmp_path, ["other"])

    assert not result.ok
    [problem] = result.errors[0].problems
    assert "rules/same.yaml: trigger.params: path 'git' is also the hook of demo.push" in problem
    assert problem.endswith("which differs in secret_env")
    assert refs(sqlite_database) == ["demo.push", "other.same"]  # as loaded before


def test_a_webhook_rule_without_a_secret_loads_with_a_warning(
    sqlite_database: Database, tmp_path: Path
) -> None:
    write_rules(tmp_path, {"ping": rule("demo.ping", trigger=hook("ping"))})

    result = load_packs(sqlite_database, tmp_path)

    assert result.ok
    [warning] = result.warnings
    assert "rules/ping.yaml: trigger.params: no secret_env" in warning
    assert "/api/v1/webhooks/ping takes an operate API key" in warning
