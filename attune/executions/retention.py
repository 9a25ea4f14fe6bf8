"""Retention: delete terminal executions older than a number of days, never one still going."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, exists, func, select
from sqlalchemy.orm import Session

from attune.store.models import TERMINAL_STATUSES, Enforcement, Execution, TriggerEvent
from attune.store.sqltypes import cutoff

SECONDS_PER_DAY = 86_400


def purge(session: Session, older_than_days: float, now: datetime | None = None) -> int:
    """Delete executions that ended at least ``older_than_days`` ago; returns how many.

    Age is judged on the database clock (or an injected ``now``), from ``finished_at``
    (``requested_at`` for a terminal row that has none). Trigger events received as long ago
    go too, with their enforcements, unless one of their executions is still kept.
    """
    ended_at = func.coalesce(Execution.finished_at, Execution.requested_at)
    result = session.execute(
        delete(Execution)
        .where(
            Execution.status.in_([status.value for status in TERMINAL_STATUSES]),
            ended_at <= cutoff(older_than_days * SECONDS_PER_DAY, now),
        )
        .execution_options(synchronize_session=False)
    )
    kept = exists(
        select(Enforcement.id)
        .join(Execution, Execution.id == Enforcement.execution_id)
        .where(Enforcement.event_id == TriggerEvent.id)
    )
    session.execute(
        delete(TriggerEvent)
        .where(TriggerEvent.received_at <= cutoff(older_than_days * SECONDS_PER_DAY, now), ~kept)
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount
