"""The Celery app of attune and the per-process resources its tasks use.

Celery is imported here and in :mod:`attune.tasks` only. The database engine of a worker
process is created on first use after fork, never at import.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from attune.db import Database
from attune.settings import Settings

app = Celery("attune")
app.config_from_object("celeryconfig")


class ProcessResources:
    """Settings and database of the current process, created lazily and reset after fork."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._database: Database | None = None

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
