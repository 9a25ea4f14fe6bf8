"""Emit: record an event of any known trigger type from code or the shell, and enforce it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from attune import metrics
from attune.rules import events, firing, triggers
from attune.rules.enforcement import Enforced, enforce
from attune.rules.selection import selected_rules
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import TRIGGER_EVENT_TABLE, EventStatus

_T = TRIGGER_EVENT_TABLE.c


@dataclass(frozen=True)
class Emitted:
    """What an emit recorded: the event (or the earlier one with the same dedup key)."""

    event_id: int
    duplicate: bool = False
    enforcements: tuple[Enforced, ...] = field(default=())


def emit(
    database: Database,
    settings: Settings,
    trigger_type: str,
    payload: Mapping[str, Any],
    *,
    dedup_key: str | None = None,
    source: str = "emit",
) -> Emitted:
    """Validate ``payload`` against the type, record the event and enforce its rules, in one
    transaction; a repeated ``dedup_key`` records nothing and fires nothing (``duplicate``).

    Raises :class:`~attune.errors.TriggerError` for an unknown type or a refused payload.
    """
    kind = triggers.trigger_type(trigger_type)
    kind.validate_payload(payload)
    depth = int(payload.get("depth", 0)) if kind.ref == triggers.EXECUTION_FINISHED else -1
    fired = firing.fire(
        database, settings, kind.ref, payload, dedup_key=dedup_key, source=source, depth=depth
    )
    if fired is not None:
        event_id, enforced = fired.event_id, list(fired.enforcements)
    else:  # the general path, which also learns the rules for the next firings
        with database.session_scope() as session:
            event = events.record(session, kind.ref, payload, source=source, dedup_key=dedup_key)
            if event is None:
                earlier = session.scalar(
                    select(_T.id).where(_T.type == kind.ref, _T.dedup_key == dedup_key)
                )
                return Emitted(int(earlier or 0), duplicate=True)
            signature = firing.read_signature(session, kind.ref)
            actions: dict[str, Any] = {}
            rules = selected_rules(session, settings, kind.ref, actions)
            enforced = enforce(session, settings, event, rules, depth=depth, actions=actions)
        if signature is not None:
            firing.remember(database, kind.ref, signature, rules)
        event_id = event.id
    metrics.record_event(kind.ref, EventStatus.FIRED, [item.status for item in enforced])
    return Emitted(event_id, enforcements=tuple(enforced))
