"""Live output: where a running action's output goes until SQL stores it once, at the end.

Two backends behind one port. With a Redis broker, a Redis stream per execution
(``attune:out:<id>``, ``MAXLEN ~ MAX_ENTRIES``, expiring ``ENDED_EXPIRE_S`` after the end),
written by one thread per process so the capture loop never waits on Redis. On the embedded
default, an in-process ring (the embedded worker shares the API's process). Elsewhere (a
RabbitMQ broker without ``ATTUNE_LIVE_OUTPUT=redis://…``) there is none: the stream says
``live output unavailable`` and serves the stored output at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis
import redis.asyncio

from attune.settings import Settings

MAX_ENTRIES = 100_000
"""Approximate length cap of one execution's Redis stream."""
RUNNING_EXPIRE_S = 86_400
"""A stream whose writer died before the end still expires after this."""
ENDED_EXPIRE_S = 600
"""How long a stream stays in Redis after its execution ended."""
KEPT_ENDED = 64
"""How many ended executions the in-process ring keeps."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """One entry of a live stream: ``stdout``/``stderr`` text at ``offset``, ``truncated``
    (``text`` names the stream), or ``end``."""

    kind: str
    offset: int = 0
    text: str = ""


@dataclass(frozen=True)
class Batch:
    """What one read returned: the chunks after the cursor, the next cursor, and whether the
    backend can have live output of that execution at all."""

    chunks: tuple[Chunk, ...]
    cursor: str
    available: bool = True


class Sink(Protocol):
    """The live sink of one execution (a :class:`attune.runtimes.livefeed.LiveSink`)."""

    def publish(self, stream: str, offset: int, text: str) -> None:
        """Output text of ``stream`` at character ``offset``."""

    def truncate(self, stream: str) -> None:
        """``stream`` was capped."""

    def end(self) -> None:
        """The execution's result is stored: nothing more comes."""


class LiveOutput(Protocol):
    """A backend: sinks for the worker, reads for the API."""

    def sink(self, execution_id: int) -> Sink:
        """The sink of one execution that is about to run in this process."""

    async def read(self, execution_id: int, cursor: str, timeout_s: float) -> Batch:
        """Chunks after ``cursor`` (``"0"`` at first), waiting up to ``timeout_s`` for one."""


_Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Event]


@dataclass
class _Ring:
    chunks: list[Chunk] = field(default_factory=list)
    waiters: list[_Waiter] = field(default_factory=list)


class MemoryLive:
    """The in-process ring of the embedded default."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rings: OrderedDict[int, _Ring] = OrderedDict()
        self._early: dict[int, list[_Waiter]] = {}  # readers of executions not started yet

    def sink(self, execution_id: int) -> Sink:
        """Registers the execution: a reader of it no longer hears "unavailable"."""
        with self._lock:
            self._rings[execution_id] = _Ring()
            while len(self._rings) > KEPT_ENDED and next(iter(self._rings)) != execution_id:
                self._rings.popitem(last=False)
            early = self._early.pop(execution_id, [])
        for loop, event in early:
            loop.call_soon_threadsafe(event.set)
        return _MemorySink(self, execution_id)

    def append(self, execution_id: int, chunk: Chunk) -> None:
        """Add ``chunk`` to the execution's ring and wake its readers."""
        with self._lock:
            ring = self._rings.get(execution_id)
            if ring is None:
                return
            ring.chunks.append(chunk)
            waiters, ring.waiters = ring.waiters, []
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    async def read(self, execution_id: int, cursor: str, timeout_s: float) -> Batch:
        """Chunks past index ``cursor`` of the ring; unavailable while not registered."""
        seen = int(cursor)
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            ring = self._rings.get(execution_id)
            if ring is None:
                self._early.setdefault(execution_id, []).append(waiter)
            elif len(ring.chunks) <= seen:
                ring.waiters.append(waiter)
            else:
                waiter[1].set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter[1].wait(), timeout_s)
        finally:  # also when the reader gave up waiting (canceled)
            self._forget_early(execution_id, waiter)
        with self._lock:
            ring = self._rings.get(execution_id)
            if ring is None:
                return Batch((), cursor, available=False)
            chunks = tuple(ring.chunks[seen:])
        return Batch(chunks, str(seen + len(chunks)))

    def _forget_early(self, execution_id: int, waiter: _Waiter) -> None:
        with self._lock:
            early = self._early.get(execution_id, [])
            if waiter in early:
                early.remove(waiter)
                if not early:
                    del self._early[execution_id]


