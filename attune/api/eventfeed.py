"""The sources of the event hub: PostgreSQL's NOTIFY, or SQLite triggers of this process.

On PostgreSQL the triggers of migration ``20261201_0009`` notify at commit and one thread per
API process LISTENs (the pattern of :mod:`attune.executions.completion`); a lost connection is
a gap in the ring (subscribers reset) and the thread reconnects. While it listens, the thread
keeps its row in ``event_relay`` fresh: the execution trigger notifies only while some relay
was seen within :data:`~attune.store.models.RELAY_TTL_S` (migration ``20261201_0018``). On
SQLite every connection of this process gets temporary triggers calling a Python function: the
embedded worker, the scheduler, cancels and the sweep all run in the API's process, so every
writer is covered.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from typing import Any

import psycopg
from sqlalchemy import event

from attune.api.events import EventHub
from attune.store.db import Database
from attune.store.models import RELAY_TTL_S

CHANNELS = {"attune_execution_event": "execution", "attune_worker_event": "worker"}
"""The PostgreSQL channels relayed, and the event each one is."""

STOP_CHECK_S = 0.5
"""How often the listener thread looks whether it is to stop."""

READY_TIMEOUT_S = 5.0
"""How long ``start`` waits for the relay to listen before the app serves anyway."""

RELAY_REFRESH_S = RELAY_TTL_S / 6
"""How often the listener refreshes its ``event_relay`` row (well inside the TTL)."""

_SEEN = (
    "INSERT INTO event_relay (name, seen_at) VALUES (%s, now())"
    " ON CONFLICT (name) DO UPDATE SET seen_at = now() RETURNING xmax = 0"
)
"""Upsert the relay's row; true when it was inserted (on a refresh: it had been deleted)."""
_GONE = "DELETE FROM event_relay WHERE name = %s"

log = logging.getLogger(__name__)


def _iso(column: str) -> str:
    """SQLite's text timestamp as ISO 8601 in UTC, as the REST routes send it."""
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', NEW.{column})"


def _execution_json(previous: str) -> str:
    return f"""json_object(
    'id', NEW.id, 'action_ref', NEW.action_ref, 'status', NEW.status,
    'previous_status', {previous}, 'worker', NEW.worker, 'exit_code', NEW.exit_code,
    'error', substr(NEW.error, 1, 1000), 'requested_by', NEW.requested_by,
    'requested_at', {_iso("requested_at")}, 'started_at', {_iso("started_at")},
    'finished_at', {_iso("finished_at")}, 'duration_ms', NEW.duration_ms)"""


def _worker_json(change: str) -> str:
    return f"""json_object('name', NEW.name, 'status', NEW.status,
    'last_heartbeat', {_iso("last_heartbeat")}, 'change', {change})"""


_WORKER_CHANGE = """CASE WHEN OLD.pid IS NOT NEW.pid THEN 'register'
    WHEN NEW.status = 'inactive' THEN 'deactivate' ELSE 'reactivate' END"""
_SQLITE_TRIGGERS = (
    f"""CREATE TEMP TRIGGER IF NOT EXISTS attune_execution_insert AFTER INSERT ON main.execution
    BEGIN SELECT attune_event('execution', {_execution_json("NULL")}); END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS attune_execution_update
    AFTER UPDATE OF status ON main.execution WHEN OLD.status IS NOT NEW.status
    BEGIN SELECT attune_event('execution', {_execution_json("OLD.status")}); END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS attune_worker_insert AFTER INSERT ON main.worker
    BEGIN SELECT attune_event('worker', {_worker_json("'register'")}); END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS attune_worker_update
    AFTER UPDATE OF status, pid ON main.worker
    WHEN OLD.status IS NOT NEW.status OR OLD.pid IS NOT NEW.pid
    BEGIN SELECT attune_event('worker', {_worker_json(_WORKER_CHANGE)}); END""",
)


class EventFeed:
    """Feeds ``hub`` from ``database`` while started."""

    def __init__(self, hub: EventHub, database: Database) -> None:
        self.hub = hub
        self.database = database
        self._stopping = threading.Event()
        self._relaying = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Install the SQLite triggers, or start the LISTEN thread on PostgreSQL."""
        if self.database.is_sqlite:
            event.listen(self.database.engine, "connect", self._install)
            self.database.engine.dispose()  # pooled connections predate the triggers
            return
        url = self.database.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        self._stopping.clear()
        self._relaying.clear()
        self._thread = threading.Thread(
            target=self._relay, args=(conninfo,), name="attune-events", daemon=True
        )
        self._thread.start()
        # Served once the triggers notify (a database that is down: serve, and catch up later).
        self._relaying.wait(READY_TIMEOUT_S)

    def stop(self) -> None:
        """Stop feeding the hub."""
        if self.database.is_sqlite:
            if event.contains(self.database.engine, "connect", self._install):
                event.remove(self.database.engine, "connect", self._install)
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _install(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("attune_event", 2, self._sqlite_event)
        try:
            for trigger in _SQLITE_TRIGGERS:
                dbapi_connection.execute(trigger)
        except sqlite3.OperationalError as exc:  # tables not created yet: nothing to watch
            log.debug("no event triggers on this connection: %s", exc)

    def _sqlite_event(self, kind: str, payload: str) -> None:
        self.hub.publish(kind, json.loads(payload))

    def _relay(self, conninfo: str) -> None:
        name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        failures = 0
        while not self._stopping.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as connection:
                    for channel in CHANNELS:
                        connection.execute(f"LISTEN {channel}")
                    connection.execute(_SEEN, (name,))  # listening first: nothing falls between
                    self._relaying.set()
                    if failures:  # LISTENing again: a refetch from now on misses nothing
                        self.hub.gap("the event listener lost its database connection")
                    failures = 0
                    self._listen(connection, name)
                    connection.execute(_GONE, (name,))
            except psycopg.Error as exc:
                if failures == 0:
                    log.warning("event listener lost its connection: %s", exc)
                failures += 1
                self._stopping.wait(min(0.1 * failures, 2.0))

    def _listen(self, connection: psycopg.Connection[Any], name: str) -> None:
        """Relay notifications until stopped, refreshing the relay's row as it goes."""
        seen = time.monotonic()
        while not self._stopping.is_set():
            for notification in connection.notifies(timeout=STOP_CHECK_S):
                data = json.loads(notification.payload)
                self.hub.publish(CHANNELS[notification.channel], data)
            now = time.monotonic()
            if now - seen >= RELAY_REFRESH_S:
                inserted = connection.execute(_SEEN, (name,)).fetchone()
                # Its row gone or outlived: the triggers may have been silent meanwhile.
                if (inserted is not None and inserted[0]) or now - seen >= RELAY_TTL_S:
                    self.hub.gap("the event listener's relay lapsed")
                seen = now
