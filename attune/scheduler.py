"""Scheduler: validate a request, record the execution, and pick the queue it goes to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Insert, Select, Table, bindparam, insert, select

from attune.db import Database
from attune.errors import ActionNotFoundError, ParameterError
from attune.models import Action, Execution, ExecutionStatus
from attune.params import mask, resolve, secret_names
from attune.queues import runtime_queue, worker_queue
from attune.secretbox import SecretBox
from attune.settings import Settings
from attune.sqltypes import db_now
from attune.workers import no_worker_reason, serving, unavailable_reason

_EXECUTION = cast(Table, Execution.__table__)
_ACTIONS = cast(Table, Action.__table__).c
_ROW = ("action_ref", "parameters", "secrets", "target_worker", "timeout_s")


def _insert(**fixed: Any) -> Insert:
    bound = {name: bindparam(name, type_=_EXECUTION.c[name].type) for name in _ROW}
    return insert(_EXECUTION).values(**bound, **fixed).returning(_EXECUTION.c.id)


# Hot-path statements are built once; each call only binds its values.
_SCHEDULED = _insert(status=ExecutionStatus.SCHEDULED.value)
_FAILED = _insert(
    status=ExecutionStatus.FAILED.value,
    error=bindparam("error", type_=_EXECUTION.c.error.type),
    finished_at=db_now(),
)


_LOOKUPS: dict[float, Select[tuple[str, dict[str, Any], bool, bool]]] = {}


def _lookup(settings: Settings) -> Select[tuple[str, dict[str, Any], bool, bool]]:
    """The action and whether a live worker serves its runtime, in one statement (built once)."""
    statement = _LOOKUPS.get(settings.staleness_threshold_s)
    if statement is None:
        statement = _LOOKUPS[settings.staleness_threshold_s] = select(
            _ACTIONS.runner_type,
            _ACTIONS.parameters,
            _ACTIONS.enabled,
            serving(settings, _ACTIONS.runner_type).label("available"),
        ).where(_ACTIONS.ref == bindparam("ref"))
    return statement


@dataclass(frozen=True)
class Routed:
    """The execution is recorded ``scheduled``; its task goes to ``queue``."""

    execution_id: int
    queue: str


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
) -> Routed | Unroutable:
    """Validate ``values`` for action ``ref`` and record its execution (committed at once).

    Raises :class:`ActionNotFoundError` or :class:`ParameterError` before anything is stored.
    Secret values are stored encrypted, masked in ``parameters``, and never routed anywhere.
    """
    found = database.run(_lookup(settings), {"ref": ref})
    if not found:
        raise ActionNotFoundError(ref)
    action = found[0]
    if not action.enabled:
        raise ActionNotFoundError(ref, "the action is disabled")
    if timeout_s is not None and not timeout_s > 0:
        raise ParameterError(ref, [f"timeout_s: {timeout_s!r} is not a positive number of seconds"])
    resolved = resolve(ref, action.parameters, values)
    secrets = {name: resolved[name] for name in secret_names(action.parameters) if name in resolved}
    row: dict[str, Any] = {
        "action_ref": ref,
        "parameters": mask(action.parameters, resolved),
        "secrets": SecretBox.for_settings(settings).encrypt(secrets) if secrets else None,
        "target_worker": worker,
        "timeout_s": timeout_s,
    }
    if worker is not None:
        with database.session_scope() as session:
            reason = unavailable_reason(session, settings, action.runner_type, worker)
    else:
        reason = None if action.available else no_worker_reason(action.runner_type)
    if reason is not None:
        return Unroutable(database.run(_FAILED, {**row, "error": reason})[0].id, reason)
    execution_id: int = database.run(_SCHEDULED, row)[0].id
    queue = worker_queue(worker) if worker else runtime_queue(action.runner_type)
    return Routed(execution_id, queue)