@dataclass
class _MemorySink:
    live: MemoryLive
    execution_id: int

    def publish(self, stream: str, offset: int, text: str) -> None:
        self.live.append(self.execution_id, Chunk(stream, offset, text))

    def truncate(self, stream: str) -> None:
        self.live.append(self.execution_id, Chunk("truncated", 0, stream))

    def end(self) -> None:
        self.live.append(self.execution_id, Chunk("end"))


def stream_key(execution_id: int) -> str:
    """The Redis key of an execution's live stream."""
    return f"attune:out:{execution_id}"


class RedisLive:
    """Redis streams; writes go through one thread per process and are never awaited."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._pid = 0
        self._lock = threading.Lock()
        self._reader: redis.asyncio.Redis | None = None

    def sink(self, execution_id: int) -> Sink:
        """A sink that writes nothing until the action prints."""
        return _RedisSink(self, stream_key(execution_id))

    def send(self, command: str, *args: Any) -> None:
        """Queue one Redis command for the writer thread (started in this process if needed)."""
        if self._pid != os.getpid():  # a forked pool process needs a thread of its own
            with self._lock:
                if self._pid != os.getpid():
                    self._queue = queue.SimpleQueue()
                    threading.Thread(
                        target=self._write, args=(self._queue,), name="attune-live", daemon=True
                    ).start()
                    self._pid = os.getpid()
        self._queue.put((command, args))

    def _write(self, commands: queue.SimpleQueue[tuple[str, Any]]) -> None:
        client = redis.Redis.from_url(self.url)
        failing = False
        while True:
            batch = [commands.get()]
            while not commands.empty() and len(batch) < 512:
                batch.append(commands.get_nowait())
            pipeline = client.pipeline(transaction=False)
            for command, args in batch:
                pipeline.execute_command(command, *args)  # type: ignore[no-untyped-call]
            try:
                pipeline.execute()
                failing = False
            except redis.RedisError as exc:  # live output is ephemeral: SQL has it at the end
                if not failing:
                    log.warning("live output: cannot write to Redis: %s", exc)
                failing = True

    async def read(self, execution_id: int, cursor: str, timeout_s: float) -> Batch:
        """Entries after stream id ``cursor`` (``XREAD BLOCK``)."""
        if self._reader is None:
            self._reader = redis.asyncio.Redis.from_url(self.url)
        start = "0-0" if cursor == "0" else cursor
        found: Any = await self._reader.xread(
            {stream_key(execution_id): start}, count=1000, block=max(1, round(timeout_s * 1000))
        )
        chunks: list[Chunk] = []
        for _key, entries in found or ():
            for entry_id, fields in entries:
                start = entry_id.decode()
                chunks.append(
                    Chunk(fields[b"k"].decode(), int(fields[b"o"]), fields[b"d"].decode())
                )
        return Batch(tuple(chunks), start)


@dataclass
class _RedisSink:
    live: RedisLive
    key: str
    written: bool = False

    def publish(self, stream: str, offset: int, text: str) -> None:
        self._add(stream, offset, text)

    def truncate(self, stream: str) -> None:
        self._add("truncated", 0, stream)

    def end(self) -> None:
        if self.written:  # an action that printed nothing costs no write at all
            self._add("end", 0, "")
            self.live.send("EXPIRE", self.key, ENDED_EXPIRE_S)

    def _add(self, kind: str, offset: int, text: str) -> None:
        if not self.written:
            # An execution runs once, so nothing of its own is there yet: whatever is, is left
            # by another database's execution of the same id (one rebuilt, or reset by tests).
            self.live.send("DEL", self.key)
        fields = ("k", kind, "o", offset, "d", text)
        self.live.send("XADD", self.key, "MAXLEN", "~", MAX_ENTRIES, "*", *fields)
        if not self.written:
            self.written = True
            self.live.send("EXPIRE", self.key, RUNNING_EXPIRE_S)


_memory = MemoryLive()
_redis: dict[str, RedisLive] = {}


def backend(settings: Settings) -> LiveOutput | None:
    """The live output of ``settings.live_output`` (see the README); None when there is none."""
    choice = settings.live_output
    if choice == "off":
        return None
    if choice == "auto":
        if settings.is_embedded:
            return _memory
        if urlsplit(settings.broker_url).scheme not in ("redis", "rediss"):
            return None
        choice = settings.broker_url
    if choice not in _redis:
        _redis[choice] = RedisLive(choice)
    return _redis[choice]
