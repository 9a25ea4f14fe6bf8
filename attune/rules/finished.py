"""The execution-finished trigger: one event per execution, in the transaction that ended it."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from attune import metrics
from attune.executions import endings
from attune.rules import events, triggers
from attune.rules.enforcement import Enforced, enforce
from attune.rules.selection import selected_rules
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, RULE_TABLE, EventStatus

RULES_SEEN_FOR_S = 1.0
"""How long a process trusts its last look at the enabled execution-finished rules."""

_X = EXECUTION_TABLE.c
_R = RULE_TABLE.c
_WATCHING = select(_R.trigger_params).where(
    _R.trigger_type == triggers.EXECUTION_FINISHED, _R.enabled.is_(True)
)
_FINISHED = select(
    _X.action_ref, _X.status, _X.exit_code, _X.parameters, _X.result, _X.trigger_depth
).where(_X.id == bindparam("execution_id"))


_seen: dict[str, tuple[float, tuple[triggers.Watch, ...]]] = {}
_lock = threading.Lock()


def watches(database: Database) -> tuple[triggers.Watch, ...]:
    """The enabled execution-finished rules' selections (looked up at most once a second per
    process: a rule loaded or enabled meanwhile applies within about a second)."""
    key = database.key
    now = time.monotonic()
    with _lock:
        seen = _seen.get(key)
    if seen is not None and now - seen[0] < RULES_SEEN_FOR_S:
        return seen[1]
    with database.session_scope(autocommit=True) as session:
        found = tuple(triggers.watch_of(params) for params in session.scalars(_WATCHING))
    with _lock:
        _seen[key] = (now, found)
    return found


def watched(database: Database, action_ref: str | None = None, status: str | None = None) -> bool:
    """True when an enabled execution-finished rule would select an execution of
    ``action_ref`` ending ``status`` (None: either not known yet)."""
    return any(watch.selects(action_ref, status) for watch in watches(database))


def _result(value: Any) -> Any:
    text = json.dumps(value)
    return value if len(text) <= endings.MAX_RESULT_CHARS else text[: endings.MAX_RESULT_CHARS]


def record_finished(session: Session, settings: Settings, execution_id: int) -> list[Enforced]:
    """Record the execution-finished event of ``execution_id`` (already terminal in this
    transaction) and enforce its rules; the dedup key makes it one event per execution."""
    row = session.execute(_FINISHED, {"execution_id": execution_id}).one()
    actions: dict[str, Any] = {}
    rules = selected_rules(session, settings, triggers.EXECUTION_FINISHED, actions)
    if not any(rule.watch.selects(row.action_ref, row.status) for rule in rules):
        return []  # no rule's trigger params select it: no event, as the sweep's SQL decides
    payload = {
        "execution_id": execution_id,
        "action_ref": row.action_ref,
        "status": row.status,
        "exit_code": row.exit_code,
        "parameters": row.parameters,
        "result": _result(row.result),
        "depth": row.trigger_depth,
    }
    event = events.record(
        session,
        triggers.EXECUTION_FINISHED,
        payload,
        source=endings.EVENT_SOURCE,
        dedup_key=endings.dedup_key(execution_id, row.status),
    )
    if event is None:
        return []
    enforced = enforce(session, settings, event, rules, depth=row.trigger_depth, actions=actions)
    statuses = [item.status for item in enforced]
    metrics.record_event(triggers.EXECUTION_FINISHED, EventStatus.FIRED, statuses)
    return enforced
