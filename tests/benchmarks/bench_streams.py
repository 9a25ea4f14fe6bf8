"""Benchmark: the round trip of ``execute(...).wait()`` with live output on and off, side by side.

On PostgreSQL + Redis, two attune workers (``-c 2``) on one broker: ``bench-live`` publishes
live output to Redis streams (``ATTUNE_LIVE_OUTPUT=auto``), ``bench-quiet`` does not
(``off``). Calls alternate between them (``worker=`` routes each to its worker's own queue).
``core.echo`` prints one line (one stream write, plus the end marker); ``core.noop`` prints
nothing, so live output costs it no write at all. Goal: median ratio on ÷ off <= 1.03.

Then the HTTP round trip (issue 16): a real ``attune serve`` on the same deployment, and
``POST /api/v1/executions`` of ``core.echo`` (to ``bench-live``) followed by its output
stream until ``end`` and the response's close (a keep-alive httpx client with an ``operate``
key, its connection kept from one round trip to the next), alternating with
``execute().wait()`` of the same action on the same worker. Goal: ratio <= 1.3.
"""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: make `tests.benchmarks` importable

from tests.benchmarks.bench_executions import PG_ADMIN, _celery, _timed, _until  # noqa: E402

BROKER_URL = "redis://127.0.0.1:6379/12"
ROUND_TRIPS = int(os.environ.get("BENCH_ROUND_TRIPS", "300"))
WORKERS = {"bench-live": "auto", "bench-quiet": "off"}


def main() -> None:
    """Start both workers, alternate round trips between them, print medians and ratios."""
    from sqlalchemy import create_engine, text

    name = f"attune_bench_streams_{os.getpid()}"
    admin = create_engine(f"{PG_ADMIN}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    env = {
        **os.environ,
        "ATTUNE_DATABASE_URL": f"{PG_ADMIN}/{name}",
        "ATTUNE_BROKER_URL": BROKER_URL,
        "ATTUNE_PACKS_DIR": str(ROOT / "packs"),
    }
    os.environ.update(env)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        bin_dir = Path(sys.executable).parent
        subprocess.run([bin_dir / "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True)
        subprocess.run([bin_dir / "attune", "packs", "load"], cwd=ROOT, env=env, check=True)
        for worker, live in WORKERS.items():
            worker_env = {**env, "ATTUNE_WORKER_NAME": worker, "ATTUNE_LIVE_OUTPUT": live}
            workers.append(_celery("attune", f"{worker}@localhost", worker_env))
        _measure()
        _measure_http(env)
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            process.wait(30)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _measure() -> None:
    import attune
    from attune.errors import AttuneError

    def call(action: str, worker: str) -> None:
        record = attune.execute(
            action, {"message": "hi"} if action == "core.echo" else {}, worker=worker
        ).wait(10)
        assert record.succeeded, record

    def ready(worker: str) -> bool:
        try:
            call("core.noop", worker)
        except AttuneError:
            return False
        return True

    for worker in WORKERS:
        _until(lambda worker=worker: ready(worker), 60, f"{worker} registering")
    for action in ("core.echo", "core.noop"):
        for _ in range(20):
            for worker in WORKERS:
                call(action, worker)
        times: dict[str, list[float]] = {worker: [] for worker in WORKERS}
        for turn in range(ROUND_TRIPS):  # alternate which worker goes first
            for worker in list(WORKERS)[:: 1 if turn % 2 else -1]:
                times[worker].append(_timed(functools.partial(call, action, worker)))
        on, off = (statistics.median(times[worker]) * 1e3 for worker in WORKERS)
        print(
            f"{action} round trip (median of {ROUND_TRIPS}): live output on {on:.2f} ms, "
            f"off {off:.2f} ms, ratio {on / off:.3f} (goal <= 1.03)"
        )


def _measure_http(env: dict[str, str]) -> None:
    import attune
    from attune.access.keys import Scope, create_key
    from attune.worker.app import resources

    with resources.database.session_scope() as session:
        token = create_key(session, "bench-http", Scope.OPERATE)
    port = 19765 + os.getpid() % 1000
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("attune")), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    headers = {"Authorization": f"Bearer {token}"}
    body = {"action": "core.echo", "parameters": {"message": "hi"}, "worker": "bench-live"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:

            def answers() -> bool:
                try:
                    return client.get("/api/v1/health").status_code == 200
                except httpx.HTTPError:
                    return False

            _until(answers, 60, "attune serve answering")

            def over_http() -> None:
                started = client.post("/api/v1/executions", json=body)
                assert started.status_code == 201, started.text
                path = f"/api/v1/executions/{started.json()['id']}/output/stream"
                with client.stream("GET", path) as stream:
                    lines = stream.iter_lines()
                    for line in lines:
                        if line == "event: end":
                            # Read on to the response's end (the server closes it right after
                            # `end`), as a client following it would: a response left unread
                            # costs its keep-alive connection, and the next POST a new one.
                            for _rest in lines:
                                pass
                            return
                raise AssertionError(f"{path} closed before its end event")

            def in_python() -> None:
                assert (
                    attune.execute("core.echo", {"message": "hi"}, worker="bench-live")
                    .wait(10)
                    .succeeded
                )

            for _ in range(20):
                over_http()
                in_python()
            times: tuple[list[float], list[float]] = ([], [])
            for turn in range(ROUND_TRIPS):  # alternate which goes first
                pair = [(over_http, times[0]), (in_python, times[1])][:: 1 if turn % 2 else -1]
                for call, kept in pair:
                    kept.append(_timed(call))
            http, python = (statistics.median(kept) * 1e3 for kept in times)
            print(
                f"POST /executions + its output stream to end (median of {ROUND_TRIPS}): "
                f"{http:.2f} ms, execute().wait() {python:.2f} ms, ratio {http / python:.3f}"
                " (goal <= 1.3)"
            )
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
