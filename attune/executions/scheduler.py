"""Scheduler: validate a request, record the execution, and pick the queue it goes to."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    Select,
    String,
    and_,
    bindparam,
    case,
    insert,
    null,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from attune.errors import ActionDisabledError, ActionNotFoundError, ParameterError
from attune.executions import gates
from attune.executions.params import mask, resolve, secret_names
from attune.executions.policies import SNAPSHOT_COLUMNS, Policy
from attune.executions.queues import runtime_queue, worker_queue
from attune.executions.records import Finishing
from attune.executions.secretbox import SecretBox
from attune.liveness.freshness import no_worker_reason, serving, unavailable_reason
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import ACTION_TABLE, EXECUTION_TABLE, ExecutionStatus
from attune.store.sqltypes import UTCDateTime, db_now

_ACTION = ACTION_TABLE.c
_REQUEST_COLUMNS = (
    "action_ref",
    "parameters",
    "secrets",
    "target_worker",
    "timeout_s",
    "requested_by",
    *SNAPSHOT_COLUMNS,
)


def _insert(**fixed: Any) -> Insert:
    bound = {name: bindparam(name, type_=EXECUTION_TABLE.c[name].type) for name in _REQUEST_COLUMNS}
    return insert(EXECUTION_TABLE).values(**bound, **fixed).returning(EXECUTION_TABLE.c.id)


# Hot-path statements are built once; each call only binds its values.
_SCHEDULED = _insert(status=ExecutionStatus.SCHEDULED.value)
_FAILED = _insert(
    status=ExecutionStatus.FAILED.value,
    error=bindparam("error", type_=EXECUTION_TABLE.c.error.type),
    finished_at=db_now(),
)


@functools.cache
def _lookup(threshold_s: float) -> Select[Any]:
    """The action and whether a live worker serves its runtime, in one statement (built once)."""
    return select(
        _ACTION.runner_type,
        _ACTION.parameters,
        _ACTION.enabled,
        _ACTION.updated_at,
        _ACTION.policy,
        serving(threshold_s, _ACTION.runner_type).label("available"),
    ).where(_ACTION.ref == bindparam("ref"))


ROUTED_COLUMNS = (*_REQUEST_COLUMNS, "status", "error", "finished_at")
"""The execution columns :func:`routed_values` gives, in order."""


def routed_values(threshold_s: float, name: Callable[[str], str] = str) -> list[Any]:
    """The values of :data:`ROUTED_COLUMNS` for a request bound as ``name(column)``, read from
    the action row (``scheduled``, or ``failed`` with ``name("no_worker")`` when no live
    worker serves its runtime); select them where :func:`unchanged` holds."""
    available = serving(threshold_s, _ACTION.runner_type)
    return [
        _ACTION.ref,
        *(
            bindparam(name(column), type_=EXECUTION_TABLE.c[column].type)
            for column in _REQUEST_COLUMNS[1:]
        ),
        case((available, ExecutionStatus.SCHEDULED.value), else_=ExecutionStatus.FAILED.value),
        case((available, null()), else_=bindparam(name("no_worker"), type_=String())),
        case((available, null()), else_=db_now()),
    ]


def unchanged(name: Callable[[str], str] = str) -> ColumnElement[bool]:
    """True on the row of action ``name("action_ref")`` while it is enabled and unchanged since
    ``name("updated_at")``."""
    return and_(
        _ACTION.ref == bindparam(name("action_ref")),
        _ACTION.updated_at == bindparam(name("updated_at"), type_=UTCDateTime()),
        _ACTION.enabled.is_(True),
    )


@functools.cache
def _insertion(threshold_s: float, standing: bool) -> Insert:
    """Record an execution of an action known unchanged since ``updated_at``, routed or failed.

    One statement (built once): no row is inserted when the action changed or went away.
    With ``standing`` (PostgreSQL) it also returns where a gated execution stands in its gate.
    """
    routed = select(*routed_values(threshold_s)).where(unchanged())
    return (
        insert(EXECUTION_TABLE)
        .from_select(ROUTED_COLUMNS, routed)
        .returning(
            EXECUTION_TABLE.c.id,
            EXECUTION_TABLE.c.status,
            *(gates.inserted_standing() if standing else ()),
        )
    )


@dataclass(frozen=True)
class _Known:
    """An action as this process last read it: enough to validate a request on its own."""

    runner_type: str
    parameters: dict[str, Any]
    updated_at: datetime
    policy: Policy


_KNOWN: dict[tuple[str, str], _Known] = {}
"""Actions by (database URL, ref), as last read; a stale entry costs one more statement."""


@dataclass(frozen=True)
class Routed:
    """The execution is recorded ``scheduled``; its task goes to ``queue``.

    ``send`` is False for a gated execution that waits behind a full gate (the gate's releaser
    or the sweep sends it) or that its gate canceled at once (``reject``, ``max_waiting``).
    """

    execution_id: int
    queue: str
    send: bool = True


@dataclass(frozen=True)
class Unroutable:
    """The execution is recorded ``failed``: no live worker can run it."""

    execution_id: int
    reason: str


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
    key = (str(database.engine.url), ref)
    known = _KNOWN.get(key)
    failing = finishing  # what records its event if no live worker serves it
    if failing is not None and not failing.active(database, ref, ExecutionStatus.FAILED.value):
        failing = None
    if known is not None and worker is None and failing is None:
        recorded = _schedule_known(
            database, settings, ref, known, values, timeout_s, requested_by, finishing
        )
        if recorded is not None:
            return recorded
    found = database.run(_lookup(settings.staleness_threshold_s), {"ref": ref})
    if not found:
        raise ActionNotFoundError(ref)
    action = found[0]
    if not action.enabled:
        raise ActionDisabledError(ref)
    policy = Policy.from_json(action.policy)
    _KNOWN[key] = _Known(action.runner_type, action.parameters, action.updated_at, policy)
    row = _row(settings, ref, action.parameters, policy, values, worker, timeout_s, requested_by)
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


def _unroutable(
    database: Database, row: dict[str, Any], finishing: Finishing | None
) -> Unroutable:
    """Record the execution ``failed`` (no live worker can run it), with its execution-finished
    event in the same transaction when ``finishing`` watches it."""
    if finishing is None:
        return Unroutable(database.run(_FAILED, row)[0].id, row["error"])
    with database.session_scope() as session:
        execution_id = session.execute(_FAILED, row).scalar_one()
        after = finishing.record(session, execution_id)
    after()
    return Unroutable(execution_id, row["error"])


@dataclass(frozen=True)
class Prepared:
    """A request validated against the action as read in the caller's transaction."""

    row: dict[str, Any]
    runner_type: str
    available: bool


