"""Benchmark: attune's execute(...).wait() against a bare Celery task, side by side.

On PostgreSQL with one worker each (``-c 2``), for each broker setup: Redis through attune's
transport (attune/worker/broker.py), Redis through kombu's own (``ATTUNE_REDIS_TRANSPORT=
kombu``: the A/B of attune's transport), and RabbitMQ (the baseline then keeps its results
with Celery's ``rpc://`` backend, as a bare Celery on RabbitMQ would; on Redis, in Redis):
- round trip of ``core.echo`` through ``execute(...).wait()`` vs the baseline's
  ``delay().get()`` (goal: median ratio <= 1.5);
- draining 2,000 queued executions vs 2,000 queued baseline tasks (goal: throughput ratio
  >= 0.7): both queues are filled while their worker does not consume, then timed from the
  moment it starts consuming until the last one is done;
- the same round trip with 1,000,000 finished executions in the table vs on an empty table
  (goal: ratio <= 1.1: the hot path must not slow as history grows), after the query plan of
  every statement on the path is checked for a sequential scan of the execution table.

``BENCH_SETUPS=redis,redis-kombu,rabbitmq`` picks the setups (each runs in a process of its
own, so that attune's configuration is read afresh); ``BENCH_DRAIN_ONLY=1`` stops after the
drain, whose CPU time per execution is printed by process (worker main, pool, the actions'
processes, the worker's PostgreSQL backends).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: make `tests.benchmarks` importable
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672"
SETUPS = {  # name: (broker, the baseline's result backend (None: its broker), redis transport)
    "redis": ("redis", None, "attune"),
    "redis-kombu": ("redis", None, "kombu"),
    "rabbitmq": ("rabbitmq", "rpc://", ""),
}
# Names of this run's own: other checkouts may run this benchmark on the same machine.
ATTUNE_NAME = f"bench-attune-{os.getpid()}"
ATTUNE_NODE = f"{ATTUNE_NAME}@localhost"
BASELINE_NODE = f"bench-baseline-{os.getpid()}@localhost"
ROUND_TRIPS = int(os.environ.get("BENCH_ROUND_TRIPS", "300"))
DRAIN = int(os.environ.get("BENCH_DRAIN", "2000"))
HISTORY = int(os.environ.get("BENCH_HISTORY", "1000000"))


def _celery(app: str, node: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [str(Path(sys.executable).with_name("celery")), "-A", app, "worker", "-n", node]
    common = ["-c", "2", "--without-mingle", "--without-gossip", "-l", "warning"]
    return subprocess.Popen([*command, *common], cwd=ROOT, env=env)


def _until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark: {what} did not happen within {timeout_s} s")
        time.sleep(0.05)


def _timed(call: Callable[[], None]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    """Run each setup of BENCH_SETUPS in a process of its own."""
    if len(sys.argv) > 1:
        _setup(sys.argv[1])
        return
    for setup in os.environ.get("BENCH_SETUPS", ",".join(SETUPS)).split(","):
        print(f"-- {setup}", flush=True)
        subprocess.run([sys.executable, __file__, setup], check=True)


def _setup(setup: str) -> None:
    """Run attune and the baseline side by side on ``setup``; print medians, rates, ratios."""
    from tests.benchmarks.brokers import brokers

    kind, baseline_backend_url, redis_transport = SETUPS[setup]
    with brokers(kind, RABBITMQ) as (broker_url, baseline_broker_url):
        _run(broker_url, baseline_broker_url, baseline_backend_url, redis_transport)


def _run(
    broker_url: str, baseline_broker_url: str, baseline_backend_url: str | None, transport: str
) -> None:
    from sqlalchemy import create_engine, text

    name = f"attune_bench_exec_{os.getpid()}"
    admin = create_engine(f"{PG_ADMIN}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    env = {
        **os.environ,
        "ATTUNE_DATABASE_URL": f"{PG_ADMIN}/{name}",
        "ATTUNE_BROKER_URL": broker_url,
        "ATTUNE_REDIS_TRANSPORT": transport,
        "ATTUNE_PACKS_DIR": str(ROOT / "packs"),
        "ATTUNE_WORKER_NAME": ATTUNE_NAME,
        "BENCH_BROKER_URL": baseline_broker_url,
        "BENCH_BACKEND_URL": baseline_backend_url or baseline_broker_url,
    }
    os.environ.update(env)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        bin_dir = Path(sys.executable).parent
        subprocess.run([bin_dir / "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True)
        subprocess.run([bin_dir / "attune", "packs", "load"], cwd=ROOT, env=env, check=True)
        # The worker's PostgreSQL backends, told from this process's by their name.
        workers.append(_celery("attune", ATTUNE_NODE, {**env, "PGAPPNAME": ATTUNE_NAME}))
        workers.append(_celery("tests.benchmarks.baseline_app", BASELINE_NODE, env))
        _measure(env, workers[0].pid, workers[1].pid)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _measure(env: dict[str, str], attune_pid: int, baseline_pid: int) -> None:
    from sqlalchemy import func, select, text

    import attune
    from attune.errors import AttuneError
    from attune.store.models import TERMINAL_STATUSES, Execution
    from attune.worker.app import resources
    from tests.benchmarks import cputime
    from tests.benchmarks.baseline_app import app as baseline_app
    from tests.benchmarks.baseline_app import spawn

    def attune_ready() -> bool:
        try:
            attune.execute("core.echo", {"message": "warm"}).wait(5)
        except AttuneError:
            return False
        return True

    _until(attune_ready, 60, "the attune worker registering")
    _until(lambda: bool(baseline_app.control.ping(timeout=0.5)), 60, "the baseline worker")
    for _ in range(20):
        spawn.delay().get(timeout=10)
        attune.execute("core.echo", {"message": "hi"}).wait(10)

    def baseline_call() -> None:
        spawn.delay().get(timeout=10)

    def attune_call() -> None:
        record = attune.execute("core.echo", {"message": "hi"}).wait(10)
        assert record.succeeded, record

    # Two orders, both printed: calls interleaved one by one (each pays for the acks and events
    # the other side's worker is still finishing on the same two cores), and blocks of
    # consecutive calls of one side (each side's machinery stays warm).
    for block in (1, 25):
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(ROUND_TRIPS // block):
            theirs.extend(_timed(baseline_call) for _ in range(block))
            ours.extend(_timed(attune_call) for _ in range(block))
        ours_ms, theirs_ms = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
        print(
            f"round trip (median of {len(ours)}, blocks of {block}): attune {ours_ms:.2f} ms, "
            f"bare Celery task {theirs_ms:.2f} ms, ratio {ours_ms / theirs_ms:.2f} (goal <= 1.5)"
        )

    def backend_pids() -> list[int]:
        with resources.database.session_scope() as session:
            found = text("SELECT pid FROM pg_stat_activity WHERE application_name = :name")
            return list(session.scalars(found, {"name": ATTUNE_NAME}))

    cpu: dict[str, dict[str, float]] = {}

    def drain(
        queue: str, app: Any, hostname: str, fill: Callable[[], None], done: Callable[[], bool]
    ) -> float:
        pid = attune_pid if app is attune.app else baseline_pid
        # The worker consumes nothing while its queue fills, as the baseline's (one queue)
        # does: a BRPOP still blocking on its other queues would hold the new consumer back
        # for up to kombu's 1 s poll timeout, which is no part of the draining.
        consumed = app.control.inspect([hostname]).active_queues()[hostname]
        others = [found["name"] for found in consumed if found["name"] != queue]
        for name in (queue, *others):
            app.control.cancel_consumer(name, destination=[hostname], reply=True)
        fill()
        pids = backend_pids() if app is attune.app else []  # the baseline has none
        tree, pg = cputime.worker_tree(pid), cputime.backends(pids)
        start = time.perf_counter()
        app.control.add_consumer(queue, destination=[hostname], reply=True)
        _until(done, 600, f"draining {queue}")
        rate = DRAIN / (time.perf_counter() - start)
        cpu[queue] = cputime.per_operation_ms(tree, cputime.worker_tree(pid), DRAIN)
        if pids:
            delta_s = cputime.backend_delta_s(pg, cputime.backends(pids))
            cpu[queue]["postgres"] = delta_s * 1e3 / DRAIN
        for name in others:
            app.control.add_consumer(name, destination=[hostname], reply=True)
        return rate

    results = []

    def baseline_done() -> bool:
        if baseline_app.conf.result_backend == "rpc://":
            # Results come back as messages to this process: take them (in any order).
            baseline_app.ResultSet(results).join(timeout=600, propagate=True)
            return True
        return all(result.ready() for result in results)

    baseline_rate = drain(
        "bench.baseline",
        baseline_app,
        BASELINE_NODE,
        lambda: results.extend(spawn.delay() for _ in range(DRAIN)),
        baseline_done,
    )

    with resources.database.session_scope() as session:
        first_id = session.scalar(select(func.max(Execution.id))) or 0

    def attune_done() -> bool:
        with resources.database.session_scope() as session:
            finished = session.scalar(
                select(func.count()).where(
                    Execution.id > first_id, Execution.status.in_(TERMINAL_STATUSES)
                )
            )
        return finished == DRAIN

    attune_rate = drain(
        "attune.shell",
        attune.app,
        ATTUNE_NODE,
        lambda: [attune.execute("core.echo", {"message": "hi"}) for _ in range(DRAIN)],
        attune_done,
    )
    print(
        f"drain of {DRAIN}: attune {attune_rate:.0f}/s, bare Celery task {baseline_rate:.0f}/s, "
        f"ratio {attune_rate / baseline_rate:.2f} (goal >= 0.7)"
    )
    for queue, who in (("attune.shell", "attune"), ("bench.baseline", "bare Celery task")):
        print(f"  CPU per execution, {who}: {cputime.describe(cpu[queue])}")
    if os.environ.get("BENCH_DRAIN_ONLY"):
        return
    _history(attune_call, baseline_call)


def _history(attune_call: Callable[[], None], baseline_call: Callable[[], None]) -> None:
    """The round trip on an empty execution table, then with a million finished executions."""
    from sqlalchemy import text

    from attune.worker.app import resources
    from tests.benchmarks import history

    database = resources.database

    def emptied() -> None:
        with database.engine.begin() as connection:
            connection.execute(text("TRUNCATE execution RESTART IDENTITY CASCADE"))
        history.vacuum(database)

    def round_trips() -> tuple[float, float]:
        for _ in range(20):  # the table changed under the worker's cached plans: settle them
            attune_call()
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(ROUND_TRIPS):
            theirs.append(_timed(baseline_call))
            ours.append(_timed(attune_call))
        return statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3

    # Empty, full, empty again: the machine's drift over the run cancels out of the ratio.
    emptied()
    before_ms, before_celery_ms = round_trips()
    started = time.perf_counter()
    history.fill(database, HISTORY)
    filled_s = time.perf_counter() - started
    scanning = history.seq_scans(database, resources.settings)
    full_ms, full_celery_ms = round_trips()
    emptied()
    after_ms, after_celery_ms = round_trips()
    print(
        f"history: {HISTORY:,} finished executions written and analyzed in {filled_s:.1f} s;"
        f" {len(history.hot_path(resources.settings, 1))} statements on the path explained,"
        f" {len(scanning)} with a sequential scan of the execution table"
    )
    for name, plan in scanning.items():
        print(f"  SEQ SCAN in {name}:", *plan, sep="\n    ")
    empty_ms = (before_ms + after_ms) / 2
    celery_drift = full_celery_ms / ((before_celery_ms + after_celery_ms) / 2)
    ratio = full_ms / empty_ms
    print(
        f"round trip (median of {ROUND_TRIPS}) with {HISTORY:,} executions in the table:"
        f" {full_ms:.2f} ms, on an empty table {before_ms:.2f} ms before and {after_ms:.2f} ms"
        f" after, ratio {ratio:.2f} (goal <= 1.1); the bare Celery task beside it"
        f" {full_celery_ms:.2f} ms vs {before_celery_ms:.2f} / {after_celery_ms:.2f} ms"
        f" ({celery_drift:.2f}: the machine's own drift)"
    )


if __name__ == "__main__":
    main()
