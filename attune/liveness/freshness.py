"""Worker freshness: the one rule for "stale", and who can run what.

Freshness is judged on the database clock only, by one SQL expression (:func:`is_stale`) that
the sweep, the scheduler's availability check (:func:`unavailable_reason`) and the listing all
use: a worker is stale when it never heartbeated or its heartbeat is at least
``Settings.staleness_threshold_s`` old.
"""

from __future__ import annotations

import functools
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    exists,
    not_,
    or_,
    select,
)
from sqlalchemy.orm import Session

from attune.settings import Settings
from attune.store.models import (
    WORKER_TABLE,
    Worker,
    WorkerStatus,
)
from attune.store.sqltypes import cutoff, json_array_has, seconds_since

# The tables themselves: heartbeats and sweeps are Core statements, without ORM bookkeeping.
_W = WORKER_TABLE


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
