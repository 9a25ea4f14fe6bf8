"""Concurrency gates: at most ``limit`` executions of one (action, key) running, FIFO.

A gated execution carries its gate (``gate_key``, ``gate_limit``, snapshotted when it was
scheduled). Its claim admits it only while fewer than ``limit`` of its gate are ``running``
or ``canceling`` counting those that wait ahead of it (``eligible_at, id``): one conditional
UPDATE, serialized per gate by a row lock on ``concurrency_gate`` (PostgreSQL) or by SQLite's
single writer (on PostgreSQL the function ``attune_claim_gated`` does both in one round
trip). No lock service, no Redis lock. A declined claim changes nothing; what wakes the
waiting is in :mod:`attune.executions.releases`, where an execution stands in its gate in
:mod:`attune.executions.standings`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    String,
    Text,
    bindparam,
    column,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from attune.executions import records, standings
from attune.executions.dispatch import Dispatch
from attune.executions.policies import OnLimit, Policy
from attune.executions.retries import queue_of
from attune.store.db import Database
from attune.store.models import ACTION_TABLE, EXECUTION_TABLE, ExecutionStatus
from attune.store.sqltypes import JSONType, db_now

_E = EXECUTION_TABLE.c
_A = ACTION_TABLE.c
_S = ExecutionStatus


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
            standings.busy_of(_E) < _E.gate_limit,
            standings.ahead_of(_E) == 0,
        )
        .values(
            status=_S.RUNNING.value,
            worker=bindparam("worker"),
            started_at=db_now(),
            claim_token=bindparam("token"),
        )
        .returning(*columns)
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
    token: int | None = None,
) -> Any:
    """After the plain claim refused: start a gated execution if its gate admits it.

    Returns the claimed row (``columns``; on PostgreSQL the columns of
    :data:`CLAIMED_GATED`) or a :class:`Refused`. An early execution (a pending retry) is
    sent again for when it is due; over its limit, ``reject`` cancels it (``finishing``
    records its execution-finished event) and ``queue`` leaves it waiting (its message
    acknowledged, nothing spawned). The claim writes ``token``; on PostgreSQL a claim
    repeated with it (its answer lost) returns the row it claimed.
    """
    values = {"execution_id": execution_id, "worker": worker, "token": token}
    if not database.is_sqlite:  # lock the gate's row and admit: one function, one round trip
        for claimed in database.run(_CLAIM_GATED, values):
            return claimed
    listening = finishing if finishing is not None and finishing.active(database) else None
    after = None
    with database.session_scope() as session:
        standing = session.execute(standings.STANDING, values).first()
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
        waiting = standings.Queue(standing.busy, standing.ahead, standing.gate_limit)
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
        bindparam("execution_id", type_=BigInteger()),
        bindparam("worker", type_=Text()),
        bindparam("token", type_=BigInteger()),
    )
)


def limit_reached(action_ref: str, gate_key: str, limit: int) -> str:
    """The error of an execution rejected by its gate."""
    return f"concurrency limit {limit} reached for {action_ref} (key {gate_key[:12]})"


def _cancel(session: Session, execution_id: int, reason: str) -> bool:
    """Cancel the still scheduled execution; True when it moved."""
    return records.transition_in(session, execution_id, _S.CANCELED, sources=_WAITING, error=reason)


def place(
    database: Database,
    execution_id: int,
    action_ref: str,
    gate_key: str,
    policy: Policy,
    known: standings.Queue | None = None,
    finishing: records.Finishing | None = None,
) -> tuple[bool, str | None]:
    """Right after a gated execution is recorded: whether to send it now, and why it was
    canceled (``reject`` over the limit, or ``max_waiting`` reached), if it was.

    One not sent waits behind a full gate: the gate's releaser or the sweep sends it once it
    is a head. The claim still decides; this only spares messages that would be declined.
    ``known``: where it stands, as its insertion returned it
    (:func:`attune.executions.standings.inserted_standing`); ``finishing`` records the
    execution-finished event of one canceled.
    """
    gate = policy.concurrency
    queue = known or standings.standing(database, execution_id)
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
