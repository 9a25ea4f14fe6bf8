"""Timers: epoch-aligned intervals, cron across DST, misfire policies, exactly once per tick
with passes racing, date timers that never refire; time is injected, never slept."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from attune.packs.loader import load_packs
from attune.rules.schedules import schedule_of
from attune.rules.timers import plan, tick
from attune.rules.upsert import sync_timer
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Execution, Rule, RuleTimer, TriggerEvent
from tests.pack_builder import rule, write_rules

SECOND = timedelta(seconds=1)


def interval_rule(seconds: int = 1, **changes: Any) -> dict[str, Any]:
    trigger = {"type": "core.intervaltimer", "params": {"interval": seconds}}
    return rule(trigger=trigger, **changes)


def load(database: Database, packs_dir: Path, document: dict[str, Any]) -> None:
    write_rules(packs_dir, {"greet": document})
    result = load_packs(database, packs_dir)
    assert result.ok, result.errors


def cursor(database: Database) -> RuleTimer:
    with database.session_scope() as session:
        return session.scalars(select(RuleTimer)).one()


def start_cursor_at(database: Database, moment: datetime) -> None:
    """Put the only rule's cursor at ``moment``, as if it had been loaded then."""
    with database.session_scope() as session:
        found = session.scalars(select(Rule)).one()
        session.query(RuleTimer).delete()
        sync_timer(session, found.id, found.trigger_type, found.trigger_params, True, now=moment)


def fired(database: Database, status: str = "fired") -> list[datetime]:
    with database.session_scope() as session:
        query = select(TriggerEvent.fire_time).where(TriggerEvent.status == status)
        return sorted(t for t in session.scalars(query) if t is not None)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_interval_ticks_are_multiples_of_the_interval_since_the_epoch() -> None:
    schedule = schedule_of("core.intervaltimer", {"interval": 7, "unit": "minutes"})

    ticks = schedule.due(at("2026-12-01T10:00:01+00:00"), at("2026-12-01T10:30:00+00:00"))

    assert all(int(t.timestamp()) % 420 == 0 for t in ticks)
    assert len(ticks) == 4


@pytest.mark.parametrize(
    ("zone", "day", "expected_utc"),
    [
        # 02:30 does not exist on the spring-forward night: once, right after the gap (03:00).
        (
            "Europe/Paris",
            "2026-03-29",
            ["2026-03-28T01:30", "2026-03-29T01:00", "2026-03-30T00:30"],
        ),
        # 02:30 happens twice on the fall-back night: once, at the first occurrence.
        (
            "Europe/Paris",
            "2026-10-25",
            ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30"],
        ),
        (
            "America/New_York",
            "2026-03-08",
            ["2026-03-07T07:30", "2026-03-08T07:00", "2026-03-09T06:30"],
        ),
        (
            "America/New_York",
            "2026-11-01",
            ["2026-10-31T06:30", "2026-11-01T07:30", "2026-11-02T07:30"],
        ),
    ],
)
def test_a_cron_timer_fires_once_a_day_across_a_dst_change(
    sqlite_database: Database, tmp_path: Path, zone: str, day: str, expected_utc: list[str]
) -> None:
    trigger = {"type": "core.crontimer", "params": {"expression": "30 2 * * *", "timezone": zone}}
    load(sqlite_database, tmp_path, rule(trigger=trigger, misfire={"policy": "all"}))
    start = datetime.fromisoformat(day).replace(tzinfo=UTC) - timedelta(days=1)
    start_cursor_at(sqlite_database, start)

    for hour in range(0, 72):  # a pass every hour for three days
        tick(sqlite_database, Settings(), now=start + timedelta(hours=hour, minutes=1))

    assert [t.isoformat(timespec="minutes")[:16] for t in fired(sqlite_database)] == expected_utc


def test_an_hourly_cron_fires_at_each_distinct_utc_hour_of_a_fall_back(
    sqlite_database: Database, tmp_path: Path
) -> None:
    params = {"expression": "0 * * * *", "timezone": "Europe/Paris"}
    load(sqlite_database, tmp_path, rule(trigger={"type": "core.crontimer", "params": params}))
    start_cursor_at(sqlite_database, at("2026-10-24T23:30:00+00:00"))

    for minute in range(0, 240, 10):
        tick(
            sqlite_database, Settings(), now=at("2026-10-24T23:30:00+00:00") + minute * 60 * SECOND
        )

    assert len(fired(sqlite_database)) == 4  # 00:00, 01:00, 02:00 and 03:00 UTC, one each


