"""Benchmark: 1,000 subscribers of ``GET /api/v1/stream`` on one ``attune serve``, each receiving
every transition; the delivery latency reported (issue 16: p99 reported, no goal).

Run by ``make bench``. On its own PostgreSQL database (:mod:`bench_api` builds it, with no
executions, and drops it afterwards) and a real ``attune serve``, this process opens
:data:`SUBSCRIBERS` SSE connections (one asyncio loop, httpx + httpx-sse), then makes
:data:`TRANSITIONS` transitions one after the other: each an ``INSERT`` of an execution,
committed on a psycopg connection of its own, whose trigger notifies the server. The latency
of a delivery is from just before the commit to when a subscriber has parsed the event, on
this process's clock; the next transition waits until every subscriber has the previous one.
Every subscriber must receive every transition exactly once, with no ``reset``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import time
from collections.abc import Callable

import httpx
import psycopg
from bench_api import filled_database, load, served
from httpx_sse import aconnect_sse

SUBSCRIBERS = int(os.environ.get("BENCH_SUBSCRIBERS", "1000"))
TRANSITIONS = int(os.environ.get("BENCH_TRANSITIONS", "30"))
WAIT_S = 30.0
_INSERT = (
    "INSERT INTO execution (action_ref, parameters, status, stdout, stderr, stdout_truncated,"
    " stderr_truncated, requested_at)"
    " VALUES ('core.echo', '{}', 'requested', '', '', false, false, now()) RETURNING id"
)


class Board:
    """When each subscriber received each execution's event, and what went wrong."""

    def __init__(self) -> None:
        self.received: dict[int, list[float]] = {}
        self.connected = 0
        self.resets = 0
        self.changed = asyncio.Event()

    def got(self, execution_id: int) -> None:
        """A subscriber parsed the event of ``execution_id`` now."""
        self.received.setdefault(execution_id, []).append(time.perf_counter())
        self.changed.set()

    async def until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``done()`` holds (checked on every change), at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not done():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                return False
        return True


async def subscribe(client: httpx.AsyncClient, board: Board) -> None:
    """One subscriber: follow the execution events until cancelled."""
    async with aconnect_sse(client, "GET", "/api/v1/stream", params={"events": "execution"}) as sse:
        sse.response.raise_for_status()
        board.connected += 1
        board.changed.set()
        async for event in sse.aiter_sse():
            if event.event == "reset":
                board.resets += 1
            elif event.event == "execution":
                board.got(int(json.loads(event.data)["id"]))


async def bench(url: str, base_url: str, token: str) -> None:
    """Connect every subscriber, make the transitions, print the latency percentiles."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    headers = {"Authorization": f"Bearer {token}"}
    board = Board()
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=httpx.Timeout(60)
    ) as client:
        tasks = [asyncio.create_task(subscribe(client, board)) for _ in range(SUBSCRIBERS)]
        started = time.perf_counter()
        if not await board.until(lambda: board.connected == SUBSCRIBERS, 120):
            raise SystemExit(f"only {board.connected} of {SUBSCRIBERS} subscribers connected")
        print(f"{SUBSCRIBERS} subscribers connected in {time.perf_counter() - started:.1f} s")
        latencies: list[float] = []
        missing = 0
        conninfo = url.replace("postgresql+psycopg", "postgresql")
        async with await psycopg.AsyncConnection.connect(conninfo) as writer:
            for _ in range(TRANSITIONS):
                cursor = await writer.execute(_INSERT)
                row = await cursor.fetchone()
                assert row is not None
                execution_id = int(row[0])
                committed = time.perf_counter()
                await writer.commit()
                arrived = board.received.setdefault(execution_id, [])
                await board.until(lambda a=arrived: len(a) >= SUBSCRIBERS, WAIT_S)
                missing += SUBSCRIBERS - len(arrived)
                latencies += [moment - committed for moment in arrived]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    extra = sum(max(len(times) - SUBSCRIBERS, 0) for times in board.received.values())
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"  {TRANSITIONS} transitions x {SUBSCRIBERS} subscribers: "
        f"p50 {cuts[49] * 1000:.1f} ms  p90 {cuts[89] * 1000:.1f} ms  "
        f"p99 {cuts[98] * 1000:.1f} ms  max {max(latencies) * 1000:.1f} ms"
    )
    print(f"  missing {missing}, doubled {extra}, resets {board.resets} (all must be 0)")


def main() -> int:
    """Raise the open-files limit for the connections, set up, run, report the load."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * SUBSCRIBERS + 256)), hard))
    with filled_database("events", rows=0) as (url, token), served(url, token) as client:
        print(f"load before: {load()}")
        asyncio.run(bench(url, str(client.base_url), token))
        print(f"load after:  {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
