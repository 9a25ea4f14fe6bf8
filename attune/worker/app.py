"""The Celery app of attune, the per-process resources its tasks use, and the liveness bootstep.

Celery is imported only in :mod:`attune.worker` (here, the tasks and the broker transport). The
database engine of a worker process is created on first use after fork, never at import.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from celery import Celery, bootsteps
from celery.signals import worker_process_init, worker_shutting_down

from attune import __version__, metrics
from attune.errors import AttuneError
from attune.executions import dispatch, environments
from attune.executions.queues import worker_queues
from attune.executions.records import Finishing
from attune.liveness.heartbeat import Heartbeat
from attune.liveness.orphans import settle_predecessor
from attune.liveness.registry import Registration
from attune.runtimes.reaper import die_with_parent, reaper
from attune.settings import Settings

# Re-exported: callers and tasks import ``resources`` from here too.
from attune.store.resources import resources as resources
from attune.worker import sender
from attune.worker.beat import BeatLoop, BeatThread, beat_passes
from attune.worker.broker import restore_unacknowledged
from attune.worker.pool_table import pool_table
from attune.worker.queues import AMQP

app = Celery("attune", amqp=AMQP)
app.config_from_object("celeryconfig")


dispatch.use(lambda message: sender.send_dispatch(app, message))

logger = logging.getLogger(__name__)


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    # A pool process dies with the worker's main process, and its reaper with it: no action
    # outlives the worker (attune.runtimes.reaper).
    die_with_parent(resources.main_pid)
    reaper.start()
    resources.forget_database()


@worker_shutting_down.connect
def _shutting_down(**_: Any) -> None:
    pool_table.stop()  # no pool process takes a gate's head on: a warm shutdown ends sooner


class EmbeddedWorker:
    """A Celery worker inside the calling process, on Celery's in-memory transport.

    It is Celery's own worker machinery (a WorkController with a thread pool), registered in
    the worker table like any other, with the beat loop (the sweep, the retention purge) in a
    thread beside it; it stops when :meth:`stop` is called or the process exits.
    """

    def __init__(self, concurrency: int = 4, ready_timeout_s: float = 30.0) -> None:
        self._concurrency = concurrency
        self._ready_timeout_s = ready_timeout_s
        self._lock = threading.Lock()
        self._controller: Any = None
        self._thread: threading.Thread | None = None
        self._beat: BeatThread | None = None

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._controller is not None

    def start(self) -> None:
        """Start the worker (once) and return when it consumes its queues."""
        with self._lock:
            if self._controller is not None:
                return
            if self._thread is not None:
                self._thread.join()  # the previous worker's loop is still winding down
            ready = threading.Event()
            controller = app.WorkController(
                hostname=f"embedded-{os.getpid()}@{socket.gethostname()}",
                pool_cls="threads",
                concurrency=self._concurrency,
                loglevel="WARNING",
                ready_callback=lambda _consumer: ready.set(),
                without_heartbeat=True,
                without_mingle=True,
                without_gossip=True,
            )
            thread = threading.Thread(
                target=controller.start, name="attune-embedded-worker", daemon=True
            )
            thread.start()
            if not ready.wait(self._ready_timeout_s):
                raise AttuneError(
                    f"the embedded worker did not start within {self._ready_timeout_s:g} s"
                )
            self._controller, self._thread = controller, thread
            self._beat = BeatThread(BeatLoop(beat_passes(resources.database, resources.settings)))
            self._beat.start()
            atexit.register(self.stop)

    def stop(self) -> None:
        """Warm shutdown: running executions finish, then the worker row goes inactive.

        Returns once the worker is stopped and deregistered; its idle consumer thread
        (a daemon) may take up to the transport's poll timeout more to end.
        """
        with self._lock:
            if self._controller is None:
                return
            if self._beat is not None:
                self._beat.stop()
                self._beat = None
            self._controller.stop()
            self._controller = None


embedded_worker = EmbeddedWorker()
"""This process's embedded worker (started by the first ``execute`` on ``memory://``)."""


