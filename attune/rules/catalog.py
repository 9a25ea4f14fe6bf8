"""The loaded rules as their operators see them: find, list, enable, disable, enforcements,
and what each did lately (its last events with their verdicts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from attune.errors import RuleNotFoundError
from attune.rules.triggers import TIMER_TYPES
from attune.rules.upsert import sync_timer
from attune.store.models import (
    ENFORCEMENT_TABLE,
    EXECUTION_TABLE,
    TRIGGER_EVENT_TABLE,
    Rule,
    RuleTimer,
)
from attune.store.sqltypes import db_now

_E = ENFORCEMENT_TABLE.c
_T = TRIGGER_EVENT_TABLE.c
_X = EXECUTION_TABLE.c


@dataclass(frozen=True)
class RuleView:
    """One rule with its timer cursor (when it is an enabled timer)."""

    rule: Rule
    last_fire_time: datetime | None
    next_fire_time: datetime | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        rule = self.rule
        return {
            "ref": rule.ref,
            "enabled": rule.enabled,
            "description": rule.description,
            "trigger": {"type": rule.trigger_type, "params": rule.trigger_params},
            "misfire": {"policy": rule.misfire_policy, "grace_s": rule.misfire_grace_s},
            "criteria": rule.criteria,
            "action": {"ref": rule.action_ref, "parameters": rule.action_parameters},
            "file": rule.file,
            "last_fire_time": _iso(self.last_fire_time),
            "next_fire_time": _iso(self.next_fire_time),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def list_rules(session: Session, ref: str | None = None) -> list[RuleView]:
    """Every loaded rule (or only ``ref``), ordered by ref, with its cursor."""
    query = (
        select(Rule, RuleTimer.last_fire_time, RuleTimer.next_fire_time)
        .outerjoin(RuleTimer, RuleTimer.rule_id == Rule.id)
        .order_by(Rule.ref)
    )
    if ref is not None:
        query = query.where(Rule.ref == ref)
    return [RuleView(row[0], row[1], row[2]) for row in session.execute(query)]


def find_rule(session: Session, ref: str) -> RuleView:
    """The rule ``ref``; raises :class:`RuleNotFoundError` when none is loaded."""
    found = list_rules(session, ref)
    if not found:
        raise RuleNotFoundError(ref)
    return found[0]


def set_enabled(session: Session, ref: str, enabled: bool) -> bool:
    """Enable or disable rule ``ref``; True when that changed it. A re-enabled timer starts
    now (nothing is backfilled)."""
    rule = find_rule(session, ref).rule
    if rule.enabled == enabled:
        return False
    session.execute(
        update(Rule).where(Rule.id == rule.id).values(enabled=enabled, updated_at=db_now())
    )
    sync_timer(session, rule.id, rule.trigger_type, rule.trigger_params, enabled)
    return True


def recent_enforcements(
    session: Session, *, rule_ref: str | None = None, status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest enforcements first, as JSON-ready dicts, optionally of one rule and status."""
    query = select(ENFORCEMENT_TABLE).order_by(_E.id.desc()).limit(limit)
    if rule_ref is not None:
        query = query.where(_E.rule_ref == rule_ref)
    if status is not None:
        query = query.where(_E.status == status)
    return [
        {**row._asdict(), "created_at": row.created_at.isoformat()}
        for row in session.execute(query)
    ]


@dataclass(frozen=True)
class Activity:
    """One event a rule saw and its verdict: ``verdict`` is None for a tick that was missed
    (nothing ran, the misfire policy said so), ``reason`` says why when nothing else ran."""

    event_id: int
    event_status: str
    scheduled_at: datetime | None
    received_at: datetime
    verdict: str | None
    reason: str
    execution_id: int | None
    execution_status: str | None


_ACTIVITY = select(
    _T.id.label("event_id"),
    _T.status.label("event_status"),
    _T.fire_time.label("scheduled_at"),
    _T.received_at,
    _E.status.label("verdict"),
    _E.reason,
    _E.execution_id,
    _X.status.label("execution_status"),
)


def activity(session: Session, view: RuleView, limit: int = 5) -> list[Activity]:
    """The last ``limit`` events of ``view``'s rule, newest first, each with its enforcement and
    that one's execution: a timer's own ticks (missed ones too), else the events it enforced.
    One indexed query either way."""
    rule = view.rule
    if rule.trigger_type in TIMER_TYPES:
        joined = TRIGGER_EVENT_TABLE.outerjoin(
            ENFORCEMENT_TABLE, and_(_E.event_id == _T.id, _E.rule_id == rule.id)
        )
        query = _ACTIVITY.where(_T.rule_id == rule.id).order_by(_T.fire_time.desc())
    else:
        joined = ENFORCEMENT_TABLE.join(TRIGGER_EVENT_TABLE, _T.id == _E.event_id)
        query = _ACTIVITY.where(_E.rule_ref == rule.ref).order_by(_E.id.desc())
    found = query.select_from(joined.outerjoin(EXECUTION_TABLE, _X.id == _E.execution_id))
    return [Activity(**row._asdict()) for row in session.execute(found.limit(limit))]
