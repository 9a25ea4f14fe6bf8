"""Benchmark: rule firing and timer passes against their bare baselines, side by side.

On PostgreSQL (no broker: both sides are timed up to their commit):
- a rule firing (event + enforcement + execution, committed, through ``attune.rules.emission``)
  vs a plain ``execute()`` up to its commit (``attune.executions.scheduler.schedule``);
  goal: median ratio <= 1.5;
- a timer pass over 10,000 loaded rules with 100 due vs one indexed SELECT of the due cursors
  plus the inserts the pass must make (100 events, enforcements and executions, executemany);
  goal: ratio <= 3;
- a pass with none due: the statements it sends (goal: 1);
- timer lag: a real ``celery -A attune beat`` (its default tick) fires an interval timer at
  1 s for ``BENCH_LAG_S`` seconds; each event's arrival (``received_at``, the database clock)
  minus its tick (``fire_time``); goal: p99 <= 1.2 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: make `tests` importable
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432"
FIRINGS = int(os.environ.get("BENCH_FIRINGS", "300"))
RULES = int(os.environ.get("BENCH_RULES", "10000"))
DUE = int(os.environ.get("BENCH_DUE", "100"))
PASSES = int(os.environ.get("BENCH_PASSES", "15"))
LAG_S = float(os.environ.get("BENCH_LAG_S", "60"))


def _median_s(call: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Create a database, load the packs and a bench pack, measure, drop the database."""
    from sqlalchemy import create_engine, text

    name = f"attune_bench_rules_{os.getpid()}"
    admin = create_engine(f"{PG_ADMIN}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{PG_ADMIN}/{name}"
    env = {**os.environ, "ATTUNE_DATABASE_URL": url, "ATTUNE_PACKS_DIR": str(ROOT / "packs")}
    try:
        bin_dir = Path(sys.executable).parent
        subprocess.run([bin_dir / "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True)
        subprocess.run([bin_dir / "attune", "packs", "load"], cwd=ROOT, env=env, check=True)
        _measure(url)
        _timer_lag(url, env, bin_dir)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _measure(url: str) -> None:
    from sqlalchemy import insert

    from attune.settings import Settings
    from attune.store.db import Database
    from attune.store.models import Worker
    from attune.store.sqltypes import db_now

    settings = Settings(database_url=url)
    database = Database.from_url(url)
    with database.session_scope() as session:  # a live worker, so both sides route
        session.execute(
            insert(Worker).values(name="bench", runtimes=["shell"], last_heartbeat=db_now())
        )
    try:
        _firing(database, settings)
        _passes(database, settings)
    finally:
        database.dispose()


def _firing(database: Any, settings: Any) -> None:
    from sqlalchemy import select

    from attune.executions.scheduler import schedule
    from attune.rules.emission import emit
    from attune.rules.spec import read_rule
    from attune.rules.upsert import upsert_rules
    from attune.store.models import Pack
    from tests.pack_builder import write_yaml

    rule_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-rule-{os.getpid()}.yaml"
    write_yaml(
        rule_file,
        {
            "ref": "core.bench_hook",
            "trigger": {"type": "core.webhook", "params": {"path": "bench"}},
            "criteria": {"trigger.body.ok": {"op": "equals", "value": True}},
            "action": {"ref": "core.echo", "parameters": {"message": "{{ trigger.body.msg }}"}},
        },
    )
    problems: list[str] = []
    spec = read_rule(rule_file, "core", problems)
    rule_file.unlink()
    assert spec is not None, problems
    with database.session_scope() as session:
        pack_id = session.scalar(select(Pack.id).where(Pack.ref == "core"))
        upsert_rules(session, pack_id, [spec])
    payload = {"body": {"ok": True, "msg": "hello"}, "path": "bench"}

    def fire() -> None:
        [enforced] = emit(database, settings, "core.webhook", payload).enforcements
        assert enforced.queue is not None

    def plain() -> None:
        schedule(database, settings, "core.echo", {"message": "hello"})

    fire(), plain()  # warm both paths
    firing_s, plain_s = [], []
    for _ in range(FIRINGS):
        firing_s.append(_median_s(fire, 1))
        plain_s.append(_median_s(plain, 1))
    ratio = statistics.median(firing_s) / statistics.median(plain_s)
    print(
        f"rule firing (event + enforcement + execution): median"
        f" {statistics.median(firing_s) * 1000:.2f} ms vs execute() to commit"
        f" {statistics.median(plain_s) * 1000:.2f} ms: ratio {ratio:.2f} (goal <= 1.5)"
    )


def _timer_lag(url: str, env: dict[str, str], bin_dir: Path) -> None:
    """Run a real beat for ``LAG_S`` seconds over a 1 s interval timer; print the lag."""
    from sqlalchemy import delete, select

    from attune.rules.spec import read_rule
    from attune.rules.upsert import upsert_rules
    from attune.store.db import Database
    from attune.store.models import Pack, Rule, RuleTimer, TriggerEvent
    from tests.pack_builder import write_yaml

    database = Database.from_url(url)
    rule_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-tick-{os.getpid()}.yaml"
    write_yaml(
        rule_file,
        {
            "ref": "core.bench_tick",
            "trigger": {"type": "core.intervaltimer", "params": {"interval": 1}},
            "action": {"ref": "core.echo", "parameters": {"message": "tick"}},
        },
    )
    spec = read_rule(rule_file, "core", problems := [])
    rule_file.unlink()
    assert spec is not None, problems
    with database.session_scope() as session:  # only this timer: the pass bench's are gone
        session.execute(delete(RuleTimer))
        session.execute(delete(Rule).where(Rule.ref.like("core.timer_%")))
        pack_id = session.scalar(select(Pack.id).where(Pack.ref == "core"))
        upsert_rules(session, pack_id, [spec])
        rule_id = session.scalar(select(Rule.id).where(Rule.ref == "core.bench_tick"))
    beat_env = {**env, "ATTUNE_BROKER_URL": "memory://"}  # the sends go nowhere: lag only
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-beat-{os.getpid()}"
    workdir.mkdir(exist_ok=True)
    beat = subprocess.Popen(
        [bin_dir / "celery", "-A", "attune", "beat", "-l", "warning", "-s", workdir / "schedule"],
        cwd=ROOT,
        env={**beat_env, "PYTHONPATH": str(ROOT)},
    )
    try:
        time.sleep(LAG_S)  # the measured span: beat's own ticks, nothing to inject
    finally:
        beat.terminate()
        beat.wait(30)
    with database.session_scope() as session:
        rows = session.execute(
            select(TriggerEvent.fire_time, TriggerEvent.received_at).where(
                TriggerEvent.rule_id == rule_id, TriggerEvent.status == "fired"
            )
        ).all()
    database.dispose()
    lags = sorted((row.received_at - row.fire_time).total_seconds() for row in rows)
    assert len(lags) > 10, f"beat fired {len(lags)} tick(s) in {LAG_S:g} s"
    p99 = lags[min(len(lags) - 1, round(0.99 * (len(lags) - 1)))]
    print(
        f"timer lag over {len(lags)} ticks of a 1 s interval timer (real beat):"
        f" median {statistics.median(lags):.3f} s, p99 {p99:.3f} s, max {lags[-1]:.3f} s"
        f" (goal p99 <= 1.2 s)"
    )


def _passes(database: Any, settings: Any) -> None:
    from sqlalchemy import event, insert, select, text, update

    from attune.rules.timers import tick
    from attune.store.models import (
        ENFORCEMENT_TABLE,
        EXECUTION_TABLE,
        RULE_TABLE,
        RULE_TIMER_TABLE,
        TRIGGER_EVENT_TABLE,
        Pack,
    )

    with database.session_scope() as session:
        pack_id = session.scalar(select(Pack.id).where(Pack.ref == "core"))
        params = {"interval": 60, "unit": "seconds"}
        session.execute(
            insert(RULE_TABLE),
            [
                {
                    "pack_id": pack_id,
                    "ref": f"core.timer_{n}",
                    "description": "",
                    "enabled": True,
                    "trigger_type": "core.intervaltimer",
                    "trigger_params": params,
                    "params_hash": f"bench{n}",
                    "misfire_policy": "once",
                    "misfire_grace_s": 60.0,
                    "criteria": [],
                    "action_ref": "core.echo",
                    "action_parameters": {"message": "tick {{ event.scheduled_at }}"},
                    "file": "",
                }
                for n in range(RULES)
            ],
        )
        ids = list(
            session.scalars(select(RULE_TABLE.c.id).where(RULE_TABLE.c.ref.like("core.timer_%")))
        )
    base = datetime(2030, 1, 1, tzinfo=UTC)
    far = base + timedelta(days=3650)
    with database.session_scope() as session:
        session.execute(
            insert(RULE_TIMER_TABLE),
            [
                {
                    "rule_id": rule_id,
                    "params_hash": f"bench{n}",
                    "last_fire_time": base,
                    "next_fire_time": far,
                }
                for n, rule_id in enumerate(ids)
            ],
        )
        session.execute(text("ANALYZE"))
    due_ids = ids[:: max(1, len(ids) // DUE)][:DUE]
    round_ = [0]

    def make_due() -> datetime:
        round_[0] += 1
        last = base + timedelta(minutes=round_[0] * 10)
        with database.session_scope() as session:
            session.execute(
                update(RULE_TIMER_TABLE)
                .where(RULE_TIMER_TABLE.c.rule_id.in_(due_ids))
                .values(last_fire_time=last, next_fire_time=last + timedelta(seconds=60))
            )
        return last + timedelta(seconds=61)

    def attune_pass() -> float:
        now = make_due()
        start = time.perf_counter()
        report = tick(database, settings, now=now)
        elapsed = time.perf_counter() - start
        assert report.fired == len(due_ids), report
        return elapsed

    def baseline_pass() -> float:
        now = make_due()
        start = time.perf_counter()
        with database.session_scope() as session:
            rows = session.execute(
                select(RULE_TIMER_TABLE.c.rule_id).where(RULE_TIMER_TABLE.c.next_fire_time <= now)
            ).all()
            session.execute(
                insert(TRIGGER_EVENT_TABLE),
                [
                    {
                        "type": "bench",
                        "source": "",
                        "payload": {},
                        "status": "fired",
                        "dedup_key": f"{now}:{r.rule_id}",
                    }
                    for r in rows
                ],
            )
            session.execute(
                insert(EXECUTION_TABLE),
                [
                    {
                        "action_ref": "core.echo",
                        "parameters": {"message": "x"},
                        "status": "scheduled",
                    }
                    for _ in rows
                ],
            )
            event_ids = session.scalars(
                select(TRIGGER_EVENT_TABLE.c.id)
                .order_by(TRIGGER_EVENT_TABLE.c.id.desc())
                .limit(len(rows))
            ).all()
            session.execute(
                insert(ENFORCEMENT_TABLE),
                [
                    {
                        "event_id": e,
                        "rule_id": None,
                        "rule_ref": "x",
                        "status": "scheduled",
                        "reason": "",
                        "criteria_trace": [],
                        "parameters": {},
                    }
                    for e in event_ids
                ],
            )
        return time.perf_counter() - start

    attune_pass(), baseline_pass()  # warm
    attune_s, baseline_s = [], []
    for _ in range(PASSES):
        attune_s.append(attune_pass())
        baseline_s.append(baseline_pass())
    ratio = statistics.median(attune_s) / statistics.median(baseline_s)
    print(
        f"timer pass, {RULES} rules, {len(due_ids)} due:"
        f" median {statistics.median(attune_s) * 1000:.1f} ms"
        f" vs bare SELECT + inserts {statistics.median(baseline_s) * 1000:.1f} ms:"
        f" ratio {ratio:.2f} (goal <= 3)"
    )
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    tick(database, settings)
    event.remove(database.engine, "before_cursor_execute", count)
    print(f"timer pass with none due: {len(statements)} statement(s) (goal 1)")


if __name__ == "__main__":
    main()
