"""Concurrency gates: at most ``limit`` executions of one (action, key) running, FIFO.

A gated execution carries its gate (``gate_key``, ``gate_limit``, snapshotted when it was
scheduled). Its claim admits it only while fewer than ``limit`` of its gate are ``running``
or ``canceling`` counting those that wait ahead of it (``eligible_at, id``): one conditional
UPDATE, serialized per gate by a row lock on ``concurrency_gate`` (PostgreSQL) or by SQLite's
single writer (on PostgreSQL the function ``attune_claim_gated`` does both in one round
trip). No lock service, no Redis lock. A declined claim changes nothing; what wakes the
waiting is in :mod:`attune.executions.releases`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    column,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from attune.executions import records
from attune.executions.dispatch import Dispatch
from attune.executions.policies import OnLimit, Policy
from attune.executions.retries import queue_of
from attune.store.db import Database
from attune.store.models import ACTION_TABLE, EXECUTION_TABLE, ExecutionStatus
from attune.store.sqltypes import JSONType, db_now, in_literals, seconds_since

_E = EXECUTION_TABLE.c
_A = ACTION_TABLE.c
_S = ExecutionStatus
HOLDING = (_S.RUNNING.value, _S.CANCELING.value)
"""The states that hold a slot of a gate."""


@dataclass(frozen=True)
class Queue:
    """Where a gated execution stands: ``busy`` slots taken, ``ahead`` waiting before it."""

    busy: int
    ahead: int
    limit: int

    @property
    def free(self) -> bool:
        """True while the gate has room for it: fewer than ``limit`` hold or wait before it."""
        return self.busy + self.ahead < self.limit

    @property
    def first(self) -> bool:
        """True when it may start now: a slot is free and none waits before it (FIFO)."""
        return self.busy < self.limit and self.ahead == 0

    @property
    def position(self) -> int:
        """Its place among the waiting, from 1."""
        return self.ahead + 1


def _peer(other: Any, gate: Any) -> ColumnElement[bool]:
    """``other`` is in the same gate as ``gate`` (columns of two execution rows)."""
    return and_(other.c.action_ref == gate.action_ref, other.c.gate_key == gate.gate_key)


def _busy(gate: Any) -> Any:
    peer = EXECUTION_TABLE.alias("holding")
    return (
        select(func.count())
        .where(_peer(peer, gate), in_literals(peer.c.status, HOLDING))
        .scalar_subquery()
    )


def _ahead(me: Any) -> Any:
    """How many of ``me``'s gate wait before it, eligible now, in (eligible_at, id) order."""
    peer = EXECUTION_TABLE.alias("waiting")
    return (
        select(func.count())
        .where(
            _peer(peer, me),
            peer.c.status == _S.SCHEDULED.value,
            peer.c.eligible_at <= db_now(),
            or_(
                peer.c.eligible_at < me.eligible_at,
                and_(peer.c.eligible_at == me.eligible_at, peer.c.id < me.id),
            ),
        )
        .scalar_subquery()
    )


@functools.cache
def admission(columns: tuple[Any, ...]) -> Any:
    """Claim ``:execution_id`` for ``:worker`` if its gate has room for it (FIFO), returning
    ``columns``: SQLite's gated claim (PostgreSQL's locks the gate's row first)."""
    return (
        update(EXECUTION_TABLE)
        .where(
            _E.id == bindparam("execution_id"),
            _E.status == _S.SCHEDULED.value,
            _E.gate_key.is_not(None),
            _E.eligible_at <= db_now(),
            _busy(_E) < _E.gate_limit,
            _ahead(_E) == 0,
        )
        .values(status=_S.RUNNING.value, worker=bindparam("worker"), started_at=db_now())
        .returning(*columns)
    )


_STANDING = (
    select(
        _E.status,
        _E.action_ref,
        _E.gate_key,
        _E.gate_limit,
        _E.policy,
        _E.target_worker,
        (-seconds_since(_E.eligible_at)).label("early_s"),
        _A.runner_type,
        _busy(_E).label("busy"),
        _ahead(_E).label("ahead"),
    )
    .select_from(EXECUTION_TABLE.outerjoin(ACTION_TABLE, _A.ref == _E.action_ref))
    .where(_E.id == bindparam("execution_id"))
)


@dataclass(frozen=True)
class Refused:
    """Why a claim did not start the execution, and what to send instead (if anything)."""

    reason: str
    dispatch: Dispatch | None = None


UNGATED = Refused("it is not gated")
"""A claim refused because the execution has no gate: the plain claim decides."""


