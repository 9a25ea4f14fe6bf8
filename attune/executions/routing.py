"""Routing a request: the row it becomes, the action it is validated against (read by one
lookup statement, remembered per process), the SQL that routes it from the action row, and
where it ends up (:class:`Routed` or :class:`Unroutable`).

Shared by the scheduler (one request, committed at once) and by the batch API of rules and
workflows (requests recorded in the caller's transaction).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    FromClause,
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

from attune.executions.params import mask, resolve, secret_names
from attune.executions.policies import SNAPSHOT_COLUMNS, Policy
from attune.executions.secretbox import SecretBox
from attune.liveness.freshness import serving
from attune.settings import Settings
from attune.store.models import ACTION_TABLE, EXECUTION_TABLE, ExecutionStatus
from attune.store.sqltypes import UTCDateTime, db_now

_ACTION = ACTION_TABLE.c
REQUEST_COLUMNS = (
    "action_ref",
    "parameters",
    "secrets",
    "target_worker",
    "timeout_s",
    "requested_by",
    *SNAPSHOT_COLUMNS,
)
"""The execution columns a request sets: the keys of :func:`request_row`, in order."""


@functools.cache
def lookup(threshold_s: float) -> Select[Any]:
    """The action and whether a live worker serves its runtime, in one statement (built once)."""
    return select(
        _ACTION.runner_type,
        _ACTION.parameters,
        _ACTION.enabled,
        _ACTION.updated_at,
        _ACTION.policy,
        serving(threshold_s, _ACTION.runner_type).label("available"),
    ).where(_ACTION.ref == bindparam("ref"))


ROUTED_COLUMNS = (*REQUEST_COLUMNS, "status", "error", "finished_at")
"""The execution columns :func:`routed_values` gives, in order."""


def routed_values(
    threshold_s: float,
    name: Callable[[str], str] = str,
    *,
    ref: ColumnElement[Any] = _ACTION.ref,
    runner_type: ColumnElement[Any] = _ACTION.runner_type,
) -> list[Any]:
    """The values of :data:`ROUTED_COLUMNS` for a request bound as ``name(column)``, read from
    the action row (``scheduled``, or ``failed`` with ``name("no_worker")`` when no live
    worker serves its runtime); select them where :func:`unchanged` holds. ``ref`` and
    ``runner_type`` are the action's columns, or the same read once elsewhere."""
    available = serving(threshold_s, runner_type)
    return [
        *request_values(name, ref),
        case((available, ExecutionStatus.SCHEDULED.value), else_=ExecutionStatus.FAILED.value),
        case((available, null()), else_=bindparam(name("no_worker"), type_=String())),
        case((available, null()), else_=db_now()),
    ]


def bound(column: str, name: str | None = None) -> BindParameter[Any]:
    """A parameter for execution column ``column``, of its type, named ``name`` (or as it)."""
    return bindparam(column if name is None else name, type_=EXECUTION_TABLE.c[column].type)


def request_values(
    name: Callable[[str], str] = str, ref: ColumnElement[Any] = _ACTION.ref
) -> list[Any]:
    """The values of :data:`REQUEST_COLUMNS` for a request bound as ``name(column)``, its
    ``action_ref`` read as ``ref`` (the action's column)."""
    return [ref, *(bound(column, name(column)) for column in REQUEST_COLUMNS[1:])]


def unchanged(
    name: Callable[[str], str] = str, action: FromClause = ACTION_TABLE
) -> ColumnElement[bool]:
    """True on the row of action ``name("action_ref")`` while it is enabled and unchanged since
    ``name("updated_at")`` (``action``: the action table or an alias of it)."""
    return and_(
        action.c.ref == bindparam(name("action_ref")),
        action.c.updated_at == bindparam(name("updated_at"), type_=UTCDateTime()),
        action.c.enabled.is_(True),
    )


def guarded_insert(
    threshold_s: float, extra: tuple[str, ...] = (), returning: tuple[Any, ...] = ()
) -> Insert:
    """Record an execution of an action known unchanged since ``updated_at``, routed or failed
    (:func:`routed_values`), with the ``extra`` execution columns bound by their names.

    One statement returning the row's ``id``, ``status`` and ``returning``: no row is inserted
    when the action changed, was disabled or went away. Built anew on each call: the callers
    build theirs once.
    """
    routed = select(*routed_values(threshold_s), *map(bound, extra)).where(unchanged())
    return (
        insert(EXECUTION_TABLE)
        .from_select([*ROUTED_COLUMNS, *extra], routed)
        .returning(EXECUTION_TABLE.c.id, EXECUTION_TABLE.c.status, *returning)
    )


@dataclass(frozen=True)
class Known:
    """An action as this process last read it: enough to validate a request on its own."""

    runner_type: str
    parameters: dict[str, Any]
    updated_at: datetime
    policy: Policy


KNOWN: dict[tuple[str, str], Known] = {}
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


def request_row(
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
