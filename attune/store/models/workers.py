"""Workers and the record of periodic passes, both on the database clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CheckConstraint, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from attune.store.models.base import WORKER_ROLES, Base, WorkerStatus, _created, _values
from attune.store.sqltypes import UTCDateTime, one_of


class Worker(Base):
    """A worker process that registered itself; ``last_heartbeat`` is on the database clock."""

    __tablename__ = "worker"
    __table_args__ = (
        CheckConstraint(one_of("status", _values(WorkerStatus)), name="status"),
        CheckConstraint(one_of("worker_role", WORKER_ROLES), name="worker_role"),
        # Half-empty pages keep room for HOT heartbeat updates (migration 20261128_0003).
        {"postgresql_with": {"fillfactor": 50}},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    worker_role: Mapped[str] = mapped_column(String(32), default="action")
    runtimes: Mapped[list[str]] = mapped_column(default=list)
    queues: Mapped[list[str]] = mapped_column(default=list)
    host: Mapped[str] = mapped_column(Text, default="")
    pid: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=WorkerStatus.ACTIVE)
    capabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Deliberately unindexed: an index here would turn every heartbeat into a non-HOT update.
    last_heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class PeriodicRun(Base):
    """When a watched periodic pass (the sweep, :data:`SWEEP_RUN`) last ran, on the database clock.

    One row per pass, written by whoever ran it (beat, the embedded loop, the CLI, the task).
    """

    __tablename__ = "periodic_run"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


SWEEP_RUN = "sweep"
"""The :class:`PeriodicRun` name of the stale-worker sweep."""


WORKER_TABLE = cast(Table, Worker.__table__)
"""The worker model's Core table, for statements built once
(:meth:`attune.store.db.Database.run`)."""

PERIODIC_RUN_TABLE = cast(Table, PeriodicRun.__table__)
"""The periodic-run model's Core table, for statements built once."""
