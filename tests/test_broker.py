"""attune's Redis transport against the real Redis: kombu's behaviour, one client per pool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Connection

from attune.broker import TRANSPORT, Channel, Transport

ROOT = Path(__file__).resolve().parent.parent


def test_messages_go_through_and_one_client_serves_every_command(redis_url: str) -> None:
    with Connection(redis_url, transport=TRANSPORT) as connection:
        assert isinstance(connection.transport, Transport)
        queue = connection.SimpleQueue("attune-test-broker")
        try:
            queue.put({"n": 1})
            queue.put({"n": 2})
            received = [queue.get(timeout=5), queue.get(timeout=5)]
            for message in received:
                message.ack()
            channel = queue.channel

            assert [message.payload for message in received] == [{"n": 1}, {"n": 2}]
            assert isinstance(channel, Channel)
            assert channel._create_client() is channel._create_client()
            assert channel._create_client(asynchronous=True) is not channel._create_client()
        finally:
            queue.clear()
            queue.close()


def test_a_new_pool_gets_a_new_client(redis_url: str) -> None:
    with Connection(redis_url, transport=TRANSPORT) as connection:
        channel = connection.default_channel
        before = channel._create_client()

        channel._pool = None  # what kombu does when it drops the channel's connections

        after = channel._create_client()
        assert after is not before
        assert after.connection_pool is channel.pool
        assert after.ping()


@pytest.mark.parametrize(
    ("broker_url", "transport"), [("redis://127.0.0.1:6379/0", TRANSPORT), ("memory://", "None")]
)
def test_celeryconfig_names_it_for_a_redis_broker_only(broker_url: str, transport: str) -> None:
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import celeryconfig as c; print(getattr(c, 'broker_transport', None))",
        ],
        cwd=ROOT,
        env={**os.environ, "ATTUNE_BROKER_URL": broker_url},
        capture_output=True,
        text=True,
        check=True,
    )

    assert shown.stdout.strip() == transport
