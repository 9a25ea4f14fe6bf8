"""Lost executions: the one a worker's pool process was running when that process died."""

from __future__ import annotations

import logging

from attune import metrics
from attune.executions import dispatch, releases, retries
from attune.executions.completion import hub
from attune.executions.records import Finishing
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import ExecutionStatus

log = logging.getLogger(__name__)


def settle_lost(
    database: Database,
    settings: Settings,
    execution_id: int,
    worker_name: str,
    reason: str,
    finishing: Finishing | None = None,
) -> bool:
    """Abandon the execution this worker was running when its pool process died; True if so.

    The worker lives on and heartbeats, so the sweep would never settle it, and the message
    Celery requeues can no longer claim it. One attempt: it runs in the worker's event loop.
    """
    error = f"the worker process running it on {worker_name} died: {reason}"
    lost = database.reconnecting(
        lambda: retries.end_attempt(
            database,
            settings,
            execution_id,
            ExecutionStatus.ABANDONED,
            finishing,
            held_by=worker_name,
            error=error,
        )
    )
    if lost is None:
        return False
    hub.notify()
    metrics.record_execution(ExecutionStatus.ABANDONED, None)
    log.warning("execution %s abandoned: %s", execution_id, error)
    _follow_up(database, lost)
    return True


def _follow_up(database: Database, ended: retries.Transitioned) -> None:
    """After an attempt ended: send its successor, the heads of the gate it freed, and the
    advance of the workflow run it is a task of."""
    sent = [] if ended.successor is None else [ended.successor]
    if ended.gate is not None:
        sent.extend(releases.release(database, *ended.gate))
    if ended.parent_id is not None and ended.successor is None:
        sent.append(dispatch.advance(ended.parent_id))
    dispatch.send(sent)
