"""Retention: delete terminal executions older than a number of days, never one still going."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func
from sqlalchemy.orm import Session

from attune.store.models import TERMINAL_STATUSES, Execution
from attune.store.sqltypes import cutoff

SECONDS_PER_DAY = 86_400


def purge(session: Session, older_than_days: float, now: datetime | None = None) -> int:
    """Delete executions that ended at least ``older_than_days`` ago; returns how many.

    Age is judged on the database clock (or an injected ``now``), from ``finished_at``
    (``requested_at`` for a terminal row that has none).
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
    return cast("CursorResult[Any]", result).rowcount