class Liveness(bootsteps.StartStopStep):
    """Consumer bootstep: this worker's queues, its row in the worker table, its heartbeat.

    When the worker is built it adds its queues (its runtimes', its own, the sweep queue) to
    whatever it consumes (an explicit ``-Q`` included) and names itself: ``ATTUNE_WORKER_NAME``,
    else the Celery node name. Once its task consumer is up it registers and starts the heartbeat
    thread (and, with ``ATTUNE_METRICS_PORT``, the metrics endpoint; a prefork worker switches to
    prometheus-client's multiprocess mode first, so its pool processes' counts are served too).
    Before anything runs (the pool is not forked yet) it settles what an earlier process of
    its name left: the executions it held are abandoned, their live action groups killed.
    At shutdown — called by the worker after its pool stopped, so after a warm shutdown's running
    tasks finished — it marks the row inactive and settles any execution a cold shutdown cut off.
    A worker serving python (not the embedded one) also builds the loaded packs' environments
    at start, in a thread of its own.

    It is a bootstep, not a set of signal handlers, so a bare ``app.WorkController`` (the
    embedded worker) gets it too.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        settings = resources.settings
        self.name: str = settings.worker_name or consumer.hostname
        queues = consumer.app.amqp.queues
        for queue in worker_queues(self.name, settings.worker_runtimes):
            queues.select_add(queues[queue])  # as declared by name (its own queue expiring)
        resources.worker_name, resources.main_pid = self.name, os.getpid()
        try:
            settle_predecessor(
                resources.database, self.name, settings.kill_grace_s, _finishing(settings)
            )
        except Exception:  # the worker still starts; the sweep settles what it could not
            logger.exception("worker %s could not settle its previous process", self.name)
        self.heartbeat: Heartbeat | None = None
        self.metrics_server: WSGIServer | None = None
        self.metrics_dir: Path | None = None
        if _pool_name(consumer.controller) == "prefork":
            pool_table.share()  # before the pool forks (attune.worker.pool_table)
        if settings.metrics_port is not None and _pool_name(consumer.controller) == "prefork":
            # Before the pool forks, so every pool process counts into this worker's directory.
            existing = os.environ.get(metrics.MULTIPROCESS_ENV)
            directory = Path(existing) if existing else Path(tempfile.mkdtemp(prefix="attune-"))
            self.metrics_dir = None if existing else directory
            metrics.share_with_children(directory)

    def start(self, consumer: Any) -> None:
        """Register and start heartbeating (once: the consumer restarts after broker errors;
        then, on Redis, messages taken and left unacknowledged are put back in their queues)."""
        if self.heartbeat is not None:
            if consumer.connection.transport.driver_type == "redis":
                restored = restore_unacknowledged(consumer.connection.default_channel)
                logger.warning(
                    "broker connection back: %d unacknowledged message(s) restored", restored
                )
            return
        settings = resources.settings
        controller = consumer.controller
        registration = Registration(
            name=self.name,
            runtimes=settings.worker_runtimes,
            queues=tuple(sorted(consumer.app.amqp.queues.consume_from)),
            host=socket.gethostname(),
            pid=os.getpid(),
            capabilities={
                "concurrency": getattr(controller, "concurrency", None),
                "pool": _pool_name(controller),
                "attune_version": __version__,
            },
        )
        self.heartbeat = Heartbeat(
            resources.database,
            registration,
            settings.heartbeat_interval_s,
            kill_grace_s=settings.kill_grace_s,
        )
        self.heartbeat.start()
        if "python" in settings.worker_runtimes and not settings.is_embedded:
            environments.warm_up(resources.database, settings)  # in a thread of its own
        if settings.metrics_port is not None:  # a busy port costs the metrics, not the worker
            self.metrics_server = metrics.serve_beside(settings.metrics_port, resources.database)

    def shutdown(self, consumer: Any) -> None:
        """After the pool stopped: stop heartbeating, mark the row inactive, settle leftovers."""
        if self.heartbeat is not None:
            self.heartbeat.deactivate("shut down", _finishing(resources.settings))
            self.heartbeat = None
        metrics.stop(self.metrics_server)
        self.metrics_server = None
        if self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            self.metrics_dir = None


def _finishing(settings: Settings) -> Finishing:
    """The rules' execution-finished hook (imported late: it sends through this app)."""
    from attune.worker.dispatch import RuleFinishing

    return RuleFinishing(settings)


def _pool_name(controller: Any) -> str:
    """``prefork``, ``threads``, ``solo``…: the last part of the pool class's module."""
    return str(getattr(controller, "pool_cls", object).__module__.rsplit(".", 1)[-1])


class EventBatching(bootsteps.StartStopStep):
    """Consumer bootstep: publish buffered task events in batches, off the task's path.

    Celery flushes its buffered task events on the next event-loop turn, one blocking broker
    round trip per event or two; every such round trip delays the next message's delivery to
    the pool. Flushing at most every :data:`EVENT_FLUSH_S` instead sends the same events
    (``task.multi``), a little later and in a few publishes. The dispatcher still flushes at
    once when its buffer fills, and this step flushes what is left at shutdown.
    """

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.pending = False

    def start(self, consumer: Any) -> None:
        """Replace the per-turn flush of the (re)started dispatcher with a deferred one."""
        dispatcher, hub = consumer.event_dispatcher, consumer.hub
        if dispatcher is None or hub is None:
            return

        def flush() -> None:
            self.pending = False
            dispatcher.flush()

        def schedule_flush() -> None:
            # Called by whichever thread sent the event (pool threads with -P threads); the
            # timer itself is set from the loop's thread.
            if not self.pending:
                self.pending = True
                hub.call_soon(lambda: hub.call_later(EVENT_FLUSH_S, flush))

        self.pending = False
        dispatcher.on_send_buffered = schedule_flush

    def shutdown(self, consumer: Any) -> None:
        """Send the events still buffered before the dispatcher closes."""
        if consumer.event_dispatcher is not None:
            consumer.event_dispatcher.flush()


EVENT_FLUSH_S = 0.05
"""The longest a task event waits in the worker before it is published."""

app.steps["consumer"].add(Liveness)
app.steps["consumer"].add(EventBatching)