def test_plan_applies_each_misfire_policy_to_five_late_ticks() -> None:
    base = at("2026-12-01T10:00:00+00:00")
    ticks = [base + n * SECOND for n in range(5)]
    now = ticks[-1] + 0.8 * SECOND

    once, skip, every = (plan(ticks, now, policy, 0.5) for policy in ("once", "skip", "all"))

    assert (once.fire, once.missed, once.missed_count) == ((ticks[-1],), tuple(ticks[:4]), 4)
    assert (skip.fire, skip.missed_count) == ((), 5)
    assert (every.fire, every.missed_count) == (tuple(ticks), 0)
    assert plan(ticks, ticks[-1], "skip", 0.5).fire == (ticks[-1],)  # on time always fires


@pytest.mark.parametrize(
    ("policy", "fires", "missed"), [("once", 1, 4), ("skip", 0, 5), ("all", 5, 0)]
)
def test_a_pass_after_five_missed_intervals_follows_the_misfire_policy(
    database: Database, tmp_path: Path, policy: str, fires: int, missed: int
) -> None:
    load(database, tmp_path, interval_rule(misfire={"policy": policy, "grace_s": 0.5}))
    first = cursor(database).next_fire_time
    assert first is not None

    report = tick(database, Settings(), now=first + 4.8 * SECOND)

    assert (report.fired, report.missed) == (fires, missed)
    assert len(fired(database)) == fires
    assert len(fired(database, "missed")) == missed
    with database.session_scope() as session:
        payloads = session.scalars(
            select(TriggerEvent.payload).where(TriggerEvent.status == "fired")
        ).all()
    if policy == "once":
        assert payloads[0]["missed"] == 4
    assert cursor(database).next_fire_time == first + 5 * SECOND


def test_two_passes_racing_fire_each_tick_exactly_once(
    pg_database: Database, postgres_url: str, tmp_path: Path
) -> None:
    load(pg_database, tmp_path, interval_rule(misfire={"policy": "all"}))
    first = cursor(pg_database).next_fire_time
    assert first is not None
    beats = [Database.from_url(postgres_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    reports = []

    def run(database: Database) -> None:
        for step in range(10):
            barrier.wait()
            reports.append(tick(database, Settings(), now=first + step * 0.5 * SECOND))

    threads = [threading.Thread(target=run, args=(beat,)) for beat in beats]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for beat in beats:
        beat.dispose()

    assert fired(pg_database) == [first + n * SECOND for n in range(5)]
    assert sum(report.fired for report in reports) == 5
    with pg_database.session_scope() as session:
        assert len(session.scalars(select(Execution.id)).all()) == 5


def test_a_date_timer_fires_once_across_a_reload_and_a_restart(
    database: Database, tmp_path: Path
) -> None:
    fire_at = "2030-01-01T09:00:00"
    params = {"fire_at": fire_at, "timezone": "Europe/Paris"}
    document = rule(trigger={"type": "core.datetimetimer", "params": params})
    load(database, tmp_path, document)
    start_cursor_at(database, at("2029-12-31T00:00:00+00:00"))
    due = at("2030-01-01T08:00:00+00:00")

    tick(database, Settings(), now=due + SECOND)
    load(database, tmp_path, {**document, "description": "Edited."})
    restarted = Database.from_url(str(database.engine.url.render_as_string(hide_password=False)))
    try:
        later = tick(restarted, Settings(), now=due + 60 * SECOND)
    finally:
        restarted.dispose()

    assert fired(database) == [due]
    assert later.fired == 0
    assert cursor(database).next_fire_time is None


def test_an_edited_rule_applies_at_the_next_pass(database: Database, tmp_path: Path) -> None:
    load(database, tmp_path, interval_rule(60))
    before = cursor(database)

    load(database, tmp_path, interval_rule(1))
    after = cursor(database)
    assert before.next_fire_time is not None
    assert after.next_fire_time is not None
    report = tick(database, Settings(), now=after.next_fire_time)

    assert after.next_fire_time - after.last_fire_time <= SECOND
    assert report.fired == 1


def test_a_pass_with_nothing_due_fires_nothing(sqlite_database: Database, tmp_path: Path) -> None:
    load(sqlite_database, tmp_path, interval_rule(60))

    report = tick(sqlite_database, Settings())

    assert (report.fired, report.missed, report.raced) == (0, 0, 0)
