"""Broker: the Redis transport attune's workers and callers use, kombu's with two changes.

kombu's Redis channel builds a new redis client for every command it sends outside its
event loop (each publish, each acknowledgement and reservation of a message), and a redis-py
client sets up ~170 response callbacks when it is built. This channel keeps one such client
per connection pool instead: a redis client is safe to share, since every command takes its
own connection from the pool.

Its QoS keeps kombu's record of unacknowledged messages (same keys, same layout, restored by
kombu's own code) in fewer commands, all of them in the worker's event loop: a delivered message
is recorded by one script call instead of MULTI, ZADD, HSET, EXEC, and an acknowledgement is
sent without waiting for a reply. A lost acknowledgement only means that the message is
delivered again after the visibility timeout, as after a worker's death; attune's tasks take
that in their stride (an execution is claimed at most once).
"""

from __future__ import annotations

import json
from time import time
from typing import Any

from kombu.transport import redis, virtual
from redis.commands.core import Script

_REMEMBER = b"""
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
"""
"""Record a delivered message: its tag in the index by time, the message under its tag."""


class QoS(redis.QoS):
    """kombu's Redis QoS with one call per delivery and acknowledgements not waited on."""

    def append(self, message: Any, delivery_tag: str) -> None:
        """Record ``message`` as delivered and unacknowledged, as kombu does."""
        delivery = message.delivery_info
        record = json.dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.channel.conn_or_acquire() as client:
            self.channel.remember(
                keys=[self.unacked_index_key, self.unacked_key],
                args=[time(), delivery_tag, record],
                client=client,
            )
        virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: str) -> None:
        """Forget the message in Redis (no reply asked for) and in this channel."""
        pool = self.channel.pool
        connection = pool.get_connection()
        try:
            # CLIENT REPLY SKIP: Redis sends no reply to the command that follows it.
            connection.send_packed_command(
                connection.pack_commands(
                    [
                        ("CLIENT", "REPLY", "SKIP"),
                        ("ZREM", self.unacked_index_key, delivery_tag),
                        ("CLIENT", "REPLY", "SKIP"),
                        ("HDEL", self.unacked_key, delivery_tag),
                    ]
                )
            )
        finally:
            pool.release(connection)
        virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]


class Channel(redis.Channel):
    """kombu's Redis channel, reusing its synchronous client, with :class:`QoS`."""

    QoS = QoS
    _shared_client: Any = None
    remember = Script(None, _REMEMBER)  # type: ignore[arg-type]  # each call names its client

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        if self._shared_client is None or self._shared_client.connection_pool is not pool:
            self._shared_client = super()._create_client()  # type: ignore[no-untyped-call]
        return self._shared_client


class Transport(redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


TRANSPORT = f"{__name__}:{Transport.__name__}"
"""What ``broker_transport`` names for a ``redis://`` broker URL."""
