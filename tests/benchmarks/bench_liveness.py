"""Benchmark: heartbeat and sweep on PostgreSQL, each beside a bare psycopg baseline.

Run by ``make bench``. It creates its own database ``attune_bench_live_<pid>``, migrates it with
alembic, and drops it afterwards. Goals (issue 11), each a ratio to its bare baseline measured
in the same run, the two taking turns:

- one heartbeat (what the heartbeat thread does each tick) ≤ 1.3 × a bare psycopg autocommit
  ``UPDATE`` of the same row (the UPDATE and its commit in one round trip);
- ≥ 90 % of heartbeat updates are HOT (``n_tup_hot_upd / n_tup_upd``);
- the sweep over 100,000 workers with 1,000 stale (100 never heartbeated), settling their
  executions, ≤ 2 × a bare psycopg ``UPDATE`` + commit of the stale worker rows alone. The
  bare UPDATE runs the worker table's event trigger per row (no sweep setting tells it that no
  API server relays); the same UPDATE with triggers off is printed beside, for reference.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from attune.liveness import registry as workers
from attune.liveness import sweep as sweeps
from attune.settings import Settings
from attune.store.db import Database

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("ATTUNE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
SETTINGS = Settings()  # 30 s heartbeats, stale at 90 s

HEARTBEAT_WORKERS = 1_000
HEARTBEAT_ROUNDS = 3000
FLEET = 100_000
STALE = 1_000
NEVER = 100
SWEEP_RUNS = 15
WARM = 200
BARE_BEAT = "UPDATE worker SET last_heartbeat = now() WHERE name = %s AND status = 'active'"
BARE_SWEEP = (
    "UPDATE worker SET status = 'inactive' WHERE status = 'active'"
    " AND (last_heartbeat IS NULL OR last_heartbeat <= now() - interval '90 seconds')"
)


def main() -> int:
    """Create the database, run both benchmarks, print figures and ratios, drop the database.

    Exits 1 only if the sweep settled the wrong rows: timings are reported against their goals,
    not enforced, since the machine may be busy with other work.
    """
    name = f"attune_bench_live_{os.getpid()}"
    admin = create_engine(f"{ADMIN_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{ADMIN_URL}/{name}"
    database = Database.from_url(url)
    try:
        migrate(database)
        bench_heartbeat(database, url)
        correct = bench_sweep(database, url)
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0 if correct else 1


def migrate(database: Database) -> None:
    """alembic upgrade head on the bench database."""
    with database.engine.begin() as connection:
        config = Config(str(ROOT / "alembic.ini"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def bench_heartbeat(database: Database, url: str) -> None:
    """Median heartbeat beside a bare UPDATE + commit, and the HOT ratio of heartbeats."""
    with database.session_scope() as session:
        for index in range(HEARTBEAT_WORKERS):
            workers.register(
                session, workers.Registration(f"hb{index}", ("shell",), ("attune.shell",), "h", 1)
            )
    names = [f"hb{index % HEARTBEAT_WORKERS}" for index in range(HEARTBEAT_ROUNDS)]

    def attune_beat(name: str) -> None:
        workers.heartbeat(database, name)

    # The bare baseline does the same durable work at the driver's own cost: the UPDATE of the
    # row, committed. Autocommit commits it in the same round trip (what the heartbeat does);
    # the transaction form (BEGIN, UPDATE, COMMIT: three round trips) is shown beside it.
    with (
        psycopg.connect(_libpq(url), autocommit=True) as bare,
        psycopg.connect(_libpq(url)) as bare_transaction,
    ):

        def bare_beat(name: str) -> None:
            bare.execute(BARE_BEAT, (name,))

        def bare_transaction_beat(name: str) -> None:
            bare_transaction.execute(BARE_BEAT, (name,))
            bare_transaction.commit()

        for name in names[:WARM]:  # warm every path: connections, prepared statements
            attune_beat(name)
            bare_beat(name)
            bare_transaction_beat(name)
        # Interleaved beat by beat: a checkpoint or a neighbour's burst hits all three alike.
        before = _update_counts(database)
        attune_times, bare_times, transaction_times = _interleaved(
            (attune_beat, bare_beat, bare_transaction_beat), names
        )
        after = _update_counts(database)

    # Every UPDATE of the worker table in the window counts: the three paths' alike.
    updates, hot = after[0] - before[0], after[1] - before[1]
    attune_ms = statistics.median(attune_times) * 1000
    bare_ms = statistics.median(bare_times) * 1000
    transaction_ms = statistics.median(transaction_times) * 1000
    hot_ratio = hot / updates if updates else 0.0
    print(f"heartbeat over {HEARTBEAT_ROUNDS} beats of {HEARTBEAT_WORKERS} workers")
    print(
        f"  attune heartbeat          median {attune_ms:6.3f} ms  p95 {_p95(attune_times):6.3f} ms"
    )
    print(f"  bare autocommit UPDATE    median {bare_ms:6.3f} ms  p95 {_p95(bare_times):6.3f} ms")
    print(
        f"  bare UPDATE; COMMIT       median {transaction_ms:6.3f} ms"
        f"  p95 {_p95(transaction_times):6.3f} ms  (for reference)"
    )
    ratio = attune_ms / bare_ms
    print(
        f"  ratio attune/bare autocommit UPDATE  {ratio:.2f}x   goal: <= 1.3 {_met(ratio <= 1.3)}"
    )
    hot_line = f"{hot}/{updates} = {hot_ratio:.1%}"
    print(f"  HOT updates        {hot_line}   goal: >= 90 % {_met(hot_ratio >= 0.9)}")


def bench_sweep(database: Database, url: str) -> bool:
    """The sweep of 100,000 workers with 1,000 stale, beside a bare UPDATE of the stale rows.

    Returns whether every sweep deactivated and abandoned exactly the stale workers' rows.
    """
    with database.engine.begin() as connection:
        connection.execute(text("TRUNCATE worker, execution RESTART IDENTITY CASCADE"))
        connection.execute(
            text(
                "INSERT INTO worker (name, worker_role, runtimes, queues, host, pid, status,"
                " capabilities, last_heartbeat)"
                " SELECT 'w' || i, 'action', '[\"shell\"]', '[\"attune.shell\"]', 'h', i,"
                " 'active', '{}', now() FROM generate_series(1, :fleet) AS i"
            ),
            {"fleet": FLEET},
        )
        connection.execute(
            text(
                "INSERT INTO execution (action_ref, parameters, status, worker, stdout, stderr,"
                " stdout_truncated, stderr_truncated, started_at)"
                " SELECT 'core.sleep', '{}', 'running', 'w' || i, '', '', false, false, now()"
                " FROM generate_series(1, :fleet) AS i"
            ),
            {"fleet": FLEET},
        )
    stale_names = [f"w{index}" for index in range(1, FLEET + 1, FLEET // STALE)][:STALE]

    def reset() -> None:
        with psycopg.connect(_libpq(url), autocommit=True) as connection:
            connection.execute(
                "UPDATE worker SET status = 'active',"
                " last_heartbeat = now() - interval '10 minutes' WHERE name = ANY(%s)",
                (stale_names,),
            )
            connection.execute(
                "UPDATE worker SET last_heartbeat = NULL WHERE name = ANY(%s)",
                (stale_names[:NEVER],),
            )
            connection.execute(
                "UPDATE execution SET status = 'running', error = NULL, finished_at = NULL"
                " WHERE worker = ANY(%s)",
                (stale_names,),
            )
            connection.execute("VACUUM ANALYZE worker")
            connection.execute("VACUUM ANALYZE execution")

    def bare_sweep(connection: psycopg.Connection[tuple[object, ...]]) -> float:
        reset()
        started = time.perf_counter()
        connection.execute(BARE_SWEEP)
        connection.commit()
        return time.perf_counter() - started

    # Attune's sweep and the bare UPDATEs take turns, so a neighbour's burst hits all alike.
    sweep_times, bare_times, silent_times, reports = [], [], [], []
    with psycopg.connect(_libpq(url)) as bare, psycopg.connect(_libpq(url)) as silent:
        # The reference: the same UPDATE with the table's triggers off for its session.
        silent.execute("SET session_replication_role = replica")
        silent.commit()
        for _ in range(SWEEP_RUNS):
            reset()
            started = time.perf_counter()
            with database.session_scope() as session:
                report = sweeps.sweep(session, SETTINGS)
            sweep_times.append(time.perf_counter() - started)
            reports.append(report.counts())
            bare_times.append(bare_sweep(bare))
            silent_times.append(bare_sweep(silent))

    expected = {"deactivated": STALE, "abandoned": STALE, "failed_scheduled": 0}
    correct = all(counts == expected for counts in reports)
    sweep_ms = statistics.median(sweep_times) * 1000
    bare_ms = statistics.median(bare_times) * 1000
    print(
        f"sweep of {FLEET:,} workers, {STALE:,} stale ({NEVER} never heartbeated),"
        f" {FLEET:,} running executions, {SWEEP_RUNS} runs"
    )
    print(f"  attune sweep       median {sweep_ms:6.1f} ms  (settles {reports[0]})")
    print(
        f"  bare UPDATE+commit median {bare_ms:6.1f} ms  (psycopg: the {STALE:,} stale worker"
        " rows found by the same rule and marked inactive, committed; no execution settled)"
    )
    silent_ms = statistics.median(silent_times) * 1000
    print(
        f"  bare, triggers off median {silent_ms:6.1f} ms  (the same, without the worker table's"
        " event trigger, which the bare UPDATE runs per row and the sweep skips while no API"
        " relays; for reference)"
    )
    ratio = sweep_ms / bare_ms
    print(f"  ratio attune/bare  {ratio:.2f}x   goal: <= 2 {_met(ratio <= 2)}")
    print(f"  ratio attune/bare, triggers off  {sweep_ms / silent_ms:.2f}x   (for reference)")
    if not correct:
        print(f"  WRONG COUNTS: {reports}")
    return correct


def _met(goal_met: bool) -> str:
    return "(met)" if goal_met else "(MISSED)"


def _update_counts(database: Database) -> tuple[int, int]:
    """The worker table's (n_tup_upd, n_tup_hot_upd), after every backend flushed its stats."""
    with database.engine.connect() as connection:
        # Stats reach pg_stat_user_tables asynchronously; pooled backends flush theirs now.
        connection.execute(text("SELECT pg_stat_force_next_flush()"))
        connection.commit()
    deadline = time.monotonic() + 5
    previous: tuple[int, int] | None = None
    while True:
        with database.engine.connect() as connection:
            row = connection.execute(
                text(
                    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                    " WHERE relname = 'worker'"
                )
            ).one()
        counts = (int(row[0]), int(row[1]))
        if counts == previous or time.monotonic() > deadline:
            return counts
        previous = counts
        time.sleep(1.1)  # idle backends flush pending stats at most once a second


def _interleaved(
    steps: tuple[Callable[[str], None], ...], names: list[str]
) -> tuple[list[float], ...]:
    """Each step's times over ``names``, the steps taking turns name by name."""
    times: tuple[list[float], ...] = tuple([] for _ in steps)
    for name in names:
        for step, taken in zip(steps, times, strict=True):
            started = time.perf_counter()
            step(name)
            taken.append(time.perf_counter() - started)
    return times


def _p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1] * 1000


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


if __name__ == "__main__":
    sys.exit(main())
