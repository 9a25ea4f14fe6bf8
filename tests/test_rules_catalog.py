"""What a rule did lately (``catalog.activity``, the ``/rules`` page's data): a timer's own
ticks, missed ones too, and another trigger's enforced events, each with its verdict and
execution; time is injected into the timer pass, never slept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from attune.packs.loader import load_packs
from attune.rules import catalog
from attune.rules.emission import emit
from attune.rules.timers import tick
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Execution
from tests.pack_builder import rule, write_rules

SECOND = timedelta(seconds=1)


def views(database: Database) -> dict[str, catalog.RuleView]:
    with database.session_scope() as session:
        return {view.rule.ref: view for view in catalog.list_rules(session)}


def seen(database: Database, ref: str, limit: int = 5) -> list[catalog.Activity]:
    with database.session_scope() as session:
        return catalog.activity(session, views(database)[ref], limit)


def statuses(database: Database) -> dict[int, str]:
    with database.session_scope() as session:
        return {
            row.id: row.status for row in session.execute(select(Execution.id, Execution.status))
        }


def test_a_timer_lists_its_ticks_newest_first_missed_ones_without_a_verdict(
    database: Database, tmp_path: Path
) -> None:
    every_second = {"type": "core.intervaltimer", "params": {"interval": 1}}
    write_rules(
        tmp_path,
        {
            "late": rule(
                "demo.late", trigger=every_second, misfire={"policy": "once", "grace_s": 0.5}
            ),
            "other": rule("demo.other", trigger={**every_second, "params": {"interval": 2}}),
        },
    )
    assert load_packs(database, tmp_path).ok
    first = views(database)["demo.late"].next_fire_time
    assert first is not None

    tick(database, Settings(), now=first + 4.8 * SECOND)  # 5 ticks late: once fires the last

    late = seen(database, "demo.late", limit=3)
    assert [item.scheduled_at for item in late] == [first + n * SECOND for n in (4, 3, 2)]
    assert [(item.event_status, item.verdict) for item in late] == [
        ("fired", "scheduled"),
        ("missed", None),
        ("missed", None),
    ]
    assert late[0].execution_id is not None
    assert late[0].execution_status == statuses(database)[late[0].execution_id]
    assert late[1].execution_id is None
    other = seen(database, "demo.other")  # its own ticks only: even seconds, other events
    assert other
    assert all(item.scheduled_at and item.scheduled_at.timestamp() % 2 == 0 for item in other)
    assert not {item.event_id for item in other} & {item.event_id for item in late}


def test_another_trigger_lists_the_events_it_enforced_with_the_reason_when_nothing_ran(
    database: Database, tmp_path: Path
) -> None:
    hook = {"type": "core.webhook", "params": {"path": "deploys"}}
    builds = {**hook, "params": {"path": "builds"}}
    criteria = {"trigger.body.branch": {"op": "equals", "value": "main"}}
    hello = {"ref": "demo.hello"}
    write_rules(
        tmp_path,
        {
            "deploys": rule("demo.deploys", trigger=hook, criteria=criteria, action=hello),
            "builds": rule("demo.builds", trigger=builds, action=hello),
        },
    )
    assert load_packs(database, tmp_path).ok

    for branch in ("main", "dev"):
        emit(database, Settings(), "core.webhook", {"path": "deploys", "body": {"branch": branch}})

    dev, main = seen(database, "demo.deploys")
    assert (dev.verdict, dev.reason, dev.execution_id) == (
        "no_match",
        "trigger.body.branch equals: no match",
        None,
    )
    assert dev.scheduled_at is None
    assert main.verdict == "scheduled"
    assert main.execution_id is not None
    assert main.execution_status == statuses(database)[main.execution_id]
    assert dev.event_id > main.event_id
    assert seen(database, "demo.builds") == []  # it selected neither event
