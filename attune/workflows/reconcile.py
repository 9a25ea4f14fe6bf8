"""The safety net: advance the runs that need it, whatever message was lost.

Every :data:`RECONCILE_INTERVAL_S` the beat loop (on the embedded default, its thread) advances
up to :data:`BATCH` runs that have an ended child not taken in (a lost advance message, a child
ended by the sweep), something due (a delayed task, a passed deadline), or a cancel not yet
cascaded, and sends again the message of a child left ``scheduled`` unpicked for
:data:`UNPICKED_S`. Each predicate reads a partial index, so a pass costs what needs doing,
not the size of the tables.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from attune.executions import overdue
from attune.executions.dispatch import send
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import (
    EXECUTION_TABLE,
    ExecutionStatus,
    RunPhase,
    WorkflowRun,
)
from attune.store.sqltypes import db_now
from attune.workflows import children
from attune.workflows.engine import advance

RECONCILE_INTERVAL_S = 2.0
"""How often the beat loop looks for runs to advance."""
BATCH = 100
"""Most runs one pass advances."""
UNPICKED_S = 10.0
"""A child ``scheduled`` and due this long without a worker taking it is sent again."""

log = logging.getLogger(__name__)
_E = EXECUTION_TABLE.c


def reconcile(database: Database, settings: Settings) -> int:
    """One pass; returns how many runs it advanced."""
    with database.session_scope() as session:
        now: datetime = session.execute(select(db_now())).scalar_one()
        ended = select(_E.parent_id).where(*children.ended(_E.parent_id.is_not(None)))
        due = select(WorkflowRun.execution_id).where(
            WorkflowRun.phase != RunPhase.DONE.value, WorkflowRun.wake_at <= now
        )
        canceled = (
            select(WorkflowRun.execution_id)
            .join(EXECUTION_TABLE, _E.id == WorkflowRun.execution_id)
            .where(
                WorkflowRun.phase == RunPhase.RUNNING.value,
                _E.status == ExecutionStatus.CANCELING.value,
            )
        )
        runs = session.scalars(ended.union(due, canceled).limit(BATCH)).all()
        unpicked = overdue.resend_stale(
            session, UNPICKED_S, now, _E.parent_id.is_not(None), _E.wf_consumed.is_(False)
        )
    send(unpicked)
    for workflow_id in runs:
        try:
            advance(database, settings, workflow_id)
        except Exception:
            log.exception("reconcile: could not advance workflow %s", workflow_id)
    return len(runs)
