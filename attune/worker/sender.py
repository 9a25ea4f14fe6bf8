"""Sender: attune's own task messages, published with kombu in Celery's message format.

Every execution costs one ``attune.execute_action(id)`` message, and Celery's ``apply_async``
spends about three times the publish itself on what attune never uses (routers, signals,
result bookkeeping, a new message layout per call). :func:`send` builds the same protocol 2
message (headers, properties and body as ``apply_async`` writes them, checked by the tests
against Celery's own) and publishes it through the app's producer pool, declaring the queue as
Celery would (a worker queue with its expiry) and retrying a broken connection under the app's
``task_publish_retry_policy``. A delayed message (``countdown``) still goes through Celery,
which turns it into an ``eta``.
"""

from __future__ import annotations

import json
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu.utils.uuid import uuid

from attune.executions.dispatch import Dispatch

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def send(app: Celery, task: str, execution_id: int, queue: str) -> None:
    """Publish ``task(execution_id)`` to ``queue`` now; raises what kombu raises when the
    broker refuses it after the retries."""
    task_id = uuid()
    headers = headers_of(task, task_id, execution_id)
    declared = app.amqp.queues[queue]
    retry_policy: dict[str, Any] = app.conf.task_publish_retry_policy
    with app.producer_or_acquire() as producer:
        producer.publish(
            json.dumps([[execution_id], {}, _EMBED]),
            exchange="",
            routing_key=queue,
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers,
            correlation_id=task_id,
            reply_to="",
            delivery_mode=declared.exchange.delivery_mode or 2,
            declare=[declared],
            retry=bool(app.conf.task_publish_retry),
            retry_policy=retry_policy,
        )


def send_dispatch(app: Celery, message: Dispatch) -> None:
    """Publish ``message`` (a retry, a gate's head, a workflow's task or advance); a delayed
    one through Celery, which sets its ``eta``."""
    if not message.countdown_s:
        send(app, message.task, message.execution_id, message.queue)
        return
    app.send_task(
        message.task,
        args=(message.execution_id,),
        queue=message.queue,
        countdown=message.countdown_s,
    )


def headers_of(task: str, task_id: str, execution_id: int) -> dict[str, Any]:
    """The protocol 2 headers of ``task(execution_id)``, as Celery's ``as_task_v2`` writes
    them for a task whose result is ignored."""
    return {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": f"({execution_id!r},)",
        "kwargsrepr": "{}",
        "origin": anon_nodename(),  # this process: a pool process sends as itself
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
