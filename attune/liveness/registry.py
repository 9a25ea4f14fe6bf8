"""Workers: registration, heartbeats, the stale-worker sweep, and who can run what.

Freshness is judged on the database clock only, by one SQL expression (:func:`is_stale`) that
the sweep, the scheduler's availability check (:func:`unavailable_reason`) and the listing all
use: a worker is stale when it never heartbeated or its heartbeat is at least
``Settings.staleness_threshold_s`` old. Every function here takes the caller's session and
leaves the commit to it; :func:`announce` logs, signals and counts a sweep once it is committed.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    any_,
    bindparam,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from attune import metrics
from attune.liveness.signals import WorkerTransition, worker_deactivated, worker_reactivated
from attune.settings import Settings
from attune.store.models import (
    EXECUTION_TABLE,
    TRANSITIONS,
    WORKER_TABLE,
    Execution,
    ExecutionStatus,
    Worker,
    WorkerStatus,
)
from attune.store.sqltypes import cutoff, db_now, json_array_has, seconds_since, utc_text

logger = logging.getLogger(__name__)

# The states of the executions a worker holds: what its stop abandons, what `list` counts.
_ABANDONABLE = tuple(sorted(TRANSITIONS[ExecutionStatus.ABANDONED]))
STOPPED_HEARTBEATING = "stopped heartbeating"
"""The cause of a deactivation by the sweep."""

_NAMES_PER_STATEMENT = 500  # well under SQLite's bound-parameter limit
# The tables themselves: heartbeats and sweeps are Core statements, without ORM bookkeeping.
_W = WORKER_TABLE
_E = EXECUTION_TABLE


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
class Deactivation:
    """A worker that went inactive, its last heartbeat, and how many executions it abandoned.

    ``cause`` is :data:`STOPPED_HEARTBEATING` for a swept worker, else what the worker said
    as it shut down.
    """

    name: str
    last_heartbeat: datetime | None
    abandoned: int
    cause: str = STOPPED_HEARTBEATING

    @property
    def reason(self) -> str:
        """Why, in words; an abandoned execution's error is "worker <name> <reason>"."""
        if self.cause != STOPPED_HEARTBEATING:
            return self.cause
        return f"{STOPPED_HEARTBEATING}; last heartbeat {_when(self.last_heartbeat)}"


@dataclass(frozen=True)
class SweepReport:
    """What one sweep changed."""

    deactivated: tuple[Deactivation, ...] = ()
    failed_scheduled: int = 0

    @property
    def abandoned(self) -> int:
        """Executions settled as abandoned, over every deactivated worker."""
        return sum(worker.abandoned for worker in self.deactivated)

    def counts(self) -> dict[str, int]:
        """The counts, for a task result or a log line."""
        return {
            "deactivated": len(self.deactivated),
            "abandoned": self.abandoned,
            "failed_scheduled": self.failed_scheduled,
        }


@dataclass(frozen=True)
class WorkerView:
    """One row of ``attune workers list``; ages are on the database clock."""

    name: str
    status: str
    runtimes: tuple[str, ...]
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
            "host": self.host,
            "pid": self.pid,
            "last_heartbeat": None
            if self.last_heartbeat is None
            else self.last_heartbeat.isoformat(),
            "heartbeat_age_s": self.heartbeat_age_s,
            "stale": self.stale,
            "running": self.running,
        }


def is_stale(settings: Settings, now: datetime | None = None) -> ColumnElement[bool]:
    """The freshness rule: no heartbeat, or one at least the staleness threshold old.

    Judged on the database clock; tests inject ``now`` to stand for it.
    """
    return _stale(settings.staleness_threshold_s, now)


def _stale(threshold_s: float, now: datetime | None) -> ColumnElement[bool]:
    threshold = cutoff(threshold_s, now)
    return or_(_W.c.last_heartbeat.is_(None), _W.c.last_heartbeat <= threshold)


@functools.lru_cache(maxsize=64)
def serving(threshold_s: float, runtime: str | ColumnElement[str]) -> ColumnElement[bool]:
    """An active worker, stale after ``threshold_s``, serves ``runtime`` (a name, or a column
    such as an action's). Built once per runtime and threshold: asked on every execute()."""
    return exists().where(
        _W.c.status == WorkerStatus.ACTIVE.value,
        not_(_stale(threshold_s, None)),
        json_array_has(_W.c.runtimes, runtime),
    )


def no_worker_reason(runtime: str) -> str:
    """Why an execution of a ``runtime`` action cannot be routed to any worker."""
    return f"no active worker serves runtime {runtime!r}"


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
    insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    statement = insert(_W).values(row)
    statement = statement.on_conflict_do_update(
        index_elements=[_W.c.name],
        set_={column: statement.excluded[column] for column in row if column != "name"},
    )
    session.execute(statement)


