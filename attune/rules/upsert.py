"""Write a pack's rules by ref (checking their actions), prune removed ones, keep timer cursors."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from attune.errors import ParameterError
from attune.executions.params import resolve
from attune.rules.schedules import schedule_of
from attune.rules.spec import RULE_COLUMNS, RuleSpec, trigger_hash
from attune.rules.triggers import TRIGGER_TYPES
from attune.store.models import ACTION_TABLE, RULE_TABLE, RULE_TIMER_TABLE
from attune.store.sqltypes import db_now

# Core tables: loading a pack configures no ORM mapper.
_A = ACTION_TABLE.c
_R = RULE_TABLE.c
_T = RULE_TIMER_TABLE.c


@dataclass(frozen=True)
class RuleReport:
    """What writing a pack's rules did."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0

    @property
    def wrote(self) -> bool:
        """True when any rule row changed."""
        return bool(self.created + self.updated + self.removed)


def action_problems(session: Session, rules: Sequence[RuleSpec]) -> list[str]:
    """Each rule whose action is not loaded, or whose static parameters its schema refuses."""
    refs = {rule.action_ref for rule in rules}
    query = select(_A.ref, _A.parameters).where(_A.ref.in_(refs))
    schemas: dict[str, dict[str, Any]] = {row.ref: row.parameters for row in session.execute(query)}
    problems = []
    for rule in rules:
        where = f"{rule.source}: action"
        schema = schemas.get(rule.action_ref)
        if schema is None:
            problems.append(f"{where}.ref: no action {rule.action_ref!r} is loaded")
            continue
        templates = rule.templates()
        templated = {name for name, template in templates.items() if not template.is_static}
        unknown = sorted(templated - set(schema))
        problems += [f"{where}.parameters.{name}: unknown parameter" for name in unknown]
        static = {name: rule.parameters[name] for name in rule.parameters if name not in templated}
        try:
            resolve(rule.action_ref, schema, static)
        except ParameterError as error:
            problems += [
                f"{where}.parameters.{problem}"
                for problem in error.problems
                if problem.partition(":")[0] not in templated
            ]
    return problems


def upsert_rules(session: Session, pack_id: int, rules: Sequence[RuleSpec]) -> RuleReport:
    """Write ``rules`` for pack ``pack_id`` in the caller's transaction (upsert by ref, prune
    the pack's other rules); a timer's cursor is kept while its trigger and enabled state hold."""
    stored = {
        row.ref: row
        for row in session.execute(
            select(_R.id, *(_R[name] for name in RULE_COLUMNS)).where(_R.pack_id == pack_id)
        )
    }
    created = updated = 0
    for rule in rules:
        columns = rule.columns()
        row = stored.pop(rule.ref, None)
        if row is None:
            rule_id = session.execute(
                insert(RULE_TABLE).values(pack_id=pack_id, **columns).returning(_R.id)
            ).scalar_one()
            created += 1
        else:
            rule_id = row.id
            changed = {
                key: value for key, value in columns.items() if _differs(row._mapping[key], value)
            }
            if not changed:
                continue
            session.execute(
                update(RULE_TABLE).where(_R.id == rule_id).values(**changed, updated_at=db_now())
            )
            updated += 1
        sync_timer(session, rule_id, rule.trigger_type, rule.trigger_params, rule.enabled)
    if stored:
        session.execute(delete(RULE_TABLE).where(_R.id.in_([row.id for row in stored.values()])))
    return RuleReport(created, updated, len(rules) - created - updated, len(stored))


def _differs(stored: object, value: object) -> bool:
    """True unless the two are the same JSON (``1`` is not ``true``)."""
    return json.dumps(stored, sort_keys=True) != json.dumps(value, sort_keys=True)


def sync_timer(
    session: Session,
    rule_id: int,
    trigger_type: str,
    params: Mapping[str, Any],
    enabled: bool,
    now: datetime | None = None,
) -> None:
    """Give an enabled timer rule a cursor starting now (nothing backfilled), keep a cursor
    whose trigger is unchanged, and drop the cursor of a disabled or non-timer rule."""
    kind = TRIGGER_TYPES.get(trigger_type)
    if kind is None or not kind.is_timer or not enabled:
        session.execute(delete(RULE_TIMER_TABLE).where(_T.rule_id == rule_id))
        return
    params_hash = trigger_hash(trigger_type, params)
    held = session.scalar(select(_T.params_hash).where(_T.rule_id == rule_id))
    if held == params_hash:
        return
    moment = now or session.scalar(select(db_now()))
    assert moment is not None
    values = {
        "params_hash": params_hash,
        "last_fire_time": moment,
        "next_fire_time": schedule_of(trigger_type, params).next_after(moment),
    }
    if held is None:
        session.execute(insert(RULE_TIMER_TABLE).values(rule_id=rule_id, **values))
    else:
        session.execute(update(RULE_TIMER_TABLE).where(_T.rule_id == rule_id).values(**values))
