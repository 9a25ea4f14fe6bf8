"""attune's task sender against Celery's own, on each real broker: the message it publishes
reads as ``apply_async``'s (headers, properties, body), so any Celery worker takes it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from kombu import Connection, Queue

from attune.worker import sender
from tests.brokers import Broker

TASK = "attune.execute_action"
_PER_MESSAGE = {"id", "root_id", "correlation_id", "reply_to", "delivery_tag", "delivery_info"}
_HEADERS_AGAIN = "application_headers"  # RabbitMQ's properties repeat the headers


@pytest.fixture
def probe(broker: Broker) -> Iterator[Celery]:
    """A Celery app on the run's broker whose results are ignored, as attune's are."""
    broker.reset(["probe.sent", "probe.celery"])
    app = Celery("probe", broker=broker.url, set_as_current=False)
    app.conf.task_ignore_result = True
    yield app
    app.close()
    broker.reset(["probe.sent", "probe.celery"])


def taken(broker: Broker, queue: str) -> dict[str, Any]:
    """The one message in ``queue``: what a worker reads of it."""
    with Connection(broker.url) as connection:
        message = Queue(queue).bind(connection.default_channel).get(no_ack=True)
        assert message is not None, f"nothing in {queue}"
        return {
            "headers": dict(message.headers),
            "properties": dict(message.properties),
            "content_type": message.content_type,
            "content_encoding": message.content_encoding,
            "body": json.loads(message.body),
        }


def without_ids(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` without what differs between any two messages (ids, reply address)."""
    return {
        **message,
        "headers": {k: v for k, v in message["headers"].items() if k not in _PER_MESSAGE},
        "properties": {
            k: v
            for k, v in message["properties"].items()
            if k not in {*_PER_MESSAGE, _HEADERS_AGAIN}
        },
    }


def test_the_sent_message_reads_as_celerys_own(probe: Celery, broker: Broker) -> None:
    probe.send_task(TASK, args=(42,), queue="probe.celery", ignore_result=True)  # as attune's task
    sender.send(probe, TASK, 42, "probe.sent")

    ours, celerys = taken(broker, "probe.sent"), taken(broker, "probe.celery")

    assert without_ids(ours) == without_ids(celerys)
    assert ours["properties"].get(_HEADERS_AGAIN, ours["headers"]) == ours["headers"]
    assert (
        ours["headers"]["id"] == ours["headers"]["root_id"] == ours["properties"]["correlation_id"]
    )
    assert ours["headers"]["id"] != celerys["headers"]["id"]
    assert ours["body"] == [
        [42],
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]
