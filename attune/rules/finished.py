"""The execution-finished trigger: one event per execution, in the transaction that ended it."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.orm import Session

from attune import metrics
from attune.rules import events, triggers
from attune.rules.enforcement import Enforced, enforce, selected_rules
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, RULE_TABLE, EventStatus

MAX_RESULT_CHARS = 16_384
"""A finished execution's ``result`` goes into the event payload only up to this size (JSON)."""

RULES_SEEN_FOR_S = 1.0
"""How long a process trusts its last look at whether any execution-finished rule is enabled."""

_X = EXECUTION_TABLE.c
_R = RULE_TABLE.c
_ANY_RULE = select(
    exists().where(_R.trigger_type == triggers.EXECUTION_FINISHED, _R.enabled.is_(True))
)
_FINISHED = select(
    _X.action_ref, _X.status, _X.exit_code, _X.parameters, _X.result, _X.trigger_depth
).where(_X.id == bindparam("execution_id"))
_seen: dict[str, tuple[float, bool]] = {}
_lock = threading.Lock()


def rules_enabled(database: Database) -> bool:
    """True when an enabled execution-finished rule exists (looked up at most once a second
    per process: a rule loaded meanwhile applies within about a second)."""
    key = str(database.engine.url)
    now = time.monotonic()
    with _lock:
        seen = _seen.get(key)
    if seen is not None and now - seen[0] < RULES_SEEN_FOR_S:
        return seen[1]
    with database.session_scope(autocommit=True) as session:
        present = bool(session.scalar(_ANY_RULE))
    with _lock:
        _seen[key] = (now, present)
    return present


def _result(value: Any) -> Any:
    text = json.dumps(value)
    return value if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS]


def record_finished(session: Session, settings: Settings, execution_id: int) -> list[Enforced]:
    """Record the execution-finished event of ``execution_id`` (already terminal in this
    transaction) and enforce its rules; the dedup key makes it one event per execution."""
    row = session.execute(_FINISHED, {"execution_id": execution_id}).one()
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
        source="execution",
        dedup_key=f"exec:{execution_id}:{row.status}",
    )
    if event is None:
        return []
    actions: dict[str, Any] = {}
    rules = selected_rules(session, settings, triggers.EXECUTION_FINISHED, actions)
    enforced = enforce(session, settings, event, rules, depth=row.trigger_depth, actions=actions)
    statuses = [item.status for item in enforced]
    metrics.record_event(triggers.EXECUTION_FINISHED, EventStatus.FIRED, statuses)
    return enforced
