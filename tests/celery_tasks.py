"""Test-only Celery tasks, loaded into real workers with ``--include tests.celery_tasks``.

They stand in for long actions until the execution path exists: one burns CPU, one sleeps;
both touch marker files so a test knows when they started and finished.
"""

from __future__ import annotations

import time
from pathlib import Path

from attune.worker.app import app


@app.task(name="tests.burn_cpu")
def burn_cpu(seconds: float, marker_dir: str) -> int:
    """Spin on the CPU for ``seconds`` (marking start and end in ``marker_dir``)."""
    markers = Path(marker_dir)
    token = f"{time.monotonic_ns()}"
    (markers / f"started-{token}").touch()
    deadline = time.monotonic() + seconds
    spins = 0
    while time.monotonic() < deadline:
        spins += sum(i * i for i in range(1000)) & 1
    (markers / f"finished-{token}").touch()
    return spins


@app.task(name="tests.sleep")
def sleep(seconds: float, marker_dir: str) -> None:
    """Sleep ``seconds`` (marking start and end in ``marker_dir``)."""
    markers = Path(marker_dir)
    token = f"{time.monotonic_ns()}"
    (markers / f"started-{token}").touch()
    time.sleep(seconds)
    (markers / f"finished-{token}").touch()