def claim(
    database: Database,
    execution_id: int,
    worker: str,
    columns: Sequence[Any],
    finishing: records.Finishing | None = None,
) -> Any:
    """After the plain claim refused: start a gated execution if its gate admits it.

    Returns the claimed row (``columns``; on PostgreSQL the columns of
    :data:`CLAIMED_GATED`) or a :class:`Refused`. An early execution (a pending retry) is
    sent again for when it is due; over its limit, ``reject`` cancels it (``finishing``
    records its execution-finished event) and ``queue`` leaves it waiting (its message
    acknowledged, nothing spawned).
    """
    values = {"execution_id": execution_id, "worker": worker}
    if not database.is_sqlite:  # lock the gate's row and admit: one function, one round trip
        for claimed in database.run(_CLAIM_GATED, values):
            return claimed
    listening = finishing if finishing is not None and finishing.active(database) else None
    after = None
    with database.session_scope() as session:
        standing = session.execute(_STANDING, values).first()
        if standing is None or standing.status != _S.SCHEDULED.value:
            return Refused("it is no longer scheduled")
        if standing.early_s > 0:
            if standing.runner_type is None and not standing.target_worker:
                return Refused("its action no longer exists")
            queue = queue_of(standing.target_worker, standing.runner_type or "")
            return Refused(
                f"it is not eligible for {standing.early_s:.3g} s",
                Dispatch(execution_id, queue, standing.early_s),
            )
        if standing.gate_key is None:
            return UNGATED
        if database.is_sqlite:  # SQLite's single writer serializes the claims
            claimed = session.execute(admission(tuple(columns)), values).first()
            if claimed is not None:
                return claimed
        waiting = Queue(standing.busy, standing.ahead, standing.gate_limit)
        policy = Policy.from_json(standing.policy)
        reject = policy.concurrency is not None and policy.concurrency.on_limit is OnLimit.REJECT
        if not reject or waiting.free:
            return Refused(f"waiting: position {waiting.position} behind limit {waiting.limit}")
        reason = limit_reached(standing.action_ref, standing.gate_key, waiting.limit)
        if _cancel(session, execution_id, reason) and listening is not None:
            after = listening.record(session, execution_id)
    if after is not None:
        after()
    return Refused(reason)


CLAIMED_GATED: tuple[Any, ...] = (
    column("action_ref", String()),
    column("parameters", JSONType),
    column("secrets", Text()),
    column("timeout_s", Float()),
    column("policy", JSONType),
    column("gate_key", String()),
    column("gate_limit", Integer()),
    column("runner_type", String()),
    column("entry_point", Text()),
    column("parameter_delivery", String()),
    column("parameter_format", String()),
    column("output_format", String()),
    column("action_timeout_s", Integer()),
    column("busy_before", Integer()),
    column("waiting_behind", Integer()),
)
"""The columns a gated claim returns on PostgreSQL (function ``attune_claim_gated``): the
execution's, then its action's (NULL when the action is gone)."""
_CLAIM_GATED: Select[Any] = select(*CLAIMED_GATED).select_from(
    func.attune_claim_gated(
        bindparam("execution_id", type_=BigInteger()), bindparam("worker", type_=Text())
    )
)


def limit_reached(action_ref: str, gate_key: str, limit: int) -> str:
    """The error of an execution rejected by its gate."""
    return f"concurrency limit {limit} reached for {action_ref} (key {gate_key[:12]})"


def _cancel(session: Session, execution_id: int, reason: str) -> bool:
    """Cancel the still scheduled execution; True when it moved."""
    return records.transition_in(session, execution_id, _S.CANCELED, sources=_WAITING, error=reason)


def standing(database: Database, execution_id: int) -> Queue | None:
    """Where a waiting gated execution stands (None: not gated, or not waiting)."""
    with database.session_scope(autocommit=True) as session:
        row = session.execute(_STANDING, {"execution_id": execution_id}).first()
    if row is None or row.gate_key is None or row.status != _S.SCHEDULED.value:
        return None
    return Queue(row.busy, row.ahead, row.gate_limit)


def place(
    database: Database,
    execution_id: int,
    action_ref: str,
    gate_key: str,
    policy: Policy,
    known: Queue | None = None,
    finishing: records.Finishing | None = None,
) -> tuple[bool, str | None]:
    """Right after a gated execution is recorded: whether to send it now, and why it was
    canceled (``reject`` over the limit, or ``max_waiting`` reached), if it was.

    One not sent waits behind a full gate: the gate's releaser or the sweep sends it once it
    is a head. The claim still decides; this only spares messages that would be declined.
    ``known``: where it stands, as its insertion returned it (:func:`inserted_standing`);
    ``finishing`` records the execution-finished event of one canceled.
    """
    gate = policy.concurrency
    queue = known or standing(database, execution_id)
    if gate is None or queue is None or queue.first:
        return True, None
    if queue.free:  # room, but its turn comes after those ahead: their claims send it
        return False, None
    reason = None
    if gate.on_limit is OnLimit.REJECT:
        reason = limit_reached(action_ref, gate_key, queue.limit)
    elif gate.max_waiting is not None and queue.ahead >= gate.max_waiting:
        reason = (
            f"{queue.ahead} executions already wait for a slot (max_waiting {gate.max_waiting})"
        )
    if reason is not None:
        records.finish(
            database, execution_id, _S.CANCELED, finishing, sources=_WAITING, error=reason
        )
    return False, reason


_WAITING = frozenset({_S.SCHEDULED})


_ROW_NAMES = ("action_ref", "gate_key", "eligible_at", "id")


def inserted_standing() -> tuple[Any, Any]:
    """RETURNING columns of an insertion into the execution table (PostgreSQL): the new
    execution's ``busy`` and ``ahead`` (its statement's snapshot does not see the row itself),
    0 and 0 for an ungated one without any subquery run."""
    # The inserted row by name: SQLAlchemy does not correlate into an INSERT's RETURNING.
    inserted = SimpleNamespace(**{name: literal_column(f"execution.{name}") for name in _ROW_NAMES})
    busy, ahead = _busy(inserted), _ahead(inserted)
    ungated = _E.gate_key.is_(None)
    return (
        case((ungated, 0), else_=busy).label("busy"),
        case((ungated, 0), else_=ahead).label("ahead"),
    )
