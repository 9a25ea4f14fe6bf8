"""Standings: where a gated execution stands in its gate (:class:`Queue`: slots ``busy``, how
many wait ``ahead`` of it in (eligible_at, id) order), counted in SQL: for a recorded execution
(:func:`standing`), as an insertion's RETURNING (:func:`inserted_standing`), and inside a
gated claim (:mod:`attune.executions.gates`)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, case, func, literal_column, or_, select

from attune.store.db import Database
from attune.store.models import ACTION_TABLE, EXECUTION_TABLE, ExecutionStatus
from attune.store.sqltypes import db_now, in_literals, seconds_since

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


def busy_of(gate: Any) -> Any:
    """How many executions of ``gate``'s gate (an execution row's columns) hold a slot."""
    peer = EXECUTION_TABLE.alias("holding")
    return (
        select(func.count())
        .where(_peer(peer, gate), in_literals(peer.c.status, HOLDING))
        .scalar_subquery()
    )


def ahead_of(me: Any) -> Any:
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


STANDING = (
    select(
        _E.status,
        _E.action_ref,
        _E.gate_key,
        _E.gate_limit,
        _E.policy,
        _E.target_worker,
        (-seconds_since(_E.eligible_at)).label("early_s"),
        _A.runner_type,
        busy_of(_E).label("busy"),
        ahead_of(_E).label("ahead"),
    )
    .select_from(EXECUTION_TABLE.outerjoin(ACTION_TABLE, _A.ref == _E.action_ref))
    .where(_E.id == bindparam("execution_id"))
)
"""A recorded execution, its gate and its action's runtime, with where it stands in its gate
(``:execution_id``)."""


def standing(database: Database, execution_id: int) -> Queue | None:
    """Where a waiting gated execution stands (None: not gated, or not waiting)."""
    with database.session_scope(autocommit=True) as session:
        row = session.execute(STANDING, {"execution_id": execution_id}).first()
    if row is None or row.gate_key is None or row.status != _S.SCHEDULED.value:
        return None
    return Queue(row.busy, row.ahead, row.gate_limit)


_ROW_NAMES = ("action_ref", "gate_key", "eligible_at", "id")


def inserted_standing() -> tuple[Any, Any]:
    """RETURNING columns of an insertion into the execution table (PostgreSQL): the new
    execution's ``busy`` and ``ahead`` (its statement's snapshot does not see the row itself),
    0 and 0 for an ungated one without any subquery run."""
    # The inserted row by name: SQLAlchemy does not correlate into an INSERT's RETURNING.
    inserted = SimpleNamespace(**{name: literal_column(f"execution.{name}") for name in _ROW_NAMES})
    busy, ahead = busy_of(inserted), ahead_of(inserted)
    ungated = _E.gate_key.is_(None)
    return (
        case((ungated, 0), else_=busy).label("busy"),
        case((ungated, 0), else_=ahead).label("ahead"),
    )
