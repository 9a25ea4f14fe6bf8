"""Queues as attune declares them on the broker: a worker's own queue expires once unused.

Every attune process (worker or caller) declares a queue the same way, whichever declares it
first: ``attune.<runtime>`` and the sweep queue as Celery would (durable, kept), and
``attune.worker.<name>`` with an expiry (``x-expires``, ``ATTUNE_WORKER_QUEUE_EXPIRES_S``), so
the broker deletes it once no consumer has used it for that long — a worker that stopped, was
killed or renamed leaves no queue behind on RabbitMQ. RabbitMQ refuses to redeclare a queue
with other arguments, so the expiry must be the same on every host, as the other settings are.
``celeryconfig`` sets none on Redis, where a queue exists only while it holds messages.
"""

from __future__ import annotations

from typing import Any

from celery.app import amqp
from kombu.entity import Queue

from attune.executions.queues import is_worker_queue

EXPIRES_KEY = "attune_worker_queue_expires_s"
"""The Celery configuration key (set by ``celeryconfig``) holding the worker queues' expiry."""


class Queues(amqp.Queues):
    """Celery's table of queues, declaring a missing worker queue with its expiry."""

    worker_queue_expires_s: float | None = None

    def new_missing(self, name: str) -> Queue:
        """The queue ``name`` as declared when first named (by a worker or a publisher)."""
        if self.worker_queue_expires_s is None or not is_worker_queue(name):
            queue: Queue = super().new_missing(name)
            return queue
        exchange = self.autoexchange(name)
        return Queue(name, exchange, name, expires=self.worker_queue_expires_s)  # type: ignore[no-untyped-call]

    def add_compat(self, name: str, **options: Any) -> Queue:
        """The queue ``name`` added with ``options`` (``celery control add_consumer``)."""
        if self.worker_queue_expires_s is not None and is_worker_queue(name):
            options.setdefault("expires", self.worker_queue_expires_s)
        queue: Queue = super().add_compat(name, **options)
        return queue


class AMQP(amqp.AMQP):
    """Celery's broker API with :class:`Queues` (``Celery(amqp=AMQP)``)."""

    queues_cls = Queues

    def Queues(self, *args: Any, **kwargs: Any) -> Queues:  # noqa: N802 - Celery's name
        """The queue table, its worker queues expiring after the configured time."""
        table: Queues = super().Queues(*args, **kwargs)
        expires_s = self.app.conf.get(EXPIRES_KEY)
        table.worker_queue_expires_s = None if expires_s is None else float(expires_s)
        return table
