"""What the benchmarks share: attune workers started as ``celery`` processes, and waiting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
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
