"""Broker: the Redis transport attune's workers and callers use, kombu's with two changes.

kombu's Redis channel builds a new redis client for every command it sends outside its
event loop (each publish, each acknowledgement and reservation of a message), and a redis-py
client sets up ~170 response callbacks when it is built. This channel keeps one such client
per connection pool instead: a redis client is safe to share, since every command takes its
own connection from the pool.

Its QoS keeps kombu's record of unacknowledged messages (same keys, same layout, restored by
kombu's own code) without waiting on Redis: a delivered message is recorded, and an
acknowledged one forgotten, by one script each, sent on a connection of the channel's own with
no reply asked for (kombu waits for a MULTI/EXEC transaction each time, in the worker's event
loop). Redis runs a connection's commands in order, so a message is still recorded before it
is forgotten. Should a connection drop with a command unsent, or Redis refuse one (its answers
are not read), a lost record means what it means with kombu when the worker dies between taking
a message and recording it, and a lost acknowledgement means the message is delivered again
after the visibility timeout, as after a worker's death; attune's tasks take that in their
stride (an execution is claimed at most once).
"""

from __future__ import annotations

import json
import threading
from time import time
from typing import Any

from kombu.transport import redis, virtual
from redis.exceptions import ConnectionError as RedisConnectionError

_REMEMBER = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
"""
"""Record a delivered message: its tag in the index by time, the message under its tag."""

_FORGET = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
"""
"""Forget an acknowledged message."""


class QoS(redis.QoS):
    """kombu's Redis QoS, recording and forgetting messages without waiting on Redis."""

    def append(self, message: Any, delivery_tag: str) -> None:
        """Record ``message`` as delivered and unacknowledged, as kombu does."""
        delivery = message.delivery_info
        record = json.dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        keys = (self.unacked_index_key, self.unacked_key)
        self.channel.send_unanswered(("EVAL", _REMEMBER, 2, *keys, time(), delivery_tag, record))
        virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: str) -> None:
        """Forget the message in Redis and in this channel."""
        keys = (self.unacked_index_key, self.unacked_key)
        self.channel.send_unanswered(("EVAL", _FORGET, 2, *keys, delivery_tag))
        virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]


class Channel(redis.Channel):
    """kombu's Redis channel, reusing its synchronous client, with :class:`QoS`."""

    QoS = QoS
    _shared_client: Any = None
    _unanswered: Any = None  # the connection send_unanswered uses, made from _unanswered_pool
    _unanswered_pool: Any = None
    _unanswered_lock = threading.Lock()  # acks may come from a thread pool's threads

    def send_unanswered(self, *commands: tuple[Any, ...]) -> None:
        """Send ``commands`` asking Redis for no reply (each after ``CLIENT REPLY SKIP``).

        A connection error is raised as redis-py raises it; the next call reconnects. Used
        from the event loop and, with a thread pool, from its threads: one at a time.
        """
        skipping = [part for command in commands for part in (_SKIP, command)]
        with self._unanswered_lock:
            pool = self._live_pool()
            if self._unanswered is None or self._unanswered_pool is not pool:
                self._unanswered, self._unanswered_pool = pool.make_connection(), pool
            connection = self._unanswered
            try:  # nothing is ever to be read: if something is, the server hung up
                stale = connection.can_read()
            except RedisConnectionError:
                stale = True
            if stale:
                connection.disconnect()  # the send below connects afresh
            connection.send_packed_command(connection.pack_commands(skipping))

    def close(self) -> None:
        """Close kombu's connections (restoring what was not acknowledged), then its own."""
        super().close()  # type: ignore[no-untyped-call]
        with self._unanswered_lock:
            if self._unanswered is not None:
                self._unanswered.disconnect()  # what was sent on it is still delivered
                self._unanswered = None

    def _live_pool(self) -> Any:
        """The channel's connection pool; a connection error once the connection is closed.

        Closing a channel drops its pool, and closing the connection the details to build one;
        after a broker restart Celery closes the old connection, whose channel then still
        restores its unacknowledged messages and the hub still acknowledges finished ones.
        kombu would rebuild the pool from details that are gone (an AttributeError, which
        ends the worker); a connection error is what Celery expects there, and handles.
        What was not restored is left recorded in Redis, restored after the visibility
        timeout by kombu.
        """
        if self._pool is None and getattr(self.connection, "client", None) is None:
            raise RedisConnectionError("the broker connection is closed")
        return self.pool

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self._live_pool()
        if self._shared_client is None or self._shared_client.connection_pool is not pool:
            self._shared_client = super()._create_client()  # type: ignore[no-untyped-call]
        return self._shared_client


_SKIP = ("CLIENT", "REPLY", "SKIP")
"""Redis sends no reply to the command that follows this one."""


class Transport(redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def restore_unacknowledged(channel: Any) -> int:
    """Put back in their queues all messages Redis records as delivered and unacknowledged
    (by any worker); how many. Works with kombu's Redis channel and with :class:`Channel`.

    A worker whose Redis connection dropped cannot restore what it had taken and not yet run
    (Redis is gone by then), and kombu restores such messages only once they are older than
    the visibility timeout (an hour). A worker calls this when its connection is back: the
    messages of executions still running elsewhere are delivered again and refused by the
    claim (an execution runs at most once), the others run now.
    """
    qos = channel.qos
    with channel.conn_or_acquire() as client:
        tags = client.zrange(qos.unacked_index_key, 0, -1)
        for tag in tags:
            qos.restore_by_tag(tag.decode() if isinstance(tag, bytes) else tag, client)
    return len(tags)


TRANSPORT = f"{__name__}:{Transport.__name__}"
"""What ``broker_transport`` names for a ``redis://`` broker URL."""
