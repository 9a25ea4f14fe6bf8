"""The Celery app of attune and the per-process resources its tasks use.

Celery is imported here and in :mod:`attune.tasks` only. The database engine of a worker
process is created on first use after fork, never at import.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from attune.db import Database
from attune.errors import AttuneError
from attune.settings import Settings

app = Celery("attune")
app.config_from_object("celeryconfig")


class ProcessResources:
    """Settings and database of the current process, created lazily and reset after fork."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._database: Database | None = None
        self.worker_name: str = socket.gethostname()

    @property
    def settings(self) -> Settings:
        """This process's settings, read from the environment once."""
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    @property
    def database(self) -> Database:
        """This process's database, connected on first use."""
        if self._database is None:
            self._database = Database.from_settings(self.settings)
        return self._database

    def forget_database(self) -> None:
        """Drop the engine inherited through fork without closing the parent's connections."""
        if self._database is not None:
            self._database.engine.dispose(close=False)
            self._database = None


resources = ProcessResources()
"""The resources of this process (one per worker process, one per caller process)."""


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    resources.forget_database()


class EmbeddedWorker:
    """A Celery worker inside the calling process, on Celery's in-memory transport.

    It is Celery's own worker machinery (a WorkController with a thread pool), registered in
    the worker table like any other; it stops when :meth:`stop` is called or the process exits.
    """

    def __init__(self, concurrency: int = 4, ready_timeout_s: float = 30.0) -> None:
        self._concurrency = concurrency
        self._ready_timeout_s = ready_timeout_s
        self._lock = threading.Lock()
        self._controller: Any = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the worker thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker (once) and return when it consumes its queues."""
        with self._lock:
            if self.running:
                return
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
            atexit.register(self.stop)

    def stop(self) -> None:
        """Warm shutdown: running executions finish, then the worker row goes inactive."""
        with self._lock:
            if self._controller is None or self._thread is None:
                return
            self._controller.stop()
            self._thread.join()
            self._controller, self._thread = None, None


embedded_worker = EmbeddedWorker()
"""This process's embedded worker (started by the first ``execute`` on ``memory://``)."""
