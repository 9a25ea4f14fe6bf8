"""attune's Redis transport against the real Redis: kombu's behaviour, one client per pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection
from redis.exceptions import ConnectionError as RedisConnectionError

from attune.worker.broker import TRANSPORT, Channel, Transport, restore_unacknowledged
from tests.processes import wait_until

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
    ("broker_url", "chosen", "transport"),
    [
        ("redis://127.0.0.1:6379/0", "", TRANSPORT),
        ("redis://127.0.0.1:6379/0", "attune", TRANSPORT),
        ("redis://127.0.0.1:6379/0", "kombu", "None"),
        ("amqp://guest:guest@127.0.0.1:5672//", "", "None"),
        ("memory://", "", "None"),
    ],
)
def test_celeryconfig_names_it_for_a_redis_broker_when_chosen(
    broker_url: str, chosen: str, transport: str
) -> None:
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import celeryconfig as c; print(getattr(c, 'broker_transport', None))",
        ],
        cwd=ROOT,
        env={**os.environ, "ATTUNE_BROKER_URL": broker_url, "ATTUNE_REDIS_TRANSPORT": chosen},
        capture_output=True,
        text=True,
        check=True,
    )

    assert shown.stdout.strip() == transport


def _unacked(client: redis.Redis, tag: str) -> tuple[Any, Any]:
    """What kombu's QoS keeps of a delivered message: (record, index score)."""
    return client.hget("unacked", tag), client.zscore("unacked_index", tag)


def test_a_delivered_message_is_recorded_as_kombu_records_it_and_forgotten_on_ack(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    with Connection(redis_url, transport=TRANSPORT) as connection:
        queue = connection.SimpleQueue("attune-test-qos")
        try:
            queue.put({"n": 1})
            before = time.time()
            message = queue.get(timeout=5)
            tag = message.delivery_tag

            record, score = wait_until(
                lambda: _unacked(client, tag) if _unacked(client, tag)[1] else None,
                5,
                "the delivered message recorded",
            )
            raw, exchange, routing_key = json.loads(record)
            assert raw == json.loads(json.dumps(message._raw))  # the message as kombu keeps it
            assert raw["properties"]["delivery_tag"] == tag
            assert (exchange, routing_key) == ("attune-test-qos", "attune-test-qos")
            assert before - 1 <= score <= time.time() + 1

            message.ack()

            wait_until(
                lambda: _unacked(client, tag) == (None, None), 5, "the acked message forgotten"
            )
        finally:
            queue.clear()
            queue.close()


def test_an_unacknowledged_message_is_restored_by_kombu_when_its_channel_closes(
    redis_url: str,
) -> None:
    with Connection(redis_url, transport=TRANSPORT) as connection:
        queue = connection.SimpleQueue("attune-test-restore")
        queue.put({"n": 2})
        queue.get(timeout=5)  # delivered, never acknowledged
        queue.close()
    with Connection(redis_url, transport=TRANSPORT) as connection:
        queue = connection.SimpleQueue("attune-test-restore")
        try:
            again = queue.get(timeout=5)
            again.ack()
            assert again.payload == {"n": 2}
        finally:
            queue.clear()
            queue.close()


def test_commands_sent_unanswered_get_no_reply_and_survive_a_dropped_connection(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    with Connection(redis_url, transport=TRANSPORT) as connection:
        channel = connection.default_channel
        channel.send_unanswered(("SET", "attune-test-a", "1"), ("SET", "attune-test-b", "2"))
        wait_until(lambda: client.get("attune-test-b") == b"2", 5, "both commands run")
        assert client.get("attune-test-a") == b"1"
        assert not channel._unanswered.can_read()  # no reply came back

        own = channel._unanswered
        own.send_command("CLIENT", "ID")  # the one reply it is ever sent, read here
        client.client_kill_filter(_id=own.read_response())
        channel.send_unanswered(("SET", "attune-test-c", "3"))

        wait_until(lambda: client.get("attune-test-c") == b"3", 5, "the command after the drop")

        channel.close()
        assert channel._unanswered is None  # closed with the channel


def test_a_channel_of_a_closed_connection_raises_a_connection_error_not_a_crash(
    redis_url: str,
) -> None:
    # Given a channel whose connection Celery collected after the broker went away
    connection = Connection(redis_url, transport=TRANSPORT)
    channel = connection.default_channel
    connection.collect()

    # When it is still asked for a client or to send (restoring, acknowledging), Then it
    # raises the connection error Celery handles, not an AttributeError that ends the worker
    with pytest.raises(RedisConnectionError):
        channel._create_client()
    with pytest.raises(RedisConnectionError):
        channel.send_unanswered(("PING",))


@pytest.mark.parametrize("transport", [TRANSPORT, None])
def test_messages_left_unacknowledged_are_put_back_at_once(
    redis_url: str, transport: str | None
) -> None:
    # Given a message taken and never acknowledged by a consumer whose connection then died
    # (it could not restore it: what kombu would otherwise do after the visibility timeout)
    taker = Connection(redis_url, transport=transport)
    taken = taker.SimpleQueue("attune-test-unacked")
    taken.put({"n": 3})
    taken.get(timeout=5)
    wait_until(lambda: redis.Redis.from_url(redis_url).zcard("unacked_index"), 5, "recorded")
    taken.channel.qos._delivered.clear()  # the dead consumer's memory of it is gone
    taker.release()

    # When a worker whose connection is back restores what Redis records as unacknowledged
    with Connection(redis_url, transport=transport) as connection:
        restored = restore_unacknowledged(connection.default_channel)
        queue = connection.SimpleQueue("attune-test-unacked")
        try:
            again = queue.get(timeout=5)
            again.ack()
        finally:
            queue.clear()
            queue.close()

    # Then it is delivered again at once
    assert restored == 1
    assert again.payload == {"n": 3}
