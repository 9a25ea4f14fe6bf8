"""The stale-worker sweep: deactivate stale workers and settle what they held.

Every function takes the caller's session and leaves the commit to it;
:func:`attune.liveness.announcements.announce` logs, signals and counts a sweep once it is
committed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    Text,
    any_,
    bindparam,
    case,
    exists,
    func,
    literal,
    select,
    true,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from attune.executions import completion, endings, overdue
from attune.liveness.freshness import is_stale
from attune.liveness.reports import STOPPED_HEARTBEATING, Deactivation, SweepReport
from attune.settings import Settings
from attune.store.models import (
    EVENT_RELAY_TABLE,
    EXECUTION_TABLE,
    HELD_STATUSES,
    RELAY_SETTING,
    RELAY_TTL_S,
    WORKER_TABLE,
    ExecutionStatus,
    WorkerStatus,
)
from attune.store.sqltypes import cutoff, db_now, in_constants, utc_text

_NAMES_PER_STATEMENT = 500  # well under SQLite's bound-parameter limit
# The tables themselves: heartbeats and sweeps are Core statements, without ORM bookkeeping.
_W = WORKER_TABLE
_E = EXECUTION_TABLE


def sweep(
    session: Session, settings: Settings, now: datetime | None = None, *, events: bool = False
) -> SweepReport:
    """Deactivate stale workers, abandon their executions, fail scheduled ones left too long;
    with ``events``, record the execution-finished events of those it ended, from their rows
    (:mod:`attune.executions.endings`), for the caller to enforce before it commits.

    Idempotent, and safe to run concurrently: every change is a conditional UPDATE whose
    condition is re-checked on the locked row, so a second sweep finds nothing left to do and a
    heartbeat or a finishing execution that commits first wins. Run it in one transaction (the
    caller's). On PostgreSQL it is one statement.
    """
    owed = overdue.EVERY
    if session.get_bind().dialect.name == "postgresql":
        rows, failed, event_ids, owed = _sweep_in_one_statement(session, settings, now, events)
    else:
        found = session.execute(_deactivate_stale(settings, now)).all()
        ended: list[int] = []
        abandoned = abandon(session, [row.name for row in found], _stopped_heartbeating, ended)
        rows = [(row.name, row.last_heartbeat, abandoned[row.name]) for row in found]
        unpicked = _fail_unpicked(settings, now, events)
        unpicked_ids = [] if unpicked is None else list(session.execute(unpicked).scalars())
        failed = len(unpicked_ids)
        event_ids = endings.record_for(session, ended + unpicked_ids) if events else []
    deactivated = tuple(
        Deactivation(name, last_heartbeat, count) for name, last_heartbeat, count in sorted(rows)
    )
    dispatches = tuple(overdue.catch_up(session, settings, now, owed))
    return SweepReport(deactivated, failed, dispatches, tuple(event_ids))


def _deactivate_stale(settings: Settings, now: datetime | None) -> Any:
    """The UPDATE marking stale active workers inactive, returning their names and heartbeats."""
    return (
        update(_W)
        .where(_W.c.status == WorkerStatus.ACTIVE.value, is_stale(settings, now))
        .values(status=WorkerStatus.INACTIVE.value, updated_at=db_now())
        .returning(_W.c.name, _W.c.last_heartbeat)
    )


# The statements per (threshold, scheduled timeout, resend interval, events) on the database
# clock: built once per process, not on every sweep (building them costs more than a round trip).
_STATEMENTS: dict[tuple[float, float, float, bool], tuple[Any, Any]] = {}


def _sweep_in_one_statement(
    session: Session, settings: Settings, now: datetime | None, events: bool
) -> tuple[list[tuple[str, datetime | None, int]], int, list[int], overdue.Owed]:
    """PostgreSQL: deactivate, settle and fail the unpicked in one round trip; the dead
    workers with their counts, how many scheduled executions failed, the events, and what
    overdue work is left to catch up with."""
    if now is None:
        key = (
            settings.staleness_threshold_s,
            settings.scheduled_timeout_s,
            settings.resend_after_s,
            events,
        )
        statements = _STATEMENTS.get(key)
        if statements is None:
            statements = _STATEMENTS[key] = _statements(settings, now, events)
    else:  # an injected clock is bound into the statements
        statements = _statements(settings, now, events)
    statement, after = statements
    # The row trigger is silent meanwhile: what finished goes in a few notifications. Whether
    # an API process relays the transitions is looked up once, not by the trigger per row.
    session.execute(_QUIET)
    # The batch size is read at each sweep, not frozen into the statement built once.
    rows = session.execute(statement, {"per_notification": completion.IDS_PER_NOTIFICATION}).all()
    # The trigger speaks again, and the same round trip asks which overdue work there is.
    owed = overdue.Owed(*session.execute(after).one()[1:])
    dead_rows = [(row[0], row[1], int(row[2])) for row in rows if row[0] is not None]
    return dead_rows, int(rows[0].failed), list(rows[0].events or []), owed


def _statements(settings: Settings, now: datetime | None, events: bool) -> tuple[Any, Any]:
    """The sweep's one statement, and the one after it: the trigger's bulk setting off, and
    the :func:`attune.executions.overdue.probe` (after the sweep, so it sees the attempts
    the sweep abandoned)."""
    bulk_off = func.set_config(completion.BULK_SETTING, literal("off"), True)
    return _one_statement(settings, now, events), select(bulk_off, *overdue.probe(settings, now))


def _one_statement(settings: Settings, now: datetime | None, events: bool) -> Any:
    """The sweep as data-modifying CTEs, with ``events`` inserting the ended executions'
    events from the rows returned: one row per dead worker (name, last heartbeat, executions
    abandoned), each with the count failed, the notifications sent and the event ids."""
    stale = _deactivate_stale(settings, now)
    unpicked = _fail_unpicked(settings, now, events)
    dead = stale.cte("dead")
    # worker = ANY(ARRAY(SELECT name FROM dead)) lets the planner probe the index of held
    # executions by worker for the dead workers' instead of scanning every running execution.
    dead_names = func.array(select(dead.c.name).scalar_subquery())
    abandoned = (
        update(_E)
        .where(
            _E.c.worker == dead.c.name,
            _E.c.worker == any_(dead_names),
            in_constants(_E.c.status, HELD_STATUSES),
        )
        .values(
            status=ExecutionStatus.ABANDONED.value,
            error=_stopped_heartbeating(dead.c),
            finished_at=db_now(),
        )
        .returning(_E.c.worker, *(endings.ENDED_COLUMNS if events else (_E.c.id,)))
        .cte("abandoned")
    )
    counts = (
        select(abandoned.c.worker, func.count().label("abandoned"))
        .group_by(abandoned.c.worker)
        .subquery("counts")
    )
    settled = (
        select(dead.c.name, dead.c.last_heartbeat, func.coalesce(counts.c.abandoned, 0))
        .select_from(dead.outerjoin(counts, counts.c.worker == dead.c.name))
        .subquery("settled")
    )
    # One row per dead worker, or a single row of NULLs when none died: the count of failed
    # scheduled executions rides on every row, so it is never lost.
    unpicked_rows = None if unpicked is None else unpicked.cte("unpicked")
    failed = (
        literal(0)
        if unpicked_rows is None
        else select(func.count()).select_from(unpicked_rows).scalar_subquery()
    )
    finished = select(abandoned.c.id)
    if unpicked_rows is not None:
        finished = finished.union_all(select(unpicked_rows.c.id))  # type: ignore[assignment]
    ended = (abandoned,) if unpicked_rows is None else (abandoned, unpicked_rows)
    event_ids = endings.recorded_ids(ended) if events else literal(None)
    found = select(
        failed.label("failed"), _announce(finished).label("notified"), event_ids.label("events")
    ).subquery("failed")
    return select(*settled.c, found.c.failed, found.c.notified, found.c.events).select_from(
        found.outerjoin(settled, true())
    )


_RELAYED = exists().where(EVENT_RELAY_TABLE.c.seen_at > cutoff(RELAY_TTL_S, None))
_QUIET = select(
    func.set_config(completion.BULK_SETTING, literal("on"), True),
    func.set_config(RELAY_SETTING, case((_RELAYED, literal("on")), else_=literal("off")), True),
)


def _announce(finished: Any) -> Any:
    """``NOTIFY attune_execution_done`` of the ``finished`` ids, a JSON array per
    :data:`~attune.executions.completion.IDS_PER_NOTIFICATION`; how many were sent."""
    ids = finished.subquery("finished")
    numbered = select(
        ids.c.id,
        ((func.row_number().over() - 1) // bindparam("per_notification")).label("batch"),
    ).subquery("numbered")
    batches = (
        select(sql_cast(func.json_agg(numbered.c.id), Text()).label("payload"))
        .group_by(numbered.c.batch)
        .subquery("batches")
    )
    notified = func.pg_notify(completion.NOTIFY_CHANNEL, batches.c.payload)
    return select(func.count(notified)).select_from(batches).scalar_subquery()


def _stopped_heartbeating(columns: Any) -> ColumnElement[str]:
    """The abandoned execution's error, from a row with the worker's name and last heartbeat."""
    error = "worker " + columns.name + f" {STOPPED_HEARTBEATING}; last heartbeat "
    return error + utc_text(columns.last_heartbeat)  # type: ignore[no-any-return]


def abandon(
    session: Session,
    names: Sequence[str],
    error: Callable[[Any], ColumnElement[str]],
    ended: list[int] | None = None,
) -> Counter[str]:
    """Settle the running and canceling executions of ``names`` as abandoned.

    ``error`` builds the error from the worker table's columns (joined by name); the ids of
    the executions it abandoned are appended to ``ended``.
    """
    counts: Counter[str] = Counter()
    for start in range(0, len(names), _NAMES_PER_STATEMENT):
        rows = session.execute(
            update(_E)
            .where(
                _E.c.worker == _W.c.name,
                _W.c.name.in_(names[start : start + _NAMES_PER_STATEMENT]),
                in_constants(_E.c.status, HELD_STATUSES),
            )
            .values(status=ExecutionStatus.ABANDONED.value, error=error(_W.c), finished_at=db_now())
            .returning(_E.c.worker, _E.c.id)
        ).all()
        counts.update(row.worker for row in rows)
        if ended is not None:
            ended.extend(row.id for row in rows)
    return counts


def _fail_unpicked(settings: Settings, now: datetime | None, events: bool) -> Any:
    """The UPDATE failing scheduled executions no worker picked up in time (None: disabled),
    returning their ids (with ``events``, what their events are made of)."""
    timeout_s = settings.scheduled_timeout_s
    if timeout_s <= 0:
        return None
    # Counted from eligible_at: a pending retry waits its delay first. A gated execution
    # that waited for a slot that long says so.
    error = case(
        (_E.c.gate_key.is_(None), literal(f"not picked up by any worker within {timeout_s:g} s")),
        else_=_waited(timeout_s),
    )
    return (
        update(_E)
        .where(
            in_constants(_E.c.status, (ExecutionStatus.SCHEDULED,)),
            _E.c.eligible_at <= cutoff(timeout_s, now),
        )
        .values(status=ExecutionStatus.FAILED.value, error=error, finished_at=db_now())
        .returning(*(endings.ENDED_COLUMNS if events else (_E.c.id,)))
    )


def _waited(timeout_s: float) -> ColumnElement[str]:
    """The error of a gated execution that waited too long, naming its gate's limit."""
    text = literal(f"waited {timeout_s:g} s for a concurrency slot (limit ", String())
    return text + sql_cast(_E.c.gate_limit, String()) + literal(")", String())
