"""Batch scheduling for rules and workflows: requests validated in the caller's transaction
(:func:`prepare`) or against the action as last read here (:func:`known_request`, or
``prepare(trusting=True)``), and recorded together (:func:`record_many`), or one guarded by the
action's ``updated_at`` (:func:`record_known`), in that transaction; the caller sends after
commit.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from attune.errors import ActionDisabledError, ActionNotFoundError, ParameterError
from attune.executions import routing
from attune.executions.policies import Policy
from attune.executions.queues import runtime_queue
from attune.executions.routing import Routed, Unroutable
from attune.liveness.freshness import no_worker_reason
from attune.settings import Settings
from attune.store.bulk import insert_rows
from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, ExecutionStatus
from attune.store.sqltypes import db_now


@dataclass(frozen=True)
class Prepared:
    """A request validated against the action as read in the caller's transaction."""

    row: dict[str, Any]
    runner_type: str
    available: bool
    known: datetime | None = None
    """Set when validated against the action as last read here, not read in the transaction:
    the ``updated_at`` it is trusted unchanged since (record it with :func:`record_known`)."""


def prepare(
    session: Session,
    settings: Settings,
    ref: str,
    values: Mapping[str, Any],
    seen: dict[str, Any] | None = None,
    *,
    trusting: bool = False,
) -> Prepared:
    """Validate ``values`` for action ``ref`` in the caller's transaction (rules enforce there);
    ``seen`` keeps the actions already read in that transaction, by ref. ``trusting``: against
    the action as last read here when it is known and takes the values, reading nothing
    (``known`` set).

    Raises :class:`ActionNotFoundError` or :class:`ParameterError`, as
    :func:`attune.executions.scheduler.schedule` does.
    """
    seen = {} if seen is None else seen
    known = routing.KNOWN.get((_url(session.get_bind().engine), ref)) if trusting else None
    if known is not None and ref not in seen:
        try:
            row = routing.request_row(
                settings, ref, known.parameters, known.policy, values, None, None, None
            )
        except ParameterError:
            pass  # the action may have changed since: judge on its current schema
        else:
            return Prepared(row, known.runner_type, True, known.updated_at)
    if ref not in seen:
        lookup = routing.lookup(settings.staleness_threshold_s)
        seen[ref] = session.execute(lookup, {"ref": ref}).first()
    found = seen[ref]
    if found is None:
        raise ActionNotFoundError(ref)
    if not found.enabled:
        raise ActionDisabledError(ref)
    policy = Policy.from_json(found.policy)
    routing.KNOWN[(_url(session.get_bind().engine), ref)] = routing.Known(
        found.runner_type, found.parameters, found.updated_at, policy
    )
    row = routing.request_row(settings, ref, found.parameters, policy, values, None, None, None)
    return Prepared(row, found.runner_type, bool(found.available))


@functools.lru_cache(maxsize=64)
def _url(engine: Engine) -> str:
    """The engine's URL as :data:`attune.executions.routing.KNOWN` keys it (rendered once per
    engine)."""
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
    statement guarded by :func:`attune.executions.routing.unchanged`); None when it is not
    known here, is gated, or refuses the values (a fresh read must judge)."""
    known = routing.KNOWN.get((database.key, ref))
    if known is None:
        return None
    try:
        row = routing.request_row(
            settings, ref, known.parameters, known.policy, values, None, None, None
        )
    except ParameterError:
        return None
    if row["gate_key"] is not None:
        return None
    return KnownRequest(row, known.runner_type, known.updated_at)


def record_known(
    session: Session, settings: Settings, prepared: Prepared, extra: Mapping[str, Any]
) -> Routed | Unroutable | None:
    """Insert one execution ``prepare(trusting=True)`` validated against the action as last
    read here, with its ``extra`` columns, in the caller's transaction: one statement guarded
    by the action's ``updated_at`` (``failed`` when no live worker serves it). None, nothing
    written, when the action changed since: prepare it again, reading the action."""
    assert prepared.known is not None
    reason = no_worker_reason(prepared.runner_type)
    statement = _recording(settings.staleness_threshold_s, tuple(extra))
    values = {**prepared.row, **extra, "updated_at": prepared.known, "no_worker": reason}
    found = session.execute(statement, values).first()
    if found is None:
        return None
    if found.status == ExecutionStatus.SCHEDULED:
        return Routed(found.id, runtime_queue(prepared.runner_type))
    return Unroutable(found.id, reason)


@functools.cache
def _recording(threshold_s: float, extra: tuple[str, ...]) -> Insert:
    """The guarded insertion of :func:`record_known` with ``extra`` columns (built once)."""
    return routing.guarded_insert(threshold_s, extra)


_ID = (EXECUTION_TABLE.c.id,)
# Rare (no live worker serves them): their finished_at is the database clock, a SQL value.
_RECORD_MANY_FAILED = (
    insert(EXECUTION_TABLE)
    .values(finished_at=db_now())
    .returning(*_ID, sort_by_parameter_order=True)
)


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
            inserted = insert_rows(session, EXECUTION_TABLE, rows, _ID, ordered=True)
            for (n, p, _), (execution_id,) in zip(chosen, inserted, strict=True):
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
