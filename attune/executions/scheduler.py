"""Scheduler: validate a request, record the execution, and pick the queue it goes to.

One request, committed at once; the request row, the action lookup and where a request ends up
are in :mod:`attune.executions.routing`, the batch API of rules and workflows in
:mod:`attune.executions.batch`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Insert, bindparam, insert

from attune.errors import ActionDisabledError, ActionNotFoundError, ParameterError
from attune.executions import gates, routing, standings
from attune.executions.policies import Policy
from attune.executions.queues import runtime_queue, worker_queue
from attune.executions.records import Finishing
from attune.executions.routing import Routed, Unroutable
from attune.liveness.freshness import no_worker_reason, unavailable_reason
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, ExecutionStatus
from attune.store.sqltypes import db_now


def _insert(**fixed: Any) -> Insert:
    bound = {name: routing.bound(name) for name in routing.REQUEST_COLUMNS}
    return insert(EXECUTION_TABLE).values(**bound, **fixed).returning(EXECUTION_TABLE.c.id)


# Hot-path statements are built once; each call only binds its values.
_SCHEDULED = _insert(status=ExecutionStatus.SCHEDULED.value)
_FAILED = _insert(
    status=ExecutionStatus.FAILED.value,
    error=bindparam("error", type_=EXECUTION_TABLE.c.error.type),
    finished_at=db_now(),
)


@functools.cache
def _insertion(threshold_s: float, standing: bool) -> Insert:
    """Record an execution of an action known unchanged since ``updated_at``, routed or failed
    (:func:`attune.executions.routing.guarded_insert`). With ``standing`` (PostgreSQL) it also
    returns where a gated execution stands in its gate."""
    return routing.guarded_insert(
        threshold_s, returning=standings.inserted_standing() if standing else ()
    )


def schedule(
    database: Database,
    settings: Settings,
    ref: str,
    values: Mapping[str, Any],
    *,
    worker: str | None = None,
    timeout_s: float | None = None,
    requested_by: str | None = None,
    finishing: Finishing | None = None,
) -> Routed | Unroutable:
    """Validate ``values`` for action ``ref`` and record its execution (committed at once).

    Raises :class:`ActionNotFoundError` or :class:`ParameterError` before anything is stored.
    Secret values are stored encrypted, masked in ``parameters``, and never routed anywhere.
    ``requested_by`` names who asked (an API key), recorded with the execution.
    ``finishing`` records the execution-finished event of one its gate cancels at once, or
    that is recorded ``failed`` because no live worker serves it.
    """
    if timeout_s is not None and not timeout_s > 0:
        raise ParameterError(ref, [f"timeout_s: {timeout_s!r} is not a positive number of seconds"])
    key = (database.key, ref)
    known = routing.KNOWN.get(key)
    failing = finishing  # what records its event if no live worker serves it
    if failing is not None and not failing.active(database, ref, ExecutionStatus.FAILED.value):
        failing = None
    if known is not None and worker is None and failing is None:
        recorded = _schedule_known(
            database, settings, ref, known, values, timeout_s, requested_by, finishing
        )
        if recorded is not None:
            return recorded
    found = database.run(routing.lookup(settings.staleness_threshold_s), {"ref": ref})
    if not found:
        raise ActionNotFoundError(ref)
    action = found[0]
    if not action.enabled:
        raise ActionDisabledError(ref)
    policy = Policy.from_json(action.policy)
    routing.KNOWN[key] = routing.Known(
        action.runner_type, action.parameters, action.updated_at, policy
    )
    row = routing.request_row(
        settings, ref, action.parameters, policy, values, worker, timeout_s, requested_by
    )
    if worker is not None:
        with database.session_scope() as session:
            reason = unavailable_reason(session, settings, action.runner_type, worker)
    else:
        reason = None if action.available else no_worker_reason(action.runner_type)
    if reason is not None:
        return _unroutable(database, {**row, "error": reason}, failing)
    execution_id: int = database.run(_SCHEDULED, row)[0].id
    queue = worker_queue(worker) if worker else runtime_queue(action.runner_type)
    return _placed(database, Routed(execution_id, queue), row, policy, None, finishing)


def _unroutable(database: Database, row: dict[str, Any], finishing: Finishing | None) -> Unroutable:
    """Record the execution ``failed`` (no live worker can run it), with its execution-finished
    event in the same transaction when ``finishing`` watches it."""
    if finishing is None:
        return Unroutable(database.run(_FAILED, row)[0].id, row["error"])
    with database.session_scope() as session:
        execution_id = session.execute(_FAILED, row).scalar_one()
        after = finishing.record(session, execution_id)
    after()
    return Unroutable(execution_id, row["error"])


def _schedule_known(
    database: Database,
    settings: Settings,
    ref: str,
    known: routing.Known,
    values: Mapping[str, Any],
    timeout_s: float | None,
    requested_by: str | None,
    finishing: Finishing | None,
) -> Routed | Unroutable | None:
    """Record in one statement, trusting ``known``; None when a fresh read must decide."""
    try:
        row = routing.request_row(
            settings, ref, known.parameters, known.policy, values, None, timeout_s, requested_by
        )
    except ParameterError:
        return None  # the action may have changed since: judge on its current schema
    reason = no_worker_reason(known.runner_type)
    inserted = database.run(
        _insertion(settings.staleness_threshold_s, not database.is_sqlite),
        {**row, "updated_at": known.updated_at, "no_worker": reason},
    )
    if not inserted:
        return None
    if inserted[0].status == ExecutionStatus.SCHEDULED:
        routed = Routed(inserted[0].id, runtime_queue(known.runner_type))
        if database.is_sqlite or row["gate_key"] is None:
            return _placed(database, routed, row, known.policy, None, finishing)
        limit = row["gate_limit"]
        standing = standings.Queue(inserted[0].busy, inserted[0].ahead, limit)
        return _placed(database, routed, row, known.policy, standing, finishing)
    return Unroutable(inserted[0].id, reason)


def _placed(
    database: Database,
    routed: Routed,
    row: dict[str, Any],
    policy: Policy,
    standing: standings.Queue | None,
    finishing: Finishing | None,
) -> Routed:
    """A gated execution is sent only when its gate has room (or it is canceled at once)."""
    if row["gate_key"] is None:
        return routed
    execution_id, gate_key = routed.execution_id, row["gate_key"]
    send, _rejected = gates.place(
        database, execution_id, row["action_ref"], gate_key, policy, standing, finishing
    )
    return routed if send else Routed(routed.execution_id, routed.queue, send=False)
