"""Broker: the Redis transport attune's workers and callers use, kombu's with one change.

kombu's Redis channel builds a new redis client for every command it sends outside its
event loop (each publish, each acknowledgement and reservation of a message), and a redis-py
client sets up ~170 response callbacks when it is built. This channel keeps one such client
per connection pool instead: a redis client is safe to share, since every command takes its
own connection from the pool.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis


class Channel(redis.Channel):
    """kombu's Redis channel, reusing its synchronous client."""

    _shared_client: Any = None

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
