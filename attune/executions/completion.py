"""Completion: wakes callers waiting on executions as soon as one reaches a terminal state.

In-process, the runner calls :meth:`CompletionHub.notify` (the embedded worker shares the
caller's process). Across processes on PostgreSQL, a trigger on the execution table sends
``NOTIFY attune_execution_done`` and one listener thread per process relays it; the payload
is the finished record as JSON (or its id alone when too big; a JSON array of ids from the
sweep, which settles executions by the thousand in one statement), kept for the executions this
process waits on, so a woken waiter needs no SELECT. Waiters still re-read the database on a
short back-off, so a lost wake-up costs latency, never correctness. A process that has awaited
nothing for a while stops listening (UNLISTEN, the connection kept) until it awaits again: a
caller that only enqueues is not sent every completion of the whole system.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import psycopg
from sqlalchemy.engine import URL

NOTIFY_CHANNEL = "attune_execution_done"
"""The PostgreSQL channel the execution trigger notifies with the execution id."""

STOP_CHECK_S = 0.5
"""How often the listener thread looks whether it is to stop, or to stop listening."""

IDLE_S = 1.0
"""A listener that has had nothing awaited for this long stops listening until asked again."""

log = logging.getLogger(__name__)


class CompletionHub:
    """A counter of completions seen by this process, with a condition to wait on."""

    def __init__(self, idle_s: float = IDLE_S) -> None:
        self._condition = threading.Condition()
        self._version = 0
        self._awaited: dict[int, dict[str, Any] | None] = {}
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()
        self._stopping = threading.Event()
        self._epoch = 0
        self._idle_s = idle_s
        self._used_at = time.monotonic()  # when something was last awaited, forgotten or asked
        self._parked = False  # connected, not listening: nothing awaited for idle_s
        self._wanted = threading.Event()  # set to make a parked listener listen again

    @property
    def version(self) -> int:
        """Changes every time some execution completes."""
        return self._version

    def notify(self) -> None:
        """Wake every waiter: some execution has just reached a terminal state."""
        with self._condition:
            self._version += 1
            self._condition.notify_all()

    @property
    def epoch(self) -> int | None:
        """Names the listener's current connection; None while not listening.

        While it stays the same, no notification sent since was missed.
        """
        return self._epoch if self._listening.is_set() else None

    def await_record(self, execution_id: int) -> bool:
        """Keep what a notification says of ``execution_id``; False if it was awaited already."""
        with self._condition:
            self._used_at = time.monotonic()
            if execution_id in self._awaited:
                return False
            self._awaited[execution_id] = None
            return True

    def finished_record(self, execution_id: int) -> dict[str, Any] | None:
        """The awaited execution's record as notified (JSON fields), or None if not (yet).

        An empty dict means "finished, read the record": it was notified by id alone.
        """
        with self._condition:
            return self._awaited.get(execution_id)

    def forget(self, execution_id: int) -> None:
        """Stop keeping the record of ``execution_id``."""
        with self._condition:
            self._used_at = time.monotonic()
            self._awaited.pop(execution_id, None)

    def _deliver(self, payload: str) -> None:
        """One notification: keep its record if awaited, then wake every waiter."""
        with self._condition:
            if self._awaited:
                for execution_id, fields in _finished(payload):
                    if execution_id in self._awaited:
                        self._awaited[execution_id] = fields
            self.notify()  # the condition's lock is reentrant

    def wait_for_change(self, seen: int, timeout_s: float) -> bool:
        """Block until :attr:`version` differs from ``seen`` (True) or ``timeout_s`` has passed."""
        with self._condition:
            return self._condition.wait_for(lambda: self._version != seen, timeout=timeout_s)

    def listen_postgres(self, url: URL, ready_timeout_s: float = 2.0) -> int | None:
        """Relay PostgreSQL notifications into this hub (one daemon thread per process).

        Returns :attr:`epoch` once listening (None if not within ``ready_timeout_s``); a
        listener that had stopped listening for want of anything awaited listens again.
        """
        alive = self._listener is not None and self._listener.is_alive()
        with self._condition:
            self._used_at = time.monotonic()
            if alive and self._parked:
                self._wanted.set()
                self._condition.wait_for(lambda: not self._parked, ready_timeout_s)
        if alive:
            return self.epoch
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._listening.clear()
        self._stopping.clear()
        self._listener = threading.Thread(
            target=self._relay, args=(conninfo,), name="attune-completion", daemon=True
        )
        self._listener.start()
        self._listening.wait(ready_timeout_s)
        return self.epoch

    def stop(self) -> None:
        """Stop relaying notifications; returns once the listener thread has ended."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.join()
            self._listener = None

    def _relay(self, conninfo: str) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as connection:
                    failures = 0
                    while self._listen(connection):
                        connection.execute(f"UNLISTEN {NOTIFY_CHANNEL}")
                        while not (self._wanted.wait(STOP_CHECK_S) or self._stopping.is_set()):
                            pass
            except psycopg.Error as exc:
                with self._condition:
                    self._parked = False
                    self._listening.clear()
                if failures == 0:
                    log.warning("completion listener lost its connection: %s", exc)
                failures += 1
                self.notify()  # waiters re-read the database rather than miss a completion
                self._stopping.wait(min(0.1 * failures, 2.0))
        with self._condition:
            self._parked = False
            self._listening.clear()

    def _listen(self, connection: psycopg.Connection[Any]) -> bool:
        """Relay notifications until stopped (False) or idle for ``idle_s`` (True)."""
        if self._stopping.is_set():
            return False
        connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        with self._condition:
            self._epoch += 1
            self._parked = False
            self._listening.set()
            self._condition.notify_all()  # a listen_postgres() waiting for it to listen again
        while not self._stopping.is_set():
            for notification in connection.notifies(timeout=min(STOP_CHECK_S, self._idle_s)):
                self._deliver(notification.payload)
            with self._condition:
                if not self._awaited and time.monotonic() - self._used_at >= self._idle_s:
                    self._parked = True
                    self._wanted.clear()
                    self._listening.clear()
                    return True
        return False


def _finished(payload: str) -> list[tuple[int, dict[str, Any]]]:
    """What a notification says finished: a record, an id alone, or ids (a JSON array: the
    sweep's); an id alone comes with ``{}``, "read the record"."""
    if payload.startswith("{"):
        fields = json.loads(payload)
        return [(fields["id"], fields)]
    if payload.startswith("["):
        return [(int(execution_id), {}) for execution_id in json.loads(payload)]
    return [(int(payload), {})]


BULK_SETTING = "attune.bulk_done"
"""While this PostgreSQL setting is ``on`` in a transaction, the trigger sends no notification
per finished row: the transaction sends the ids itself, in JSON arrays."""

IDS_PER_NOTIFICATION = 500
"""Ids per notification of many: a payload stays well under NOTIFY's 8,000 bytes."""


hub = CompletionHub()
"""This process's hub."""
