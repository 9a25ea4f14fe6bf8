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

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from attune import metrics
from attune.rules import events, triggers
from attune.rules.enforcement import Enforced, RuleRow, enforce, rule_row
from attune.rules.schedules import Schedule, schedule_of
from attune.rules.spec import MAX_CATCHUP, MisfirePolicy
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import RULE_TABLE, RULE_TIMER_TABLE, EventStatus
from attune.store.sqltypes import UTCDateTime, db_now

_R = RULE_TABLE.c
_C = RULE_TIMER_TABLE.c


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
    _R.id,
    _R.ref,
    _R.trigger_type,
    _R.trigger_params,
    _R.criteria,
    _R.action_ref,
    _R.action_parameters,
    _R.misfire_policy,
    _R.misfire_grace_s,
)


def _due(now: Any) -> Any:
    return (
        select(*_DUE_COLUMNS, now.label("pass_at"))
        .join(RULE_TABLE, _R.id == _C.rule_id)
        .where(_C.next_fire_time <= now, _R.enabled.is_(True))
        .order_by(_C.rule_id)  # one lock order for every beat: no deadlock between two
    )


# With nothing due, a pass is this one indexed query (the database clock is read in it).
_DUE_NOW = _due(db_now())
_DUE_AT = _due(bindparam("now", type_=UTCDateTime()))
_MOVE = (
    update(RULE_TIMER_TABLE)
    .where(
        _C.rule_id == bindparam("b_rule_id"),
        _C.last_fire_time == bindparam("b_old"),
        _C.params_hash == bindparam("b_params_hash"),
    )
    .values(last_fire_time=bindparam("b_new"), next_fire_time=bindparam("b_next"))
)


def tick(database: Database, settings: Settings, now: datetime | None = None) -> TickReport:
    """One pass over the due timer cursors, at ``now`` (default: the database clock).

    Safe with any number of concurrent passes: each tick is fired by exactly one of them.
    """
    with database.session_scope() as session:
        due = session.execute(_DUE_NOW if now is None else _DUE_AT, {"now": now}).all()
        if not due:
            return TickReport()
        moment = due[0].pass_at
        fired = missed = raced = 0
        enforced: list[Enforced] = []
        actions: dict[str, Any] = {}
        for row in due:
            outcome = _fire(session, settings, row, moment, actions)
            if outcome is None:
                raced += 1
                continue
            fired += outcome[0]
            missed += outcome[1]
            enforced += outcome[2]
    return TickReport(fired, missed, raced, tuple(enforced))


def _fire(
    session: Session, settings: Settings, row: Any, now: datetime, actions: dict[str, Any]
) -> tuple[int, int, list[Enforced]] | None:
    """Move one cursor and record its ticks; None when another pass moved it first."""
    schedule = schedule_of(row.trigger_type, row.trigger_params)
    ticks = schedule.due(row.last_fire_time, now)
    new_last = ticks[-1] if ticks else row.last_fire_time
    moved = session.execute(
        _MOVE,
        {
            "b_rule_id": row.id,
            "b_old": row.last_fire_time,
            "b_params_hash": row.params_hash,
            "b_new": new_last,
            "b_next": schedule.next_after(new_last),
        },
    )
    if not moved.rowcount:  # type: ignore[attr-defined]
        return None
    decided = plan(ticks, now, row.misfire_policy, row.misfire_grace_s)
    for moment in decided.missed:
        payload = {"scheduled_at": moment.isoformat()}
        recorded = events.record(
            session,
            row.trigger_type,
            payload,
            status=EventStatus.MISSED,
            source="timer",
            rule_id=row.id,
            fire_time=moment,
        )
        if recorded is not None:
            metrics.record_event(row.trigger_type, EventStatus.MISSED)
    rule = rule_row(row)
    enforced: list[Enforced] = []
    for moment in decided.fire:
        last = moment == decided.fire[-1]
        payload = _payload(row, schedule, moment, now, decided.missed_count if last else 0)
        enforced += _fire_tick(session, settings, rule, (moment, now), payload, actions)
    return len(decided.fire), len(decided.missed), enforced


def _fire_tick(
    session: Session,
    settings: Settings,
    rule: RuleRow,
    when: tuple[datetime, datetime],
    payload: dict[str, Any],
    actions: dict[str, Any],
) -> list[Enforced]:
    moment, now = when
    event = events.record(
        session, rule.trigger_type, payload, source="timer", rule_id=rule.id, fire_time=moment
    )
    if event is None:  # the unique (rule, fire_time) kept a manual or earlier copy
        return []
    done = enforce(session, settings, event, [rule], actions=actions)
    lag_s = (now - moment).total_seconds()
    metrics.record_event(rule.trigger_type, EventStatus.FIRED, [e.status for e in done], lag_s)
    return done


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
