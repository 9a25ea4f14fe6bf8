"""What the benchmarks share: attune workers started as ``celery`` processes, and waiting."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def workers(
    env: Mapping[str, str],
    nodes: Sequence[str],
    concurrency: int,
    node_env: Callable[[int], Mapping[str, str]] = lambda _n: {},
) -> list[subprocess.Popen[bytes]]:
    """``celery -A attune worker`` per node (``name@host``, its worker named ``name``), with
    ``node_env(n)`` added to the n-th one's environment."""
    celery = str(Path(sys.executable).with_name("celery"))
    log_level = os.environ.get("BENCH_LOG", "warning")
    common = ["-c", str(concurrency), "--without-mingle", "--without-gossip", "-l", log_level]
    return [
        subprocess.Popen(
            [celery, "-A", "attune", "worker", "-n", node, *common],
            cwd=ROOT,
            env={**env, "ATTUNE_WORKER_NAME": node.partition("@")[0], **node_env(n)},
        )
        for n, node in enumerate(nodes)
    ]


def stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """Stop the processes warmly and wait for them."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(60)


def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until it holds; after ``timeout_s`` the benchmark ends naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark: {what} did not happen within {timeout_s} s")
        time.sleep(0.05)


PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432"


@contextmanager
def deployment(
    name: str, broker_url: str, write_packs: Callable[[Path], None]
) -> Iterator[dict[str, str]]:
    """A PostgreSQL database ``name`` of its own (migrated, dropped at the end), the Redis
    database of ``broker_url`` flushed, and the packs ``write_packs`` writes loaded; yields
    the environment (also set in this process's) that workers and callers use."""
    import redis
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{PG_ADMIN}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    redis.Redis.from_url(broker_url).flushdb()
    packs_dir = Path(tempfile.mkdtemp(prefix="attune-bench-"))
    write_packs(packs_dir)
    env = {
        **os.environ,
        "ATTUNE_DATABASE_URL": f"{PG_ADMIN}/{name}",
        "ATTUNE_BROKER_URL": broker_url,
        "ATTUNE_PACKS_DIR": str(packs_dir),
    }
    os.environ.update(env)
    try:
        bin_dir = Path(sys.executable).parent
        subprocess.run([bin_dir / "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True)
        subprocess.run([bin_dir / "attune", "packs", "load"], cwd=ROOT, env=env, check=True)
        yield env
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
