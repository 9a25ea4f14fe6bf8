"""The baseline of the executions benchmark: what a user would write instead of attune.

A bare Celery task that runs ``sh -c 'echo hi'`` with captured output and returns it, with
Redis as broker and result backend, or RabbitMQ as broker and ``rpc://`` as result backend.
"""

from __future__ import annotations

import os
import subprocess

from celery import Celery

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/15")
BACKEND_URL = os.environ.get("BENCH_BACKEND_URL", BROKER_URL)

app = Celery("baseline", broker=BROKER_URL, backend=BACKEND_URL)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="bench.baseline",
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.spawn")
def spawn() -> str:
    """Run a trivial shell command and return its output."""
    return subprocess.run(
        ["sh", "-c", "echo hi"], capture_output=True, text=True, check=True
    ).stdout
