"""Benchmark: a gated action against the same action ungated, side by side in one run.

On PostgreSQL + Redis, an echo action loaded twice (``bench.plain`` without a policy,
``bench.gated`` with ``concurrency: {limit: 10}``, ``bench.drain`` with ``limit: 4``):
- round trip of ``execute(...).wait()``, gated (limit 10, idle) vs ungated, calls interleaved
  on the same two workers (goal: median ratio <= 1.1);
- draining 2,000 queued executions of ``bench.drain`` on two workers ``-c 4`` vs 2,000 of
  ``bench.plain`` on two workers ``-c 2`` (goal: throughput ratio >= 0.9), sampling that
  never more than 4 ran at once.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: make `tests` importable
from tests.benchmarks.fleet import deployment, stop, until, workers  # noqa: E402

BROKER_URL = "redis://127.0.0.1:6379/13"
ROUND_TRIPS = int(os.environ.get("BENCH_ROUND_TRIPS", "200"))
DRAIN = int(os.environ.get("BENCH_DRAIN", "2000"))
NODES = ("bench-p1@localhost", "bench-p2@localhost")


def _workers(env: dict[str, str], concurrency: int) -> list[subprocess.Popen[bytes]]:
    return workers(env, NODES, concurrency)


def _pack(packs_dir: Path) -> None:
    from tests.pack_builder import action, write_pack

    plain = action("bench.plain", entry_point="echo.sh", parameters={})
    write_pack(
        packs_dir,
        "bench",
        {
            "plain": plain,
            "gated": {**plain, "ref": "bench.gated", "concurrency": {"limit": 10}},
            "drain": {**plain, "ref": "bench.drain", "concurrency": {"limit": 4}},
        },
    )


def main() -> None:
    """Run both side by side and print medians, rates and ratios."""
    with deployment(f"attune_bench_policies_{os.getpid()}", BROKER_URL, _pack) as env:
        _measure(env)


def _measure(env: dict[str, str]) -> None:
    import attune
    from attune.errors import AttuneError

    def ready() -> bool:
        try:
            return attune.execute("bench.plain").wait(5).succeeded
        except AttuneError:
            return False

    workers = _workers(env, 4)
    try:
        until(ready, 60, "the workers registering")
        for _ in range(20):
            attune.execute("bench.plain").wait(10)
            attune.execute("bench.gated").wait(10)
        times = _round_trips()
        ours, theirs = (statistics.median(times[ref]) for ref in ("bench.gated", "bench.plain"))
        print(
            f"round trip (median of {ROUND_TRIPS}, interleaved): gated (limit 10) "
            f"{ours * 1e3:.2f} ms, ungated {theirs * 1e3:.2f} ms, ratio {ours / theirs:.2f} "
            "(goal <= 1.1)"
        )
        gated_rate, most = _drain("bench.drain")
    finally:
        stop(workers)
    workers = _workers(env, 2)
    try:
        until(ready, 60, "the -c 2 workers registering")
        plain_rate, _ = _drain("bench.plain")
    finally:
        stop(workers)
    print(
        f"drain of {DRAIN}: gated (limit 4, 2 workers -c 4) {gated_rate:.0f}/s, at most {most} "
        f"running; ungated (2 workers -c 2) {plain_rate:.0f}/s; ratio "
        f"{gated_rate / plain_rate:.2f} (goal >= 0.9, at most 4 running)"
    )


def _round_trips() -> dict[str, list[float]]:
    """Round trips of the ungated and the gated action, calls interleaved one by one."""
    import attune

    times: dict[str, list[float]] = {"bench.plain": [], "bench.gated": []}
    for _ in range(ROUND_TRIPS):
        for ref, found in times.items():
            start = time.perf_counter()
            record = attune.execute(ref).wait(10)
            found.append(time.perf_counter() - start)
            assert record.succeeded, record
    return times


def _drain(ref: str) -> tuple[float, int]:
    """Fill the queue while no worker consumes its runtime's queue, then time the drain."""
    from sqlalchemy import func, select

    import attune
    from attune.store.models import TERMINAL_STATUSES, Execution
    from attune.worker.app import resources

    app = attune.app
    hosts = list(NODES)

    def stopped_consuming() -> bool:  # both workers must answer: one still starting would not
        answers = app.control.cancel_consumer(
            "attune.shell", destination=hosts, reply=True, timeout=1
        )
        return len(answers or []) == len(hosts)

    until(stopped_consuming, 60, "both workers to stop consuming attune.shell")
    with resources.database.session_scope() as session:
        first_id = session.scalar(select(func.max(Execution.id))) or 0
    for _ in range(DRAIN):
        attune.execute(ref)

    def count(*statuses: str) -> int:
        with resources.database.session_scope() as session:
            return (
                session.scalar(
                    select(func.count()).where(
                        Execution.id > first_id, Execution.status.in_(statuses)
                    )
                )
                or 0
            )

    most = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, count("running", "canceling"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    early = DRAIN - count("scheduled")  # a worker that went on consuming while it filled
    if early:
        print(f"  {ref}: {early} of {DRAIN} left the queue before the timer started: rate inflated")
    start = time.perf_counter()
    app.control.add_consumer("attune.shell", destination=hosts, reply=True)
    watcher.start()
    until(lambda: count(*TERMINAL_STATUSES) == DRAIN, 600, f"draining {ref}")
    rate = DRAIN / (time.perf_counter() - start)
    done.set()
    with resources.database.session_scope() as session:
        rows = session.execute(
            select(Execution.started_at, Execution.finished_at)
            .where(Execution.id > first_id)
            .order_by(Execution.started_at)
        ).all()
    runs_ms = [(row.finished_at - row.started_at).total_seconds() * 1e3 for row in rows]
    ends = sorted(row.finished_at for row in rows)
    waits_ms = []
    for row in rows[8:]:  # from a start back to the latest end before it: the hand-off
        ended = [end for end in ends if end <= row.started_at]
        if ended:
            waits_ms.append((row.started_at - ended[-1]).total_seconds() * 1e3)
    print(
        f"  {ref}: median run (claim to stored) {statistics.median(runs_ms):.1f} ms, "
        f"median start after the latest end {statistics.median(waits_ms or [0]):.1f} ms"
    )
    return rate, most


if __name__ == "__main__":
    main()
