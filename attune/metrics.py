"""Prometheus metrics: worker lifecycle, execution, event and enforcement counters, the gauge.

Counters are counted where the event happens: a sweep in the process that ran it (beat, mostly),
a reactivation in the worker's main process, an execution's end in the pool process that ran it.
A worker that serves metrics (``ATTUNE_METRICS_PORT``) therefore switches to prometheus-client's
multiprocess mode before its pool forks (:func:`share_with_children`): every process writes its
counts to a file of its own in one directory per worker, and the worker's endpoint adds them up,
so counts made in prefork children, even dead ones, are served. The sweep runs in the beat
process, so its counts are served by a beat started with ``ATTUNE_METRICS_PORT``
(:class:`attune.worker.beat.Scheduler`).
``attune_workers{status}`` and ``attune_last_sweep_timestamp_seconds`` are not counted at all:
they are read from the database at scrape time (:class:`WorkerGauge`), so every endpoint shows
the fleet as the database sees it.

Instruments are created on first use, after the process chose its mode; importing this module
does nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from attune.store.db import Database
from attune.store.models import (
    SWEEP_RUN,
    TERMINAL_STATUSES,
    PeriodicRun,
    RunPhase,
    Worker,
    WorkerStatus,
    WorkflowRun,
)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The variable naming the directory where every process of a worker writes its counts."""

DURATION_BUCKETS_S: tuple[float, ...] = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
"""Buckets of ``attune_execution_duration_seconds``: actions run from sub-second to an hour."""

TIMER_LAG_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 1.2, 2, 5, 30, 60, 300)
"""Buckets of ``attune_timer_lag_seconds``: beat ticks about every second."""

ADVANCE_BUCKETS_S: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
"""Buckets of ``attune_workflow_advance_seconds``: an advance is a transaction or a few."""

logger = logging.getLogger(__name__)


class _Instruments:
    """The counters and the histogram of this process (not registered anywhere by themselves)."""

    def __init__(self) -> None:
        self.deactivations = Counter(
            "attune_worker_deactivations",
            "Workers that went inactive (swept as stale, or shut down).",
            registry=None,
        )
        self.reactivations = Counter(
            "attune_worker_reactivations",
            "Inactive workers whose heartbeat made them active again.",
            registry=None,
        )
        self.executions = Counter(
            "attune_executions",
            "Executions that reached a terminal status, by status.",
            ["status"],
            registry=None,
        )
        for status in TERMINAL_STATUSES:  # every status shows, at 0 until one happens
            self.executions.labels(status=status.value)
        self.abandoned = Counter(
            "attune_executions_abandoned",
            "Executions settled as abandoned because their worker stopped.",
            registry=None,
        )
        self.duration = Histogram(
            "attune_execution_duration_seconds",
            "Wall time of executions that ran, from start to their terminal status.",
            buckets=DURATION_BUCKETS_S,
            registry=None,
        )
        self.events = Counter(
            "attune_trigger_events",
            "Trigger events recorded, by type and status (fired, missed).",
            ["type", "status"],
            registry=None,
        )
        self.enforcements = Counter(
            "attune_enforcements",
            "Rule enforcements recorded, by status (scheduled, no_match, …).",
            ["status"],
            registry=None,
        )
        self.advance = Histogram(
            "attune_workflow_advance_seconds",
            "Wall time of one workflow advance pass (its transaction; the messages it "
            "sends after commit are not counted), or of a look that found another advance "
            "holding the run.",
            buckets=ADVANCE_BUCKETS_S,
            registry=None,
        )
        self.webhooks = Counter(
            "attune_webhook_requests",
            "Webhook requests answered, by status code (refusals included).",
            ["code"],
            registry=None,
        )
        self.timer_lag = Histogram(
            "attune_timer_lag_seconds",
            "How late a timer tick fired: the pass's time minus the tick's scheduled time.",
            buckets=TIMER_LAG_BUCKETS_S,
            registry=None,
        )

    def all(self) -> tuple[Counter | Histogram, ...]:
        """Every instrument, for registering them on a registry."""
        return (
            self.deactivations,
            self.reactivations,
            self.executions,
            self.abandoned,
            self.duration,
            self.events,
            self.enforcements,
            self.webhooks,
            self.timer_lag,
            self.advance,
        )


_instruments: _Instruments | None = None
_lock = threading.Lock()


def _get() -> _Instruments:
    global _instruments
    if _instruments is None:
        with _lock:
            if _instruments is None:
                _instruments = _Instruments()
    return _instruments


