"""The one beat loop: attune's periodic passes, run where no worker is needed.

:class:`BeatLoop` runs each :class:`PeriodicPass` when it is due and says how long to sleep until
the next one is; its clock is injected, so it is tested without sleeping. :class:`Scheduler` is
celeryconfig's ``beat_scheduler``: ``celery -A attune beat`` runs the loop in its own process
(beside any ``beat_schedule`` entries), so the sweep happens with zero live workers and with
every pool slot busy, and no message waits in a broker for a worker. On the embedded default,
:class:`BeatThread` runs the same loop in a thread of the embedded worker's process. The passes
are listed in :func:`beat_passes`: adding one is one line there.

Every pass is safe to run twice at once, so two beats by mistake change nothing twice.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from wsgiref.simple_server import WSGIServer

from celery import beat

from attune import metrics
from attune.executions import retention
from attune.liveness.sweeper import sweep_and_record
from attune.settings import Settings
from attune.store.db import Database
from attune.workflows.reconcile import RECONCILE_INTERVAL_S, reconcile

PURGE_INTERVAL_S = 3600.0
"""How often the beat loop purges old executions (with ``ATTUNE_RETENTION_DAYS``)."""
TIMER_INTERVAL_S = 1.0
"""How often the rules' timers are looked at: just after each whole second (timer ticks fall
on whole seconds), so a tick fires about :data:`ALIGN_MARGIN_S` late, plus the pass."""
ALIGN_MARGIN_S = 0.05
"""How long after a multiple of its interval (wall clock) an aligned pass runs: room for the
database clock being a little behind this host's."""


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicPass:
    """Work the beat loop runs every ``interval_s`` seconds, the first time as the loop starts."""

    name: str
    interval_s: float
    run: Callable[[], object]
    aligned: bool = False
    """Run just after each multiple of ``interval_s`` of the wall clock (the timers: their
    ticks are whole seconds since the epoch), not ``interval_s`` after the last run."""


def beat_passes(database: Database, settings: Settings) -> tuple[PeriodicPass, ...]:
    """Every pass of the beat loop, on this process's ``database`` (a pass is one line here)."""
    # dispatch sends through the app, which imports us
    from attune.worker.dispatch import RuleFinishing, timer_pass

    sweep = partial(sweep_and_record, database, settings, RuleFinishing(settings))
    passes = [
        PeriodicPass("sweep", settings.sweep_interval_s, sweep),
        PeriodicPass("timers", TIMER_INTERVAL_S, partial(timer_pass, database, settings), True),
        PeriodicPass("workflows", RECONCILE_INTERVAL_S, partial(reconcile, database, settings)),
    ]
    if (days := settings.retention_days) is not None:
        passes.append(PeriodicPass("purge", PURGE_INTERVAL_S, partial(purge, database, days)))
    return tuple(passes)


def purge(database: Database, older_than_days: float) -> None:
    """The retention pass: delete terminal executions older than ``older_than_days``."""
    with database.session_scope() as session:
        purged = retention.purge(session, older_than_days)
    if purged:
        logger.info("purged %d execution(s) older than %g day(s)", purged, older_than_days)


class BeatLoop:
    """Runs each pass when due; :meth:`tick` returns how long to sleep until the next is due.

    A pass that fell behind (a paused process, a run longer than its interval) runs once, not
    once per missed interval. A pass that raises is logged and tried again at its next turn.
    """

    def __init__(
        self,
        passes: Sequence[PeriodicPass],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.passes = tuple(passes)
        self._clock = clock
        self._wall = wall  # only aligned passes look at it
        self._due: dict[str, float] = {}  # pass name -> clock time it is next due

    def tick(self) -> float:
        """Run every pass that is due now; the seconds until the next one is due."""
        for periodic in self.passes:
            now = self._clock()
            due = self._due.get(periodic.name, now)
            if due > now:
                continue
            try:
                periodic.run()
            except Exception:
                logger.exception(
                    "beat: pass %s failed; next try in %g s", periodic.name, periodic.interval_s
                )
            if periodic.aligned:
                self._due[periodic.name] = self._clock() + self._to_boundary(periodic.interval_s)
                continue
            following = due + periodic.interval_s
            self._due[periodic.name] = following if following > now else now + periodic.interval_s
        return max(0.0, min(self._due.values()) - self._clock())

    def _to_boundary(self, interval_s: float) -> float:
        """Seconds until :data:`ALIGN_MARGIN_S` past the next multiple of ``interval_s``, at
        least the margin away (a pass that just ran a hair early does not run again at once)."""
        wait_s = interval_s - (self._wall() - ALIGN_MARGIN_S) % interval_s
        return wait_s + interval_s if wait_s < ALIGN_MARGIN_S else wait_s


class BeatThread:
    """The beat loop in a daemon thread of this process (the embedded default's beat)."""

    def __init__(self, loop: BeatLoop) -> None:
        self.loop = loop
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start ticking; the first passes run at once."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="attune-beat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking; returns once a pass still running has finished."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self.loop.tick()):
            pass


class Scheduler(beat.Scheduler):
    """celery beat's scheduler for attune: the beat loop in the beat process, then the
    ``beat_schedule`` entries as Celery's own :class:`celery.beat.Scheduler` sends them.

    The loop, its database and (with ``ATTUNE_METRICS_PORT``) the metrics endpoint are set up
    at the first tick: Celery also builds a scheduler only to describe it in its banner.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop: BeatLoop | None = None
        self._database: Database | None = None
        self._metrics_server: WSGIServer | None = None

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Run the due passes and send the due entries; the seconds to sleep."""
        if self._loop is None:
            self._loop = self._start()
        return min(self._loop.tick(), float(super().tick(*args, **kwargs)))

    def _start(self) -> BeatLoop:
        settings = Settings.from_env()
        database = self._database = Database.from_settings(settings)
        passes = beat_passes(database, settings)
        if settings.metrics_port is not None:
            self._metrics_server = metrics.serve_beside(settings.metrics_port, database)
        logger.info(
            "beat %d: running %s in this process",
            os.getpid(),
            ", ".join(f"{p.name} every {p.interval_s:g} s" for p in passes),
        )
        return BeatLoop(passes)

    def close(self) -> None:
        """Release Celery's resources, the database and the metrics endpoint (a later tick
        sets them up again)."""
        try:
            super().close()
        finally:
            metrics.stop(self._metrics_server)
            self._loop, self._metrics_server = None, None
            if self._database is not None:
                self._database.dispose()
                self._database = None