def heartbeat(session: Session, name: str) -> HeartbeatOutcome:
    """Heartbeat now on the database clock; a worker the sweep made inactive is active again.

    The usual case is one UPDATE of an active row (a HOT update: no indexed column changes).
    Only when it finds none does a second UPDATE reactivate the row, so the outcome is exact even
    when a sweep commits in between: each statement re-checks ``status`` on the row it locks.
    """
    if _changed(session.execute(_BEAT, {"worker_name": name})):
        return HeartbeatOutcome.ALIVE
    if _changed(session.execute(_REACTIVATE, {"worker_name": name})):
        return HeartbeatOutcome.REACTIVATED
    return HeartbeatOutcome.MISSING


# Built once: a heartbeat runs every few seconds on every worker, so skip rebuilding it each time.
_BEAT = (
    update(_W)
    .where(_W.c.name == bindparam("worker_name"), _W.c.status == WorkerStatus.ACTIVE.value)
    .values(last_heartbeat=db_now())
)
_REACTIVATE = (
    update(_W)
    .where(_W.c.name == bindparam("worker_name"), _W.c.status != WorkerStatus.ACTIVE.value)
    .values(last_heartbeat=db_now(), status=WorkerStatus.ACTIVE.value, updated_at=db_now())
)


def _changed(result: Any) -> bool:
    return bool(cast("CursorResult[Any]", result).rowcount)


