"""The settings and database of the current process, made on first use (no I/O at import).

Kept apart from the Celery app (:mod:`attune.worker.app` uses it too) so that commands which
only need the database, such as ``attune packs load``, do not import Celery.
"""

from __future__ import annotations

import os
import socket

from attune.settings import Settings
from attune.store.db import Database


class ProcessResources:
    """Settings and database of the current process, created lazily and reset after fork."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._database: Database | None = None
        self.worker_name: str = socket.gethostname()
        """This process's worker name (set when a worker starts; inherited by its pool)."""
        self.main_pid: int = os.getpid()
        """The pid of the worker's main process (set when a worker starts; inherited)."""

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

    def configure(self, settings: Settings) -> None:
        """Use ``settings`` from now on (for callers that build Settings themselves)."""
        if self._database is not None:
            self._database.dispose()
            self._database = None
        self._settings = settings

    def forget_database(self) -> None:
        """Drop the engine inherited through fork without closing the parent's connections."""
        if self._database is not None:
            self._database.engine.dispose(close=False)
            self._database = None


resources = ProcessResources()
"""The resources of this process (one per worker process, one per caller process)."""
