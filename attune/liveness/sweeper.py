"""The sweeper, watched: every sweep is recorded, and anyone can ask how long ago the last ran.

Whoever sweeps — beat, the embedded loop, ``attune workers sweep``, the ``attune.sweep_workers``
task — calls :func:`sweep_and_record`: the sweep and its record (``periodic_run``, on the
database clock) commit in one transaction, so a sweep is recorded exactly when its changes are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from attune.executions.records import Finishing
from attune.liveness import sweep as sweeps
from attune.liveness.announcements import announce
from attune.liveness.reports import SweepReport
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import PERIODIC_RUN_TABLE, SWEEP_RUN
from attune.store.sqltypes import db_now

OVERDUE_INTERVALS = 3
"""The sweeper is overdue when no sweep ran within this many sweep intervals."""

_R = PERIODIC_RUN_TABLE


@dataclass(frozen=True)
class SweeperStatus:
    """When the last sweep ran and whether that is too long ago; ages on the database clock."""

    last_sweep_at: datetime | None
    last_sweep_age_s: float | None
    sweep_interval_s: float

    @property
    def overdue(self) -> bool:
        """No sweep ever, or none within the last :data:`OVERDUE_INTERVALS` sweep intervals."""
        limit_s = OVERDUE_INTERVALS * self.sweep_interval_s
        return self.last_sweep_age_s is None or self.last_sweep_age_s > limit_s

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``attune workers sweeper --json``)."""
        return {
            "last_sweep_at": None if self.last_sweep_at is None else self.last_sweep_at.isoformat(),
            "last_sweep_age_s": self.last_sweep_age_s,
            "sweep_interval_s": self.sweep_interval_s,
            "overdue": self.overdue,
        }


def sweep_and_record(
    database: Database, settings: Settings, finishing: Finishing | None = None
) -> SweepReport:
    """Sweep, record the sweep, commit both at once, then announce what changed; with
    ``finishing``, the ended executions' events are recorded and enforced in that transaction.

    A sweep that met a connection the database had dropped (a restart) runs again at once on
    a fresh one: it is idempotent, and the next turn may be a whole interval away.
    """
    report, after = database.reconnecting(lambda: _sweep_once(database, settings, finishing))
    if after is not None:
        after()
    announce(report)
    return report


def _sweep_once(
    database: Database, settings: Settings, finishing: Finishing | None
) -> tuple[SweepReport, Callable[[], object] | None]:
    after = None
    listening = finishing is not None and finishing.active(database)
    with database.session_scope() as session:
        report = sweeps.sweep(session, settings, events=listening)
        record_run(session, SWEEP_RUN)
        if finishing is not None and report.events:
            after = finishing.enforce(session, report.events)
    return report, after


def record_run(session: Session, name: str, now: datetime | None = None) -> None:
    """Record that pass ``name`` ran now (database clock, or an injected ``now``).

    Safe concurrently: an upsert that never moves the time back, so of two sweeps committing
    out of order the later time stays.
    """
    at = db_now() if now is None else now
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(_R).values(name=name, last_run_at=at)
    later = case(
        (_R.c.last_run_at > statement.excluded.last_run_at, _R.c.last_run_at),
        else_=statement.excluded.last_run_at,
    )
    session.execute(
        statement.on_conflict_do_update(index_elements=[_R.c.name], set_={"last_run_at": later})
    )


def sweeper_status(
    session: Session, settings: Settings, now: datetime | None = None
) -> SweeperStatus:
    """When the last sweep ran and how long ago, judged on the database clock (or ``now``)."""
    last = select(_R.c.last_run_at).where(_R.c.name == SWEEP_RUN).scalar_subquery()
    clock, last_sweep_at = session.execute(select(db_now(), last)).one()
    moment: datetime = clock if now is None else now
    age_s = None if last_sweep_at is None else max(0.0, (moment - last_sweep_at).total_seconds())
    return SweeperStatus(last_sweep_at, age_s, settings.sweep_interval_s)
