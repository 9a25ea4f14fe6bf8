"""Orphans: action process groups that executions this worker no longer holds left behind.

A worker records the process group of each action that runs for more than a moment (pgid,
leader start time, host; see :mod:`attune.executions.runner`) and clears it with the result.
A group still recorded on an execution the worker does not hold (the sweep abandoned it while
the worker was frozen, or a process of the same name before this one died with its reaper) may
still be running: the worker kills it, on this host only, and clears the record.
"""

from __future__ import annotations

import logging

from sqlalchemy import literal, select, update
from sqlalchemy.orm import Session

from attune import metrics
from attune.executions import endings
from attune.executions.records import Finishing
from attune.liveness.sweep import abandon
from attune.runtimes.reaper import ProcessGroup, host_identity, stop_groups_soon
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, HELD_STATUSES

logger = logging.getLogger(__name__)

_E = EXECUTION_TABLE.c


def claim_orphans(session: Session, worker: str) -> list[ProcessGroup]:
    """The groups recorded on this host for ``worker``'s executions it no longer holds; their
    records are cleared (the caller kills the groups once this commits)."""
    orphaned = (
        _E.worker == worker,
        _E.pgid.is_not(None),
        _E.pgid_host == host_identity(),
        _E.status.not_in(HELD_STATUSES),
    )
    rows = session.execute(select(_E.id, _E.pgid, _E.pgid_start_ticks).where(*orphaned)).all()
    if rows:
        session.execute(
            update(EXECUTION_TABLE)
            .where(_E.id.in_([row.id for row in rows]), *orphaned)
            .values(pgid=None, pgid_start_ticks=None, pgid_host=None)
        )
    return [ProcessGroup(row.pgid, row.pgid_start_ticks or 0) for row in rows]


def stop_orphans(database: Database, worker: str, kill_grace_s: float) -> int:
    """Kill (SIGTERM, then SIGKILL after the grace, in the background) the groups
    :func:`claim_orphans` finds; how many it found."""
    with database.session_scope() as session:
        groups = claim_orphans(session, worker)
    _stop(worker, groups, kill_grace_s)
    return len(groups)


def settle_predecessor(
    database: Database, worker: str, kill_grace_s: float, finishing: Finishing | None = None
) -> int:
    """Before a worker's pool starts: what an earlier process of the same name still held is
    abandoned, and the live groups it recorded on this host are killed; how many groups.

    A worker name belongs to one process at a time: its new process takes over the row.
    """
    ended: list[int] = []
    with database.session_scope() as session:
        restarted = literal(f"worker {worker} restarted")
        abandoned = abandon(session, [worker], lambda _w: restarted, ended)
        groups = claim_orphans(session, worker)
        after = endings.enforce_ended(session, finishing, ended)
    if after is not None:
        after()
    if abandoned[worker]:
        metrics.count_abandoned(abandoned[worker])
        logger.warning(
            "worker %s restarted: abandoned %d execution(s) its previous process held",
            worker,
            abandoned[worker],
            extra={"event": "worker_restarted", "worker": worker},
        )
    _stop(worker, groups, kill_grace_s)
    return len(groups)


def _stop(worker: str, groups: list[ProcessGroup], kill_grace_s: float) -> None:
    alive = [group for group in groups if group.alive()]
    if alive:
        logger.warning(
            "worker %s: stopping %d action process group(s) left behind (%s)",
            worker,
            len(alive),
            ", ".join(str(group.pgid) for group in alive),
            extra={"event": "orphans_stopped", "worker": worker},
        )
    stop_groups_soon(alive, kill_grace_s)
