"""Heartbeat: the thread in a worker's main process that keeps its row fresh.

It runs beside Celery's pool, never in it, so a worker whose every slot runs a long CPU-bound
action still heartbeats on time. A database outage does not stop it: the failure is logged once
per outage and the next tick tries again; a missing row is registered again; a row the sweep made
inactive is made active again (and announced), and the action groups of the executions the
sweep abandoned meanwhile are killed (:mod:`attune.liveness.orphans`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from attune.executions import endings
from attune.executions.records import Finishing
from attune.liveness import announcements, orphans
from attune.liveness import registry as workers
from attune.liveness.registry import HeartbeatOutcome, Registration
from attune.liveness.reports import Deactivation
from attune.settings import Settings
from attune.store.db import Database

logger = logging.getLogger(__name__)


class Heartbeat:
    """Registers one worker, heartbeats it every ``interval_s``, and deactivates it at the end.

    ``kill_grace_s`` is the grace between SIGTERM and SIGKILL for the groups left behind by
    executions abandoned while this worker could not heartbeat.
    """

    def __init__(
        self,
        database: Database,
        registration: Registration,
        interval_s: float,
        kill_grace_s: float = Settings.kill_grace_s,
    ) -> None:
        self.database = database
        self.registration = registration
        self.interval_s = interval_s
        self.kill_grace_s = kill_grace_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def name(self) -> str:
        """The worker's name."""
        return self.registration.name

    def start(self) -> None:
        """Register the worker (a failure is retried by the heartbeats) and start beating."""
        self._guarded(self._register)
        self._thread = threading.Thread(
            target=self._run, name=f"attune-heartbeat-{self.name}", daemon=True
        )
        self._thread.start()

    def beat(self) -> HeartbeatOutcome | None:
        """One heartbeat (registering again if the row is gone); None if the database failed."""
        return self._guarded(self._beat)

    def stop(self) -> None:
        """Stop beating; returns once the thread is done."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def deactivate(self, reason: str, finishing: Finishing | None = None) -> Deactivation | None:
        """Stop beating, mark the row inactive and settle its executions (logged and signalled;
        with ``finishing``, their execution-finished events in the same transaction)."""
        self.stop()
        ended: list[int] = []
        try:
            with self.database.session_scope() as session:
                deactivation = workers.deactivate(
                    session,
                    self.name,
                    host=self.registration.host,
                    pid=self.registration.pid,
                    reason=reason,
                    ended=ended,
                )
                after = endings.enforce_ended(session, finishing, ended)
        except Exception:
            logger.exception("worker %s could not mark itself inactive", self.name)
            return None
        if after is not None:
            after()
        if deactivation is not None:
            announcements.announce_deactivation(deactivation, expected=True)
        return deactivation

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval_s
        while not self._stopping.wait(max(0.0, next_at - time.monotonic())):
            self.beat()
            # After a pause (SIGSTOP, a suspended VM) beat once, then resume the cadence.
            next_at = max(next_at + self.interval_s, time.monotonic())

    def _register(self) -> HeartbeatOutcome:
        with self.database.session_scope() as session:
            workers.register(session, self.registration)
        logger.info(
            "worker %s registered (runtimes %s, queues %s)",
            self.name,
            ",".join(self.registration.runtimes),
            ",".join(self.registration.queues),
            extra={"event": "worker_registered", "worker": self.name},
        )
        return HeartbeatOutcome.ALIVE

    def _beat(self) -> HeartbeatOutcome:
        # A connection that died since the last tick (a database restart) fails before the
        # statement runs: beat again at once on a fresh one rather than miss this tick.
        outcome = self.database.reconnecting(lambda: workers.heartbeat(self.database, self.name))
        if outcome is HeartbeatOutcome.REACTIVATED:
            announcements.announce_reactivation(self.name)
            try:
                orphans.stop_orphans(self.database, self.name, self.kill_grace_s)
            except Exception:  # the beat itself went through; the pool stops its actions too
                logger.exception("worker %s could not stop the actions it lost", self.name)
        elif outcome is HeartbeatOutcome.MISSING:
            logger.warning("worker %s: its row is gone; registering again", self.name)
            self._register()
        return outcome

    def _guarded(self, step: Callable[[], HeartbeatOutcome]) -> HeartbeatOutcome | None:
        try:
            outcome = step()
        except Exception as exc:
            # Whatever failed, the thread and the worker live on: the next tick retries.
            # One line per outage, not a traceback per tick.
            if not self._failing:
                self._failing = True
                logger.error(  # noqa: TRY400
                    "worker %s: heartbeat failed, retrying every %g s: %s",
                    self.name,
                    self.interval_s,
                    exc,
                    extra={"event": "heartbeat_failed", "worker": self.name},
                )
            return None
        if self._failing:
            self._failing = False
            logger.warning(
                "worker %s: heartbeat restored",
                self.name,
                extra={"event": "heartbeat_restored", "worker": self.name},
            )
        return outcome
