"""Trigger events: recorded once (unique per rule tick and per type + dedup key), listed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from attune.store.models import TRIGGER_EVENT_TABLE, EventStatus

_T = TRIGGER_EVENT_TABLE.c


@dataclass(frozen=True)
class Event:
    """One recorded event, as rules see it (the ``event`` template root)."""

    id: int
    type: str
    payload: Mapping[str, Any]
    status: str = EventStatus.FIRED
    source: str = ""
    rule_id: int | None = None
    fire_time: datetime | None = None
    dedup_key: str | None = None
    received_at: datetime | None = None

    def context(self) -> dict[str, Any]:
        """The ``event`` root of a rule's templates."""
        scheduled = self.fire_time.isoformat() if self.fire_time else None
        received = self.received_at.isoformat() if self.received_at else None
        return {
            "id": self.id,
            "type": self.type,
            "scheduled_at": scheduled,
            "received_at": received,
            "source": self.source,
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``attune events list --json``)."""
        return {
            **self.context(),
            "rule_id": self.rule_id,
            "status": self.status,
            "dedup_key": self.dedup_key,
            "payload": dict(self.payload),
        }


def insert_ignoring(session: Session, table: Table) -> Insert:
    """``INSERT INTO table … ON CONFLICT DO NOTHING`` in the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def record(
    session: Session,
    trigger_type: str,
    payload: Mapping[str, Any],
    *,
    status: str = EventStatus.FIRED,
    source: str = "",
    rule_id: int | None = None,
    fire_time: datetime | None = None,
    dedup_key: str | None = None,
) -> Event | None:
    """Insert one event in the caller's transaction; None when it already exists (the same
    rule tick, or the same type and dedup key): nothing new is recorded then."""
    values: dict[str, Any] = {
        "type": trigger_type,
        "payload": dict(payload),
        "status": status,
        "source": source,
        "rule_id": rule_id,
        "fire_time": fire_time,
        "dedup_key": dedup_key,
    }
    statement = insert_ignoring(session, TRIGGER_EVENT_TABLE)
    row = session.execute(statement.values(**values).returning(_T.id, _T.received_at)).first()
    if row is None:
        return None
    return Event(id=row.id, received_at=row.received_at, **values)


def recent(
    session: Session,
    *,
    rule_id: int | None = None,
    trigger_type: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Event]:
    """The newest events first, optionally of one rule, type and status."""
    query = select(TRIGGER_EVENT_TABLE).order_by(_T.id.desc()).limit(limit)
    if rule_id is not None:
        query = query.where(_T.rule_id == rule_id)
    if trigger_type is not None:
        query = query.where(_T.type == trigger_type)
    if status is not None:
        query = query.where(_T.status == status)
    return [Event(**row._asdict()) for row in session.execute(query)]
