"""The two brokers of a benchmark run, attune's and its baseline's (bench_executions)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def brokers(kind: str, rabbitmq: str) -> Iterator[tuple[str, str]]:
    """Two brokers of this run's own, attune's and the baseline's: Redis database numbers
    leased as the test suite leases them, or RabbitMQ vhosts made for the run."""
    if kind == "redis":
        import redis

        leases = redis.Redis(port=6379)
        owner = f"bench:{os.getpid()}"
        taken: list[str] = []
        for key in (f"attune-test:redis-db:{n}" for n in range(1, 16)):
            if len(taken) < 2 and leases.set(key, owner, nx=True, ex=3600):
                taken.append(key)
        if len(taken) < 2:
            if taken:
                leases.delete(*taken)
            raise SystemExit("benchmark: no two free Redis databases to lease")
        urls = [f"redis://127.0.0.1:6379/{key.rsplit(':', 1)[1]}" for key in taken]
        for url in urls:
            redis.Redis.from_url(url).flushdb()
        try:
            yield urls[0], urls[1]
        finally:
            if taken:
                leases.delete(*taken)
        return
    vhosts = [f"attune-bench-{os.getpid()}", f"attune-bench-baseline-{os.getpid()}"]
    for vhost in vhosts:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"{rabbitmq}/{vhosts[0]}", f"{rabbitmq}/{vhosts[1]}"
    finally:
        for vhost in vhosts:
            _rabbitmqctl("delete_vhost", vhost)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True)