def prepare(
    session: Session,
    settings: Settings,
    ref: str,
    values: Mapping[str, Any],
    seen: dict[str, Any] | None = None,
) -> Prepared:
    """Validate ``values`` for action ``ref`` in the caller's transaction (rules enforce there);
    ``seen`` keeps the actions already read in that transaction, by ref.

    Raises :class:`ActionNotFoundError` or :class:`ParameterError`, as :func:`schedule` does.
    """
    seen = {} if seen is None else seen
    if ref not in seen:
        lookup = _lookup(settings.staleness_threshold_s)
        seen[ref] = session.execute(lookup, {"ref": ref}).first()
    found = seen[ref]
    if found is None:
        raise ActionNotFoundError(ref)
    if not found.enabled:
        raise ActionDisabledError(ref)
    policy = Policy.from_json(found.policy)
    _KNOWN[(_url(session.get_bind().engine), ref)] = _Known(
        found.runner_type, found.parameters, found.updated_at, policy
    )
    row = _row(settings, ref, found.parameters, policy, values, None, None, None)
    return Prepared(row, found.runner_type, bool(found.available))


@functools.lru_cache(maxsize=64)
def _url(engine: Engine) -> str:
    """The engine's URL as :data:`_KNOWN` keys it (rendered once per engine)."""
    return str(engine.url)


