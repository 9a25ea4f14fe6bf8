"""Timers: one pass over the due cursors fires each tick exactly once, however many beats run.

A pass (:func:`tick`) reads the cursors whose ``next_fire_time`` has come (one indexed query;
nothing else when none is due), computes each rule's due ticks from its schedule, applies the
misfire policy (:func:`plan`), and in one transaction moves each cursor with a conditional
UPDATE (0 rows: another beat moved it first, so this pass leaves that rule alone), records the
tick events (a unique (rule, fire_time) refuses a second copy) and enforces the fired ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from attune import metrics
from attune.rules import triggers
from attune.rules.enforcement import Enforced, enforce_all
from attune.rules.events import Event
from attune.rules.schedules import Schedule, schedule_of
from attune.rules.selection import RULE_COLUMNS, rule_row
from attune.rules.spec import MAX_CATCHUP, MisfirePolicy
from attune.settings import Settings
from attune.store.bulk import insert_rows, update_rows, update_statement
from attune.store.db import Database
from attune.store.models import RULE_TABLE, RULE_TIMER_TABLE, TRIGGER_EVENT_TABLE, EventStatus
from attune.store.sqltypes import UTCDateTime, db_now

_R = RULE_TABLE.c
_C = RULE_TIMER_TABLE.c
_T = TRIGGER_EVENT_TABLE.c


@dataclass(frozen=True)
class Plan:
    """What to do with a rule's due ticks: fire these, record those missed (``missed_count``
    counts every tick not fired, also those past the cap that are not recorded)."""

    fire: tuple[datetime, ...]
    missed: tuple[datetime, ...]
    missed_count: int


def plan(ticks: Sequence[datetime], now: datetime, policy: str, grace_s: float) -> Plan:
    """Apply the misfire policy to ``ticks`` (ordered, all ≤ ``now``).

    A tick at most ``grace_s`` late is on time and fires. Late ticks: ``once`` fires the latest
    when no tick is on time, ``skip`` fires none, ``all`` fires each; at most
    :data:`~attune.rules.spec.MAX_CATCHUP` fire (the latest) and as many are recorded missed.
    """
    on_time = [tick for tick in ticks if (now - tick).total_seconds() <= grace_s]
    late = list(ticks[: len(ticks) - len(on_time)])
    if policy == MisfirePolicy.ALL:
        fire = (late + on_time)[-MAX_CATCHUP:]
    elif policy == MisfirePolicy.ONCE and late and not on_time:
        fire = [late[-1]]
    else:
        fire = on_time[-MAX_CATCHUP:]
    fired = set(fire)
    missed = [tick for tick in ticks if tick not in fired]
    return Plan(tuple(fire), tuple(missed[-MAX_CATCHUP:]), len(missed))


@dataclass(frozen=True)
class TickReport:
    """What one pass did: ticks fired and recorded missed, cursors another beat had moved,
    and the enforcements (whose executions the caller sends after the commit)."""

    fired: int = 0
    missed: int = 0
    raced: int = 0
    enforced: tuple[Enforced, ...] = field(default=())


_DUE_COLUMNS = (
    _C.last_fire_time,
    _C.params_hash,
    *RULE_COLUMNS,
    _R.misfire_policy,
    _R.misfire_grace_s,
)


def _due(now: Any) -> Any:
    return (
        select(*_DUE_COLUMNS, now.label("pass_at"))
        .join(RULE_TABLE, _R.id == _C.rule_id)
        .where(_C.next_fire_time <= now, _R.enabled.is_(True))
        .order_by(_C.rule_id)  # one lock order for every beat: no deadlock between two
        .with_for_update(of=RULE_TIMER_TABLE, skip_locked=True)
    )


# With nothing due, a pass is this one indexed query (the database clock is read in it).
_DUE_NOW = _due(db_now())
_DUE_AT = _due(bindparam("now", type_=UTCDateTime()))
# A cursor moves only from where this pass read it (another beat may have moved it).
_MOVE_WHERE = {"rule_id": "b_rule_id", "last_fire_time": "b_old", "params_hash": "b_params_hash"}
_MOVE_VALUES = {"last_fire_time": "b_new", "next_fire_time": "b_next"}
_MOVE = update_statement(RULE_TIMER_TABLE, _MOVE_WHERE, _MOVE_VALUES)


def tick(database: Database, settings: Settings, now: datetime | None = None) -> TickReport:
    """One pass over the due timer cursors, at ``now`` (default: the database clock).

    Safe with any number of concurrent passes: each tick is fired by exactly one of them.
    PostgreSQL locks the due cursors it reads (``FOR UPDATE SKIP LOCKED``: a second pass skips
    them rather than wait); on both databases the cursors move by conditional UPDATE.
    """
    with database.session_scope() as session:
        due = session.execute(_DUE_NOW if now is None else _DUE_AT, {"now": now}).all()
        if not due:
            return TickReport()
        moment = due[0].pass_at
        moves = [_Move.of(row, moment) for row in due]
        won = _move(session, moves)
        events_rows: list[dict[str, Any]] = []
        for move in moves:
            if move.row.id in won:
                events_rows += move.event_rows(moment)
        recorded = _record_events(session, events_rows)
        pairs = [
            (event, rule_row(move.row))
            for move in moves
            for event in recorded.get(move.row.id, ())
            if event.status == EventStatus.FIRED
        ]
        enforced = enforce_all(session, settings, pairs)
    missed = 0
    for found in recorded.values():
        for event in found:
            if event.status == EventStatus.MISSED:
                missed += 1
                metrics.record_event(event.type, EventStatus.MISSED)
    # A timer event selects its own rule alone: one enforcement per pair, in order.
    for (event, _), outcome in zip(pairs, enforced, strict=True):
        lag_s = (moment - event.fire_time).total_seconds() if event.fire_time else None
        metrics.record_event(event.type, EventStatus.FIRED, [outcome.status], lag_s)
    return TickReport(len(pairs), missed, len(due) - len(won), tuple(enforced))


@dataclass(frozen=True)
class _Move:
    """One due cursor: its ticks, the plan for them, and where the cursor goes."""

    row: Any
    schedule: Schedule
    decided: Plan
    new_last: datetime
    next_at: datetime | None

    @classmethod
    def of(cls, row: Any, now: datetime) -> _Move:
        schedule = schedule_of(row.trigger_type, row.trigger_params)
        ticks = schedule.due(row.last_fire_time, now)
        new_last = ticks[-1] if ticks else row.last_fire_time
        decided = plan(ticks, now, row.misfire_policy, row.misfire_grace_s)
        return cls(row, schedule, decided, new_last, schedule.next_after(new_last))

    def params(self) -> dict[str, Any]:
        return {
            "b_rule_id": self.row.id,
            "b_old": self.row.last_fire_time,
            "b_params_hash": self.row.params_hash,
            "b_new": self.new_last,
            "b_next": self.next_at,
        }

    def event_rows(self, now: datetime) -> list[dict[str, Any]]:
        """The trigger_event rows of this cursor's ticks: missed ones, then fired ones."""
        common = {"type": self.row.trigger_type, "source": "timer", "rule_id": self.row.id}
        rows = [
            {
                **common,
                "fire_time": moment,
                "status": EventStatus.MISSED.value,
                "payload": {"scheduled_at": moment.isoformat()},
            }
            for moment in self.decided.missed
        ]
        for moment in self.decided.fire:
            missed = self.decided.missed_count if moment == self.decided.fire[-1] else 0
            payload = _payload(self.row, self.schedule, moment, now, missed)
            rows.append(
                {
                    **common,
                    "fire_time": moment,
                    "status": EventStatus.FIRED.value,
                    "payload": payload,
                }
            )
        return rows


