"""The two brokers end-to-end tests run on: Redis and RabbitMQ, each reached the same way.

A :class:`Broker` is a URL of this test run's own (a leased Redis database number, a RabbitMQ
vhost created for the run) plus what tests need beyond Celery: emptying it between tests,
looking at a queue, and capturing the bytes of every message published while a block runs.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
from amqp.exceptions import NotFound
from kombu import Connection, Exchange, Queue, pools

from attune.executions.queues import SWEEP_QUEUE, runtime_queue
from attune.setting_values import RUNTIMES

BROKERS = ("redis", "rabbitmq")
"""The brokers an end-to-end test runs on unless marked ``@pytest.mark.brokers(...)``."""

SHARED_QUEUES = (*(runtime_queue(runtime) for runtime in RUNTIMES), SWEEP_QUEUE, "attune.default")
"""The queues every test's workers share (each worker's own queue comes on top)."""


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl`` (the server's own CLI) and return its output; raise on failure."""
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


@dataclass(frozen=True)
class Broker:
    """One broker of this test run: ``kind`` is ``redis`` or ``rabbitmq``."""

    kind: str
    url: str

    @property
    def vhost(self) -> str:
        """The RabbitMQ virtual host of this run (RabbitMQ only)."""
        return urlsplit(self.url).path.lstrip("/")

    def reset(self, queues: Iterable[str] = ()) -> None:
        """Drop every message: flush the Redis database, or delete the shared queues and
        ``queues`` on RabbitMQ (a vhost lives the whole run; these are what tests create)."""
        if self.kind == "redis":
            client = redis.Redis.from_url(self.url)
            client.flushdb()
            client.close()
            return
        with Connection(self.url) as connection:
            channel = connection.default_channel
            for name in (*SHARED_QUEUES, *queues):
                channel.queue_delete(name)
        pools.reset()  # pooled connections remember the queues they declared, deleted now

    def queue_names(self) -> set[str]:
        """The queues of this run's RabbitMQ vhost, asked of ``rabbitmqctl``: a declare, even
        a passive one, would count as a use and hold off the queue's expiry."""
        listed = rabbitmqctl("list_queues", "-q", "--no-table-headers", "-p", self.vhost, "name")
        return set(listed.split())

    def message_count(self, queue: str) -> int:
        """Messages ready in ``queue`` (0 when it does not exist)."""
        if self.kind == "redis":
            client = redis.Redis.from_url(self.url)
            try:
                return int(client.llen(queue))
            finally:
                client.close()
        with Connection(self.url) as connection:
            try:
                return int(connection.channel().queue_declare(queue, passive=True).message_count)
            except NotFound:
                return 0

    @contextlib.contextmanager
    def published(self) -> Iterator[list[bytes]]:
        """Every byte the broker is sent while the block runs: Redis's MONITOR feed, or on
        RabbitMQ each published message (body and headers) through the firehose tracer."""
        seen: list[bytes] = []
        capture = _monitor if self.kind == "redis" else _firehose
        with capture(self, seen):
            yield seen


@contextlib.contextmanager
def _monitor(broker: Broker, seen: list[bytes]) -> Iterator[None]:
    client = redis.Redis.from_url(broker.url)
    stop = threading.Event()

    def watch() -> None:
        with client.monitor() as monitor:
            for command in monitor.listen():
                seen.append(str(command["command"]).encode())
                if stop.is_set():
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.2)  # MONITOR is in place
    try:
        yield
    finally:
        stop.set()
        redis.Redis.from_url(broker.url).ping()  # wakes the monitor so it sees stop
        watcher.join(5)
        client.close()


@contextlib.contextmanager
def _firehose(broker: Broker, seen: list[bytes]) -> Iterator[None]:
    trace = Exchange("amq.rabbitmq.trace", type="topic", passive=True)
    with Connection(broker.url) as connection:
        tap = Queue("attune-test-firehose", trace, "publish.#", exclusive=True)
        channel = connection.channel()
        tap = tap(channel)
        tap.declare()
        rabbitmqctl("trace_on", "-p", broker.vhost)
        try:
            yield
        finally:
            rabbitmqctl("trace_off", "-p", broker.vhost)
            while (message := tap.get(no_ack=True)) is not None:
                seen.append(message.body + repr(message.headers).encode())
