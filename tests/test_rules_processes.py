"""Rules with real processes on PostgreSQL + Redis: two ``celery beat`` processes firing each
tick once, a beat stopped for five intervals and restarted, an execution-finished chain stopped
at the depth limit by a real worker; and the embedded default end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from attune.executions.routing import Routed
from attune.executions.scheduler import schedule
from attune.packs.loader import load_packs
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Enforcement, Execution, TriggerEvent
from tests.pack_builder import rule, write_rules
from tests.processes import ROOT, CeleryProcess, Processes, wait_until


def interval_rule(**changes: Any) -> dict[str, Any]:
    trigger = {"type": "core.intervaltimer", "params": {"interval": 1}}
    action = {"ref": "demo.hello", "parameters": {"who": "{{ trigger.scheduled_at }}"}}
    return rule(trigger=trigger, action=action, **changes)


def load(database: Database, packs_dir: Path, **rules: dict[str, Any]) -> None:
    write_rules(packs_dir, rules)
    result = load_packs(database, packs_dir)
    assert result.ok, result.errors


@contextmanager
def beating(processes: Processes, packs_dir: Path) -> Iterator[CeleryProcess]:
    """A real ``celery -A attune beat``, whose loop runs the timer pass every second."""
    beat = processes.beat(env={"ATTUNE_PACKS_DIR": str(packs_dir)})
    try:
        yield beat
    finally:
        beat.kill()


def events(database: Database, status: str) -> list[TriggerEvent]:
    with database.session_scope() as session:
        query = select(TriggerEvent).where(TriggerEvent.status == status)
        return list(session.scalars(query.order_by(TriggerEvent.fire_time)))


def finished_executions(database: Database) -> list[Execution]:
    with database.session_scope() as session:
        return list(session.scalars(select(Execution).order_by(Execution.id)))


def all_succeeded(database: Database, count: int) -> bool:
    rows = finished_executions(database)
    return len(rows) >= count and all(row.status == "succeeded" for row in rows)


def test_two_beats_fire_each_one_second_tick_once(
    processes: Processes, pg_database: Database, tmp_path: Path
) -> None:
    load(pg_database, tmp_path, greet=interval_rule())
    worker = processes.worker("w1", env={"ATTUNE_PACKS_DIR": str(tmp_path)})
    processes.wait_registered(pg_database, worker)

    with beating(processes, tmp_path), beating(processes, tmp_path):
        wait_until(lambda: len(events(pg_database, "fired")) >= 4, 30, "four ticks")
        # The beats send after their commit: keep them until every execution ran.
        wait_until(lambda: all_succeeded(pg_database, 4), 60, "the executions to succeed")

    times = [event.fire_time for event in events(pg_database, "fired")]
    first = times[0]
    assert first is not None
    assert first.microsecond == 0
    assert times == [first + timedelta(seconds=n) for n in range(len(times))]
    with pg_database.session_scope() as session:
        enforced = session.scalars(select(Enforcement.execution_id)).all()
    assert len(enforced) == len(set(enforced)) == len(times)


def test_a_beat_stopped_for_five_intervals_fires_once_with_missed_ticks_recorded(
    processes: Processes, pg_database: Database, tmp_path: Path
) -> None:
    load(pg_database, tmp_path, greet=interval_rule(misfire={"policy": "once", "grace_s": 0.5}))
    worker = processes.worker("w1", env={"ATTUNE_PACKS_DIR": str(tmp_path)})
    processes.wait_registered(pg_database, worker)
    with beating(processes, tmp_path):
        wait_until(lambda: events(pg_database, "fired"), 30, "a first tick")
        wait_until(lambda: all_succeeded(pg_database, 1), 60, "its execution")
    stopped_at = time.monotonic()
    wait_until(lambda: time.monotonic() - stopped_at > 5.6, 10, "five intervals to pass")
    before = len(events(pg_database, "fired"))

    with beating(processes, tmp_path):
        wait_until(lambda: len(events(pg_database, "fired")) >= before + 2, 30, "ticks again")
        wait_until(lambda: all_succeeded(pg_database, before + 2), 60, "the executions")

    fired = events(pg_database, "fired")
    missed = events(pg_database, "missed")
    last, catch_up = fired[before - 1], fired[before]
    assert last.fire_time is not None
    assert catch_up.fire_time is not None
    gap = [m for m in missed if m.fire_time and last.fire_time < m.fire_time < catch_up.fire_time]
    assert catch_up.payload["missed"] == len(gap) >= 4
    every = sorted(e.fire_time for e in fired + missed if e.fire_time is not None)
    assert every == [every[0] + timedelta(seconds=n) for n in range(len(every))]


def test_an_execution_finished_chain_stops_at_the_depth_limit(
    processes: Processes, pg_database: Database, tmp_path: Path
) -> None:
    finished = {"type": "core.execution_finished", "params": {"status": ["succeeded"]}}
    load(pg_database, tmp_path, again=rule(trigger=finished, action={"ref": "demo.hello"}))
    env = {"ATTUNE_PACKS_DIR": str(tmp_path), "ATTUNE_MAX_TRIGGER_DEPTH": "3"}
    worker = processes.worker("w1", env=env)
    processes.wait_registered(pg_database, worker)
    routed = schedule(pg_database, Settings(), "demo.hello", {})
    assert isinstance(routed, Routed)

    processes.send("attune.execute_action", [routed.execution_id], routed.queue)

    def limited() -> list[Enforcement]:
        with pg_database.session_scope() as session:
            query = select(Enforcement).where(Enforcement.status == "chain_limit")
            return list(session.scalars(query))

    [stopped] = wait_until(limited, 60, "the chain to hit its limit")
    assert "ATTUNE_MAX_TRIGGER_DEPTH (3)" in stopped.reason
    rows = finished_executions(pg_database)
    assert [row.trigger_depth for row in rows] == [0, 1, 2, 3]
    assert all(row.status == "succeeded" for row in rows)
    assert [row.enforcement_id is None for row in rows] == [True, False, False, False]


def test_the_embedded_default_emits_and_runs_a_rule_end_to_end(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'attune.db'}"
    packs_dir = tmp_path / "packs"
    hook = {"type": "core.webhook", "params": {"path": "deploys"}}
    write_rules(packs_dir, {"hook": rule(trigger=hook, action={"ref": "demo.hello"})})
    env = {key: value for key, value in os.environ.items() if not key.startswith("ATTUNE_")}
    env.update(
        ATTUNE_DATABASE_URL=database_url,
        ATTUNE_BROKER_URL="memory://",
        ATTUNE_PACKS_DIR=str(packs_dir),
    )
    attune = str(Path(sys.executable).with_name("attune"))
    alembic = str(Path(sys.executable).with_name("alembic"))

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    assert run(alembic, "upgrade", "head").returncode == 0
    assert run(attune, "packs", "load").returncode == 0
    emitted = run(attune, "triggers", "emit", "core.webhook", "--payload", '{"body": {}}')

    assert emitted.returncode == 0, emitted.stderr
    assert "demo.greet: scheduled, execution 1 succeeded" in emitted.stdout
    listed = run(attune, "enforcements", "list", "--rule", "demo.greet")
    assert "demo.greet  scheduled execution 1" in listed.stdout
