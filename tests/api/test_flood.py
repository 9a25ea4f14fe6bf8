"""A 1 GiB flood of stdout followed live: the API process's memory and the execution's Redis
stream stay bounded by the output cap (``ATTUNE_MAX_OUTPUT_BYTES``), whatever the action prints.

On PostgreSQL + Redis with a real worker and a real ``attune serve`` (the fixture of
:mod:`tests.api.test_streams`)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis

from attune.executions.liveoutput import stream_key
from attune.settings import Settings
from tests.api.test_streams import Events, Served, ended, get, joined, served, start

__all__ = ["served"]  # the fixture, imported for this module

pytestmark = pytest.mark.slow

FLOOD_BYTES = 1024**3
BOUND_BYTES = 100 * 1024 * 1024
"""How much the API process may grow and the Redis stream may hold: far below the flood."""


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class Peaks:
    """The largest API RSS and Redis stream size seen, sampled by a thread until stopped."""

    def __init__(self, pid: int, client: redis.Redis, key: str) -> None:
        self.rss = self.stream = 0
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.05):
                self.rss = max(self.rss, rss_bytes(pid))
                self.stream = max(self.stream, int(client.memory_usage(key) or 0))

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(10)


@pytest.mark.parametrize("served", ["postgres"], indirect=True)  # the Redis backend
def test_a_1_gib_flood_keeps_the_api_and_redis_bounded(served: Served) -> None:
    cap = Settings().max_output_bytes
    pid = served.server.process.pid
    before = rss_bytes(pid)
    client = redis.Redis.from_url(served.env["ATTUNE_BROKER_URL"])
    command = f"yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c {FLOOD_BYTES}"
    execution_id = start(served, "core.local", cmd=command)
    peaks = Peaks(pid, client, stream_key(execution_id))
    output = Events(served, f"/api/v1/executions/{execution_id}/output/stream")
    try:
        output.wait_for(ended, "the end of the flood's output")
    finally:
        output.close()
        peaks.stop()
        client.close()
    record = get(served, f"/api/v1/executions/{execution_id}").json()
    assert record["status"] == "succeeded", record
    assert record["stdout_truncated"] is True
    size = record["stdout_size"]
    tail = get(served, f"/api/v1/executions/{execution_id}/output/stdout?offset={size - 200}")
    assert tail.text.endswith(f" {FLOOD_BYTES - cap} more bytes dropped]\n")  # all 1 GiB read
    streamed = joined(output.items, "stdout")  # offsets checked: nothing lost or doubled
    assert len(streamed) == size
    head = get(served, f"/api/v1/executions/{execution_id}/output/stdout?limit=1048576")
    assert streamed.startswith(head.text)
    assert [e.event for e in output.items][-2:] == ["truncated", "end"]
    assert peaks.rss - before < BOUND_BYTES, f"API RSS grew {(peaks.rss - before) >> 20} MiB"
    assert 0 < peaks.stream < BOUND_BYTES, f"the Redis stream held {peaks.stream >> 20} MiB"
