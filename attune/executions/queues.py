"""Queue names: one per runtime, one per worker, and the sweep queue every worker consumes."""

from __future__ import annotations

SWEEP_QUEUE = "attune.sweep"
"""The queue of a sent ``attune.sweep_workers`` task; every worker consumes it (beat sweeps in
its own process and sends nothing here)."""


def runtime_queue(runtime: str) -> str:
    """The queue served by every worker that runs ``runtime`` actions."""
    return f"attune.{runtime}"


WORKER_QUEUE_PREFIX = "attune.worker."
"""What every worker's own queue name starts with."""


def worker_queue(worker_name: str) -> str:
    """The queue only the named worker consumes (``execute(..., worker=NAME)``)."""
    return f"{WORKER_QUEUE_PREFIX}{worker_name}"


def is_worker_queue(name: str) -> bool:
    """True for a worker's own queue (``attune.worker.<name>``), which expires once unused."""
    return name.startswith(WORKER_QUEUE_PREFIX) and len(name) > len(WORKER_QUEUE_PREFIX)


def worker_queues(worker_name: str, runtimes: tuple[str, ...]) -> tuple[str, ...]:
    """Every queue a worker consumes: its runtimes', its own, and the sweep queue."""
    return (
        *(runtime_queue(runtime) for runtime in runtimes),
        worker_queue(worker_name),
        SWEEP_QUEUE,
    )
