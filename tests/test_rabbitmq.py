"""What RabbitMQ does for attune beyond what every broker does: worker queues that expire
once their worker is gone, scheduled sweeps it drops itself once expired."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from celery import Celery

from attune.executions.queues import runtime_queue, worker_queue
from attune.store.db import Database
from attune.worker.queues import AMQP, EXPIRES_KEY
from tests.brokers import Broker
from tests.processes import ROOT, Processes, wait_until

SLACK_S = 10.0
"""Room for a loaded machine on top of the expiry itself."""


def test_a_worker_queue_is_declared_expiring_and_a_runtime_queue_is_kept() -> None:
    app = Celery("attune-test-queues", amqp=AMQP, set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf[EXPIRES_KEY] = 60.0
    queues = app.amqp.queues

    own, shared = queues[worker_queue("w1")], queues[runtime_queue("shell")]

    assert own.expires == 60.0
    assert shared.expires is None
    assert queues.select_add(worker_queue("w2"), exchange="w2").expires == 60.0  # add_consumer
    assert (own.routing_key, own.exchange.name) == ("attune.worker.w1", "attune.worker.w1")


@pytest.mark.parametrize(
    ("broker_url", "expires"),
    [("amqp://guest:guest@127.0.0.1:5672//", "60.0"), ("redis://127.0.0.1:6379/0", "None")],
)
def test_celeryconfig_expires_worker_queues_after_60_s_except_on_redis(
    broker_url: str, expires: str
) -> None:
    # On Redis kombu would expire the messages of a worker whose slots stayed busy that long.
    shown = subprocess.run(
        [sys.executable, "-c", f"import celeryconfig as c; print(c.{EXPIRES_KEY})"],
        cwd=ROOT,
        env={**os.environ, "ATTUNE_BROKER_URL": broker_url},
        capture_output=True,
        text=True,
        check=True,
    )

    assert shown.stdout.strip() == expires


@pytest.mark.brokers("rabbitmq")
def test_the_queue_of_a_stopped_or_killed_worker_is_deleted_once_unused(
    processes: Processes, pg_database: Database, broker: Broker
) -> None:
    # Given three workers whose own queues expire 1 s after their last use
    expiring = {"ATTUNE_WORKER_QUEUE_EXPIRES_S": "1"}
    stopped, killed, staying = (
        processes.worker(name, env=expiring) for name in ("stopped", "killed", "staying")
    )
    processes.wait_registered(pg_database, stopped, killed, staying)
    names = {worker_queue(name) for name in ("stopped", "killed", "staying")}
    assert names <= broker.queue_names()

    # When one stops (warm shutdown) and one is killed with SIGKILL
    stopped.stop()
    killed.kill()

    # Then RabbitMQ deletes both queues; the live worker's and the runtime's stay
    gone = {worker_queue("stopped"), worker_queue("killed")}
    left = wait_until(
        lambda: (names := broker.queue_names()).isdisjoint(gone) and names,
        1 + SLACK_S,
        "both queues deleted",
        interval_s=0.5,
    )
    assert {worker_queue("staying"), runtime_queue("shell")} <= left
    assert staying.alive()