def _move(session: Session, moves: Sequence[_Move]) -> set[int]:
    """Move the cursors by conditional UPDATE; the rule ids whose cursor this pass moved."""
    if session.get_bind().dialect.name == "postgresql":
        # The due SELECT locked the cursors, re-read at their latest committed values: every
        # conditional UPDATE holds, so they go in one statement.
        rows = [move.params() for move in moves]
        update_rows(session, RULE_TIMER_TABLE, rows, _MOVE_WHERE, _MOVE_VALUES)
        return {move.row.id for move in moves}
    won = set()
    for move in moves:  # SQLite: another process may have moved one since it was read
        if session.execute(_MOVE, move.params()).rowcount:  # type: ignore[attr-defined]
            won.add(move.row.id)
    return won


def _record_events(session: Session, rows: Sequence[dict[str, Any]]) -> dict[int, list[Event]]:
    """Insert the tick events, ignoring any already there; the inserted ones, by rule."""
    if not rows:
        return {}
    returning = (_T.id, _T.rule_id, _T.fire_time, _T.received_at)
    recorded = insert_rows(session, TRIGGER_EVENT_TABLE, rows, returning, ignore_conflicts=True)
    inserted = {(row.rule_id, row.fire_time): row for row in recorded}
    found: dict[int, list[Event]] = {}
    for values in rows:
        row = inserted.get((values["rule_id"], values["fire_time"]))
        if row is None:  # the unique (rule, fire_time) kept an earlier copy
            continue
        event = Event(id=row.id, received_at=row.received_at, dedup_key=None, **values)
        found.setdefault(values["rule_id"], []).append(event)
    return found


def _payload(
    row: Any, schedule: Schedule, moment: datetime, now: datetime, missed: int
) -> dict[str, Any]:
    """The ``trigger`` root of a tick: when it was due, when it fired, how late, how many
    ticks before it were not fired."""
    payload: dict[str, Any] = {
        "scheduled_at": moment.isoformat(),
        "fired_at": now.isoformat(),
        "lag_ms": round((now - moment).total_seconds() * 1000),
    }
    if row.trigger_type == triggers.INTERVAL:
        payload.update(interval_s=schedule.interval_s, missed=missed)
    elif row.trigger_type == triggers.CRON:
        payload.update(
            scheduled_local=schedule.local(moment).isoformat(),
            timezone=schedule.timezone,
            expression=schedule.expression,
            missed=missed,
        )
    return payload
