"""Releases: when a gated execution's slot frees, send the heads of its gate that it lets in.

Whoever ends a gated execution sends its gate's next heads (:func:`release`); canceling a
waiting one sends the heads that moved up (:func:`after_cancel`); the sweep sends the heads of
every gate with free slots (:func:`sweep_heads`), the safety net for a lost message or a
releaser that crashed. Messages are hints: the claim (:mod:`attune.executions.gates`) decides.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from attune.executions.dispatch import Dispatch
from attune.executions.retries import SWEEP_BATCH, queue_of
from attune.executions.standings import HOLDING
from attune.store.db import Database
from attune.store.models import ACTION_TABLE, EXECUTION_TABLE, ExecutionStatus
from attune.store.sqltypes import cutoff, db_now

_E = EXECUTION_TABLE.c
_A = ACTION_TABLE.c
_S = ExecutionStatus


RESEND_S = 1.0
"""A head a releaser sent this recently is not sent again by another release (the sweep sends
the head of every gate with a free slot, whatever)."""


def heads(
    session: Session, action_ref: str, gate_key: str, limit: int, *, fresh: bool = False
) -> list[Dispatch]:
    """The message for the gate's head, its oldest eligible execution, if a slot is free.

    Admission is strictly FIFO, so only the head can start; its claim sends the next head
    while slots remain. With ``fresh`` (a release) only a head no release sent within
    :data:`RESEND_S`, marked sent in the same statement: concurrent releases send it once.
    """
    busy = session.execute(
        select(func.count()).where(
            _E.action_ref == action_ref, _E.gate_key == gate_key, _E.status.in_(HOLDING)
        )
    ).scalar_one()
    if busy >= limit:
        return []
    window = (
        select(_E.id)
        .where(
            _E.action_ref == action_ref,
            _E.gate_key == gate_key,
            _E.status == _S.SCHEDULED.value,
            _E.eligible_at <= db_now(),
        )
        .order_by(_E.eligible_at, _E.id)
        .limit(1)
    )
    if fresh:
        marked = session.execute(
            update(EXECUTION_TABLE)
            .where(
                _E.id.in_(window.scalar_subquery()),
                _E.status == _S.SCHEDULED.value,
                or_(_E.dispatched_at.is_(None), _E.dispatched_at <= cutoff(RESEND_S)),
            )
            .values(dispatched_at=db_now())
            .returning(_E.id)
        ).scalars()
        ids = sorted(marked)
    else:
        ids = list(session.execute(window).scalars())
    if not ids:
        return []
    rows = session.execute(
        select(_E.id, _E.target_worker, _A.runner_type)
        .select_from(EXECUTION_TABLE.join(ACTION_TABLE, _A.ref == _E.action_ref))
        .where(_E.id.in_(ids))
        .order_by(_E.eligible_at, _E.id)
    ).all()
    return [Dispatch(row.id, queue_of(row.target_worker, row.runner_type)) for row in rows]


def release(
    database: Database, action_ref: str, gate_key: str, limit: int, *, fresh: bool = True
) -> list[Dispatch]:
    """After a gated execution's terminal transition committed: the gate's head, unless
    another release just sent it. ``fresh=False`` (a gated claim left slots free): even so,
    since a message whose execution was taken meanwhile claims the gate's head instead."""
    with database.session_scope(autocommit=True) as session:
        return heads(session, action_ref, gate_key, limit, fresh=fresh)


_GATE_OF = select(_E.action_ref, _E.gate_key, _E.gate_limit).where(
    _E.id == bindparam("execution_id"), _E.gate_key.is_not(None)
)


def gate_of(database: Database, execution_id: int) -> tuple[str, str, int] | None:
    """The gate of an execution (its action's ref, its key, its limit), None if ungated."""
    for gate in database.run(_GATE_OF, {"execution_id": execution_id}):
        return gate.action_ref, gate.gate_key, gate.gate_limit
    return None


def after_cancel(database: Database, execution_id: int) -> list[Dispatch]:
    """After a waiting gated execution was canceled: the gate's head (the one behind it may
    have moved up to the head without a message)."""
    with database.session_scope(autocommit=True) as session:
        gate = session.execute(_GATE_OF, {"execution_id": execution_id}).first()
        if gate is None:
            return []
        return heads(session, gate.action_ref, gate.gate_key, gate.gate_limit)


def sweep_heads(session: Session, now: datetime | None = None) -> list[Dispatch]:
    """The heads of every gate with waiting executions and free slots (the safety net for a
    lost message or a releaser that crashed)."""
    gates = session.execute(waiting_gates_query(now)).all()
    found: list[Dispatch] = []
    for gate in gates:
        found.extend(heads(session, gate.action_ref, gate.gate_key, gate.limit))
    return found


@functools.lru_cache(maxsize=16)
def waiting_gates_query(now: datetime | None) -> Any:
    """The gates with eligible waiting executions (built once per clock: every sweep asks)."""
    return (
        select(_E.action_ref, _E.gate_key, func.max(_E.gate_limit).label("limit"))
        .where(
            _E.status == _S.SCHEDULED.value,
            _E.gate_key.is_not(None),
            _E.eligible_at <= cutoff(0, now),
        )
        .group_by(_E.action_ref, _E.gate_key)
        .limit(SWEEP_BATCH)
    )