@dataclass(frozen=True)
class KnownRequest:
    """A request validated against its action as this process last read it."""

    row: dict[str, Any]
    runner_type: str
    updated_at: datetime


def known_request(
    database: Database, settings: Settings, ref: str, values: Mapping[str, Any]
) -> KnownRequest | None:
    """Validate ``values`` against action ``ref`` as last read here (rules fire in one
    statement guarded by :func:`unchanged`); None when it is not known here, is gated, or
    refuses the values (a fresh read must judge)."""
    known = _KNOWN.get((str(database.engine.url), ref))
    if known is None:
        return None
    try:
        row = _row(settings, ref, known.parameters, known.policy, values, None, None, None)
    except ParameterError:
        return None
    if row["gate_key"] is not None:
        return None
    return KnownRequest(row, known.runner_type, known.updated_at)


_RECORD_MANY = insert(EXECUTION_TABLE).returning(EXECUTION_TABLE.c.id, sort_by_parameter_order=True)
_RECORD_MANY_FAILED = _RECORD_MANY.values(finished_at=db_now())


def record_many(
    session: Session, requests: Sequence[tuple[Prepared, Mapping[str, Any]]]
) -> list[Routed | Unroutable]:
    """Insert prepared executions, each with its extra columns (``enforcement_id``,
    ``trigger_depth``), in the caller's transaction: at most two statements, results in order.
    One that no live worker serves goes ``failed``, with the reason."""
    results: dict[int, Routed | Unroutable] = {}
    for available in (True, False):
        chosen = [(n, p, c) for n, (p, c) in enumerate(requests) if p.available is available]
        if not chosen:
            continue
        if available:
            status = {"status": ExecutionStatus.SCHEDULED.value}
            rows = [{**p.row, **c, **status} for _, p, c in chosen]
            ids = session.execute(_RECORD_MANY, rows).scalars().all()
            for (n, p, _), execution_id in zip(chosen, ids, strict=True):
                results[n] = Routed(execution_id, runtime_queue(p.runner_type))
            continue
        reasons = [no_worker_reason(p.runner_type) for _, p, _ in chosen]
        failed = {"status": ExecutionStatus.FAILED.value}
        rows = [
            {**p.row, **c, **failed, "error": reason}
            for (_, p, c), reason in zip(chosen, reasons, strict=True)
        ]
        ids = session.execute(_RECORD_MANY_FAILED, rows).scalars().all()
        for (n, _, _), execution_id, reason in zip(chosen, ids, reasons, strict=True):
            results[n] = Unroutable(execution_id, reason)
    return [results[n] for n in range(len(requests))]


def _schedule_known(
    database: Database,
    settings: Settings,
    ref: str,
    known: _Known,
    values: Mapping[str, Any],
    timeout_s: float | None,
    requested_by: str | None,
    finishing: Finishing | None,
) -> Routed | Unroutable | None:
    """Record in one statement, trusting ``known``; None when a fresh read must decide."""
    try:
        row = _row(
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
        standing = gates.Queue(inserted[0].busy, inserted[0].ahead, limit)
        return _placed(database, routed, row, known.policy, standing, finishing)
    return Unroutable(inserted[0].id, reason)


def _placed(
    database: Database,
    routed: Routed,
    row: dict[str, Any],
    policy: Policy,
    standing: gates.Queue | None,
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


def _row(
    settings: Settings,
    ref: str,
    schema: dict[str, Any],
    policy: Policy,
    values: Mapping[str, Any],
    worker: str | None,
    timeout_s: float | None,
    requested_by: str | None,
) -> dict[str, Any]:
    """The execution's columns: parameters validated, defaults filled, secrets sealed apart,
    the action's policy snapshotted."""
    resolved = resolve(ref, schema, values)
    secrets = {name: resolved[name] for name in secret_names(schema) if name in resolved}
    return {
        "action_ref": ref,
        "parameters": mask(schema, resolved),
        "secrets": SecretBox.for_settings(settings).encrypt(secrets) if secrets else None,
        "target_worker": worker,
        "timeout_s": timeout_s,
        "requested_by": requested_by,
        **policy.snapshot(ref, resolved),
    }