def deactivate(
    session: Session, name: str, *, host: str, pid: int, reason: str
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
    abandoned = _abandon(session, [name], lambda _workers: literal(f"worker {name} {reason}"))
    return Deactivation(name, last_heartbeat[0], abandoned[name], reason)


def sweep(session: Session, settings: Settings, now: datetime | None = None) -> SweepReport:
    """Deactivate stale workers, abandon their executions, fail scheduled ones left too long.

    Idempotent, and safe to run concurrently: every change is a conditional UPDATE whose
    condition is re-checked on the locked row, so a second sweep finds nothing left to do and a
    heartbeat or a finishing execution that commits first wins. Run it in one transaction (the
    caller's). On PostgreSQL it is one statement.
    """
    stale = (
        update(_W)
        .where(_W.c.status == WorkerStatus.ACTIVE.value, is_stale(settings, now))
        .values(status=WorkerStatus.INACTIVE.value, updated_at=db_now())
        .returning(_W.c.name, _W.c.last_heartbeat)
    )
    if _dialect(session) == "postgresql":
        rows = _sweep_in_one_statement(session, stale)
    else:
        found = session.execute(stale).all()
        abandoned = _abandon(session, [row.name for row in found], _stopped_heartbeating)
        rows = [(row.name, row.last_heartbeat, abandoned[row.name]) for row in found]
    deactivated = tuple(
        Deactivation(name, last_heartbeat, count) for name, last_heartbeat, count in sorted(rows)
    )
    return SweepReport(deactivated, _fail_unpicked(session, settings, now))


def _sweep_in_one_statement(session: Session, stale: Any) -> list[tuple[str, datetime | None, int]]:
    """PostgreSQL: deactivate and settle in one round trip (data-modifying CTEs)."""
    dead = stale.cte("dead")
    # worker = ANY(ARRAY(SELECT name FROM dead)) lets the planner probe the (worker, status)
    # index for the dead workers' executions instead of scanning every running execution.
    dead_names = func.array(select(dead.c.name).scalar_subquery())
    abandoned = (
        update(_E)
        .where(
            _E.c.worker == dead.c.name,
            _E.c.worker == any_(dead_names),
            _E.c.status.in_(_ABANDONABLE),
        )
        .values(
            status=ExecutionStatus.ABANDONED.value,
            error=_stopped_heartbeating(dead.c),
            finished_at=db_now(),
        )
        .returning(_E.c.worker)
        .cte("abandoned")
    )
    counts = (
        select(abandoned.c.worker, func.count().label("abandoned"))
        .group_by(abandoned.c.worker)
        .subquery("counts")
    )
    rows = session.execute(
        select(
            dead.c.name, dead.c.last_heartbeat, func.coalesce(counts.c.abandoned, 0)
        ).select_from(dead.outerjoin(counts, counts.c.worker == dead.c.name))
    ).all()
    return [(name, last_heartbeat, int(count)) for name, last_heartbeat, count in rows]


def _stopped_heartbeating(columns: Any) -> ColumnElement[str]:
    """The abandoned execution's error, from a row with the worker's name and last heartbeat."""
    error = "worker " + columns.name + f" {STOPPED_HEARTBEATING}; last heartbeat "
    return error + utc_text(columns.last_heartbeat)  # type: ignore[no-any-return]


def _abandon(
    session: Session, names: Sequence[str], error: Callable[[Any], ColumnElement[str]]
) -> Counter[str]:
    """Settle the running and canceling executions of ``names`` as abandoned.

    ``error`` builds the error from the worker table's columns (joined by name).
    """
    counts: Counter[str] = Counter()
    for start in range(0, len(names), _NAMES_PER_STATEMENT):
        rows = session.execute(
            update(_E)
            .where(
                _E.c.worker == _W.c.name,
                _W.c.name.in_(names[start : start + _NAMES_PER_STATEMENT]),
                _E.c.status.in_(_ABANDONABLE),
            )
            .values(status=ExecutionStatus.ABANDONED.value, error=error(_W.c), finished_at=db_now())
            .returning(_E.c.worker)
        ).scalars()
        counts.update(rows)
    return counts


def _fail_unpicked(session: Session, settings: Settings, now: datetime | None) -> int:
    timeout_s = settings.scheduled_timeout_s
    if timeout_s <= 0:
        return 0
    result = session.execute(
        update(_E)
        .where(
            _E.c.status == ExecutionStatus.SCHEDULED.value,
            _E.c.requested_at <= cutoff(timeout_s, now),
        )
        .values(
            status=ExecutionStatus.FAILED.value,
            error=f"not picked up by any worker within {timeout_s:g} s",
            finished_at=db_now(),
        )
    )
    return int(cast("CursorResult[Any]", result).rowcount)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def unavailable_reason(
    session: Session, settings: Settings, runtime: str, name: str | None = None
) -> str | None:
    """None when an active, fresh worker serves ``runtime`` (the named one, if given); else why not.

    One SQL statement, judged on the database clock.
    """
    if name is None:
        available = session.connection().scalar(
            select(serving(settings.staleness_threshold_s, runtime))
        )
        return None if available else no_worker_reason(runtime)
    serves = json_array_has(Worker.runtimes, runtime)
    row = session.execute(
        select(
            Worker.status,
            is_stale(settings).label("stale"),
            seconds_since(Worker.last_heartbeat).label("age_s"),
            serves.label("serves"),
        ).where(Worker.name == name)
    ).first()
    if row is None:
        return f"worker {name!r} is not registered"
    if row.status != WorkerStatus.ACTIVE:
        return f"worker {name!r} is {row.status}"
    if row.stale:
        ago = "never heartbeated" if row.age_s is None else f"last heartbeat {row.age_s:.1f} s ago"
        return f"worker {name!r} is stale ({ago})"
    if not row.serves:
        return f"worker {name!r} does not serve runtime {runtime!r}"
    return None


def list_workers(session: Session, settings: Settings) -> list[WorkerView]:
    """Every worker by name, with its heartbeat age, staleness and running executions."""
    running = (
        select(func.count())
        .where(Execution.worker == Worker.name, Execution.status.in_(_ABANDONABLE))
        .scalar_subquery()
    )
    rows = session.execute(
        select(
            Worker.name,
            Worker.status,
            Worker.runtimes,
            Worker.host,
            Worker.pid,
            Worker.last_heartbeat,
            seconds_since(Worker.last_heartbeat).label("age_s"),
            is_stale(settings).label("stale"),
            running.label("running"),
        ).order_by(Worker.name)
    )
    return [
        WorkerView(
            name=row.name,
            status=row.status,
            runtimes=tuple(row.runtimes),
            host=row.host,
            pid=row.pid,
            last_heartbeat=row.last_heartbeat,
            heartbeat_age_s=None if row.age_s is None else max(0.0, float(row.age_s)),
            stale=bool(row.stale),
            running=int(row.running),
        )
        for row in rows
    ]


def announce(report: SweepReport) -> None:
    """After the sweep committed: one log record, one signal and the counts per deactivation."""
    for deactivation in report.deactivated:
        announce_deactivation(deactivation)
    if report.failed_scheduled:
        logger.warning(
            "failed %d scheduled execution(s) that no worker picked up in time",
            report.failed_scheduled,
            extra={"event": "scheduled_timeout", "failed": report.failed_scheduled},
        )


def announce_deactivation(deactivation: Deactivation, *, expected: bool = False) -> None:
    """Log, signal and count one worker that went inactive (call it after the commit).

    ``expected`` (a worker shutting itself down) logs at INFO unless executions were abandoned.
    """
    quiet = expected and not deactivation.abandoned
    logger.log(
        logging.INFO if quiet else logging.WARNING,
        "worker %s deactivated: %s; %d execution(s) abandoned",
        deactivation.name,
        deactivation.reason,
        deactivation.abandoned,
        extra={
            "event": "worker_deactivated",
            "worker": deactivation.name,
            "last_heartbeat": _when(deactivation.last_heartbeat),
            "abandoned": deactivation.abandoned,
        },
    )
    metrics.count_deactivations()
    metrics.count_abandoned(deactivation.abandoned)
    worker_deactivated.send(
        WorkerTransition(
            worker=deactivation.name,
            status=WorkerStatus.INACTIVE.value,
            reason=deactivation.reason,
            last_heartbeat=deactivation.last_heartbeat,
            abandoned_executions=deactivation.abandoned,
        )
    )


def announce_reactivation(name: str) -> None:
    """Log, signal and count a worker that heartbeats again after it was deactivated."""
    reason = "heartbeat received while inactive"
    logger.warning(
        "worker %s reactivated: %s",
        name,
        reason,
        extra={"event": "worker_reactivated", "worker": name},
    )
    metrics.count_reactivation()
    worker_reactivated.send(
        WorkerTransition(
            worker=name, status=WorkerStatus.ACTIVE.value, reason=reason, last_heartbeat=None
        )
    )


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
