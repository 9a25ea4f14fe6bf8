"""Signals: in-process hooks called when a worker goes inactive or comes back.

A receiver runs in the process that made the transition, after the change is committed:
``worker_deactivated`` in the process that ran the sweep (a worker's pool process, or
``attune workers sweep``) or in the worker that shut down; ``worker_reactivated`` in the worker
whose heartbeat found its row inactive. A receiver that raises is logged and skipped, so a broken
hook never breaks a sweep or a heartbeat.

Example::

    from attune.liveness.signals import WorkerTransition, worker_deactivated

    @worker_deactivated.connect
    def page_someone(transition: WorkerTransition) -> None:
        print(f"{transition.worker} is gone: {transition.reason}")
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

_T = TypeVar("_T")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerTransition:
    """A worker changed status: which one, to what, why, and what it left behind."""

    worker: str
    status: str
    reason: str
    last_heartbeat: datetime | None
    abandoned_executions: int = 0


class Signal(Generic[_T]):
    """A named list of receivers, each called with one payload by :meth:`send`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: list[Callable[[_T], object]] = []
        self._lock = threading.Lock()

    def connect(self, receiver: Callable[[_T], object]) -> Callable[[_T], object]:
        """Call ``receiver`` on every send (once, however often it is connected); a decorator."""
        with self._lock:
            if receiver not in self._receivers:
                self._receivers.append(receiver)
        return receiver

    def disconnect(self, receiver: Callable[[_T], object]) -> None:
        """Stop calling ``receiver``; disconnecting one that is not connected does nothing."""
        with self._lock:
            if receiver in self._receivers:
                self._receivers.remove(receiver)

    def send(self, payload: _T) -> None:
        """Call every receiver with ``payload``; one that raises is logged, the others still run."""
        with self._lock:
            receivers = tuple(self._receivers)
        for receiver in receivers:
            try:
                receiver(payload)
            except Exception:
                logger.exception("receiver %r of signal %s failed", receiver, self.name)


worker_deactivated: Signal[WorkerTransition] = Signal("worker_deactivated")
"""Sent when a worker becomes ``inactive``: swept as stale, or shut down."""

worker_reactivated: Signal[WorkerTransition] = Signal("worker_reactivated")
"""Sent when an ``inactive`` worker's heartbeat makes it ``active`` again."""
