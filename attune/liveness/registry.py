"""The worker table: registration, heartbeats, a worker's own deactivation, and the listing.

Every function takes the caller's session and leaves the commit to it, except the heartbeat:
it runs on its own every few seconds on every worker, so it commits each statement itself.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from attune.liveness.freshness import is_stale
from attune.liveness.reports import Deactivation
from attune.liveness.sweep import abandon
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import (
    EXECUTION_TABLE,
    HELD_STATUSES,
    WORKER_TABLE,
    Execution,
    Worker,
    WorkerStatus,
)
from attune.store.sqltypes import db_now, in_constants, seconds_since

# The tables themselves: heartbeats and sweeps are Core statements, without ORM bookkeeping.
_W = WORKER_TABLE


@dataclass(frozen=True)
class Registration:
    """What a worker tells the table about itself when it starts."""

    name: str
    runtimes: tuple[str, ...]
    queues: tuple[str, ...]
    host: str
    pid: int
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    role: str = "action"


class HeartbeatOutcome(enum.StrEnum):
    """What one heartbeat found."""

    ALIVE = "alive"
    REACTIVATED = "reactivated"
    MISSING = "missing"


@dataclass(frozen=True)
class WorkerView:
    """One row of ``attune workers list``; ages are on the database clock."""

    name: str
    status: str
    runtimes: tuple[str, ...]
    queues: tuple[str, ...]
    host: str
    pid: int | None
    last_heartbeat: datetime | None
    heartbeat_age_s: float | None
    stale: bool
    running: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "status": self.status,
            "runtimes": list(self.runtimes),
            "queues": list(self.queues),
            "host": self.host,
            "pid": self.pid,
            "last_heartbeat": None
            if self.last_heartbeat is None
            else self.last_heartbeat.isoformat(),
            "heartbeat_age_s": self.heartbeat_age_s,
            "stale": self.stale,
            "running": self.running,
        }


def register(session: Session, registration: Registration) -> None:
    """Insert or refresh the worker's row by name: ``active``, heartbeat now (database clock)."""
    row: dict[str, Any] = {
        "name": registration.name,
        "worker_role": registration.role,
        "runtimes": list(registration.runtimes),
        "queues": list(registration.queues),
        "host": registration.host,
        "pid": registration.pid,
        "capabilities": dict(registration.capabilities),
        "status": WorkerStatus.ACTIVE.value,
        "last_heartbeat": db_now(),
        "updated_at": db_now(),
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(_W).values(row)
    statement = statement.on_conflict_do_update(
        index_elements=[_W.c.name],
        set_={column: statement.excluded[column] for column in row if column != "name"},
    )
    session.execute(statement)


def heartbeat(database: Database, name: str) -> HeartbeatOutcome:
    """Heartbeat now on the database clock; a worker the sweep made inactive is active again.

    The usual case is one autocommit UPDATE of an active row (:meth:`Database.run`: a prebuilt
    statement on a held connection, no Session, no BEGIN/COMMIT round trips; a HOT update: no
    indexed column changes). Only when it finds none does a second UPDATE reactivate the row,
    so the outcome is exact even when a sweep commits in between: each statement re-checks
    ``status`` on the row it locks.
    """
    if database.run(_BEAT, {"worker_name": name}):
        return HeartbeatOutcome.ALIVE
    if database.run(_REACTIVATE, {"worker_name": name}):
        return HeartbeatOutcome.REACTIVATED
    return HeartbeatOutcome.MISSING


# Built once: a heartbeat runs every few seconds on every worker, so skip rebuilding it each time.
# RETURNING says whether a row changed (run() returns rows, not a rowcount).
_BEAT = (
    update(_W)
    .where(_W.c.name == bindparam("worker_name"), _W.c.status == WorkerStatus.ACTIVE.value)
    .values(last_heartbeat=db_now())
    .returning(_W.c.id)
)


_REACTIVATE = (
    update(_W)
    .where(_W.c.name == bindparam("worker_name"), _W.c.status != WorkerStatus.ACTIVE.value)
    .values(last_heartbeat=db_now(), status=WorkerStatus.ACTIVE.value, updated_at=db_now())
    .returning(_W.c.id)
)


def deactivate(
    session: Session,
    name: str,
    *,
    host: str,
    pid: int,
    reason: str,
    ended: list[int] | None = None,
) -> Deactivation | None:
    """Mark this process's row ``inactive``; its executions still going are abandoned.

    ``reason`` completes "worker <name> …" in the executions' error, e.g. "shut down".
    Only the row registered by ``host`` and ``pid`` is touched, so a worker shutting down never
    deactivates a newer process that took its name. None when the row is not ours (any more).
    """
    last_heartbeat = session.execute(
        update(_W)
        .where(_W.c.name == name, _W.c.host == host, _W.c.pid == pid)
        .values(status=WorkerStatus.INACTIVE.value, updated_at=db_now())
        .returning(_W.c.last_heartbeat)
    ).first()
    if last_heartbeat is None:
        return None
    abandoned = abandon(session, [name], lambda _workers: literal(f"worker {name} {reason}"), ended)
    return Deactivation(name, last_heartbeat[0], abandoned[name], reason)


def list_workers(session: Session, settings: Settings) -> list[WorkerView]:
    """Every worker by name, with its heartbeat age, running executions, and ``stale``: active
    but with a heartbeat past the threshold (dead and not yet swept; never true once inactive)."""
    running = (
        select(func.count())
        .where(
            Execution.worker == Worker.name, in_constants(EXECUTION_TABLE.c.status, HELD_STATUSES)
        )
        .scalar_subquery()
    )
    rows = session.execute(
        select(
            Worker.name,
            Worker.status,
            Worker.runtimes,
            Worker.queues,
            Worker.host,
            Worker.pid,
            Worker.last_heartbeat,
            seconds_since(Worker.last_heartbeat).label("age_s"),
            and_(Worker.status == WorkerStatus.ACTIVE.value, is_stale(settings)).label("stale"),
            running.label("running"),
        ).order_by(Worker.name)
    )
    return [
        WorkerView(
            name=row.name,
            status=row.status,
            runtimes=tuple(row.runtimes),
            queues=tuple(row.queues),
            host=row.host,
            pid=row.pid,
            last_heartbeat=row.last_heartbeat,
            heartbeat_age_s=None if row.age_s is None else max(0.0, float(row.age_s)),
            stale=bool(row.stale),
            running=int(row.running),
        )
        for row in rows
    ]