def count_deactivations(count: int = 1) -> None:
    """Add ``count`` to ``attune_worker_deactivations_total``."""
    if count:
        _get().deactivations.inc(count)


def count_reactivation() -> None:
    """Add one to ``attune_worker_reactivations_total``."""
    _get().reactivations.inc()


def count_abandoned(count: int) -> None:
    """Add ``count`` to ``attune_executions_abandoned_total``."""
    if count:
        _get().abandoned.inc(count)


def record_execution(status: str, duration_s: float | None) -> None:
    """Count an execution that reached terminal ``status``; observe its duration if it ran."""
    instruments = _get()
    instruments.executions.labels(status=status).inc()
    if duration_s is not None:
        instruments.duration.observe(duration_s)


def record_event(
    trigger_type: str, status: str, enforcements: Iterable[str] = (), lag_s: float | None = None
) -> None:
    """Count an event of ``status`` and its enforcements' statuses; observe a timer's lag."""
    instruments = _get()
    instruments.events.labels(type=trigger_type, status=status).inc()
    for enforcement in enforcements:
        instruments.enforcements.labels(status=enforcement).inc()
    if lag_s is not None:
        instruments.timer_lag.observe(max(lag_s, 0.0))


def observe_workflow_advance(duration_s: float) -> None:
    """Observe one workflow advance's wall time."""
    _get().advance.observe(duration_s)


def count_webhook(code: int) -> None:
    """Add one to ``attune_webhook_requests_total{code}``."""
    _get().webhooks.labels(code=str(code)).inc()


def share_with_children(directory: Path) -> None:
    """Count in files under ``directory``, in this process and in every child it forks later.

    Call it before any instrument is used (a worker calls it before its pool forks).
    """
    os.environ[MULTIPROCESS_ENV] = str(directory)
    # prometheus-client picks its value class when it is imported; pick again now.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


class WorkerGauge:
    """``attune_workers{status}`` and ``attune_last_sweep_timestamp_seconds``, read at scrape time.

    The worker table's rows by status, and when the last sweep ran (Unix time on the database
    clock; 0 when no sweep ever ran).
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    def collect(self) -> Iterator[Metric]:
        """One gauge sample per worker status (0 where none) and the last sweep's time;
        nothing if the database fails."""
        try:
            with self.database.session_scope() as session:
                rows = session.execute(select(Worker.status, func.count()).group_by(Worker.status))
                counts = {status: count for status, count in rows}
                last_sweep_at = session.scalar(
                    select(PeriodicRun.last_run_at).where(PeriodicRun.name == SWEEP_RUN)
                )
                running = session.scalar(
                    select(func.count())
                    .select_from(WorkflowRun)
                    .where(WorkflowRun.phase != RunPhase.DONE.value)
                )
        except Exception:
            logger.exception("metrics: could not read the worker table")
            return
        gauge = GaugeMetricFamily("attune_workers", "Workers by status.", labels=["status"])
        for status in WorkerStatus:
            gauge.add_metric([status.value], counts.get(status.value, 0))
        yield gauge
        yield GaugeMetricFamily(
            "attune_last_sweep_timestamp_seconds",
            "When the last stale-worker sweep ran (Unix time, database clock; 0: never).",
            value=0.0 if last_sweep_at is None else last_sweep_at.timestamp(),
        )
        yield GaugeMetricFamily(
            "attune_workflows_running",
            "Workflow runs not finished yet (running or draining after a cancel).",
            value=float(running or 0),
        )


def registry(database: Database | None) -> CollectorRegistry:
    """A registry of this process's instruments (all processes' in multiprocess mode).

    With a ``database`` it also carries :class:`WorkerGauge`.
    """
    result = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_ENV):
        MultiProcessCollector(result)  # type: ignore[no-untyped-call]
    else:
        for instrument in _get().all():
            result.register(instrument)
    if database is not None:
        result.register(WorkerGauge(database))
    return result


def serve(port: int, database: Database | None) -> WSGIServer:
    """Serve :func:`registry` over HTTP on ``port`` from a daemon thread; returns the server."""
    server, _thread = start_http_server(port, registry=registry(database))
    return server


def serve_beside(port: int, database: Database) -> WSGIServer | None:
    """:func:`serve` for a process whose work matters more: a busy port is logged, not raised."""
    try:
        return serve(port, database)
    except OSError as exc:
        logger.error("metrics: cannot serve on port %d: %s", port, exc)  # noqa: TRY400
        return None


def stop(server: WSGIServer | None) -> None:
    """Stop serving (nothing when ``server`` is None)."""
    if server is not None:
        server.shutdown()
        server.server_close()
