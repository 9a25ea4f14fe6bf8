"""Retries: each attempt its own execution, the next one created with the terminal transition.

Whoever makes an attempt terminal (the runner, the worker whose pool process died, the
sweep) calls :func:`follow` in the same transaction; ``retry_of_id`` is unique, so whatever
races, one successor at most is inserted (``ON CONFLICT DO NOTHING``). The successor is
``scheduled`` with ``eligible_at`` (not before) set from the end of the attempt it follows:
the delay lives in SQL, never in a sleeping process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from attune.executions.dispatch import Dispatch
from attune.executions.policies import Policy, RetryOn
from attune.executions.queues import runtime_queue, worker_queue
from attune.executions.records import Finishing
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import ACTION_TABLE, EXECUTION_TABLE, TRANSITIONS, ExecutionStatus
from attune.store.sqltypes import UTCDateTime, cutoff, db_now

_E = EXECUTION_TABLE.c
_A = ACTION_TABLE.c

ENDED_COLUMNS = (
    _E.id,
    _E.status,
    _E.policy,
    _E.attempt,
    _E.max_attempts,
    _E.target_worker,
    _E.timeout_s,
    _E.started_at,
    _E.spawned_at,
    _E.finished_at,
)
"""What :func:`follow` needs of the attempt that ended (a terminal UPDATE can return them)."""

_COPIED = (
    "action_ref",
    "parameters",
    "secrets",  # the encrypted blob as is: parameters stay masked, secrets sealed
    "target_worker",
    "timeout_s",
    "policy",
    "max_attempts",
    "gate_key",
    "gate_limit",
    "first_attempt_id",
    "parent_id",  # a workflow task's next attempt belongs to the same run, activation, item
    "wf_task_id",
    "wf_item",
)


@dataclass(frozen=True)
class Ended:
    """An attempt that reached a terminal status, as :func:`follow` reads it."""

    id: int
    status: ExecutionStatus
    policy: Policy
    attempt: int
    max_attempts: int
    target_worker: str | None
    timeout_s: float | None
    started_at: datetime | None
    spawned_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Ended:
        """From a row holding :data:`ENDED_COLUMNS`."""
        return cls(
            id=row.id,
            status=ExecutionStatus(row.status),
            policy=Policy.from_json(row.policy),
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            target_worker=row.target_worker,
            timeout_s=row.timeout_s,
            started_at=row.started_at,
            spawned_at=row.spawned_at,
            finished_at=row.finished_at,
        )


def retried_as(policy: Policy, status: ExecutionStatus, spawned: bool) -> RetryOn | None:
    """Which rule of ``policy`` retries an attempt that ended ``status``, if any.

    An attempt abandoned before its process started never ran user code: it counts as
    failed. ``canceled`` and ``succeeded`` are never retried.
    """
    if policy.retry is None:
        return None
    if status is ExecutionStatus.ABANDONED and not spawned:
        status = ExecutionStatus.FAILED
    if status.value not in (rule.value for rule in policy.retry.on):
        return None
    return RetryOn(status.value)


def eligible_at(ended: Ended, settings: Settings) -> datetime | None:
    """When the attempt after ``ended`` may start; None when no attempt follows it."""
    rule = retried_as(ended.policy, ended.status, ended.spawned_at is not None)
    if rule is None or ended.attempt >= ended.max_attempts or ended.policy.retry is None:
        return None
    assert ended.finished_at is not None  # terminal rows always have it
    delay_s = ended.policy.retry.delay_before(ended.attempt + 1)
    moment = ended.finished_at + timedelta(seconds=delay_s)
    if rule is RetryOn.ABANDONED and ended.started_at is not None:
        # The old process may still run on a cut-off host until its timeout killed it.
        timeout_s = ended.timeout_s or ended.policy.timeout_s or settings.default_timeout_s
        window = timedelta(seconds=timeout_s + settings.kill_grace_s)
        moment = max(moment, ended.started_at + window)
    return moment


def follow(
    session: Session, settings: Settings, ended: Ended, runner_type: str | None
) -> Dispatch | None:
    """Insert the attempt after ``ended`` when its policy asks for one (in the caller's
    transaction); the message to send for it, or None (no retry, or one exists already)."""
    moment = eligible_at(ended, settings)
    if moment is None:
        return None
    inserted = session.execute(
        _successor(session.get_bind().dialect.name),
        {"id": ended.id, "status": ended.status.value, "eligible_at": moment},
    ).first()
    if inserted is None:
        return None
    if runner_type is None and not ended.target_worker:
        return None  # its action is gone: nothing serves it, the sweep times it out
    delay_s = max((moment - inserted.now).total_seconds(), 0.0)
    return Dispatch(inserted.id, queue_of(ended.target_worker, runner_type or ""), delay_s)


def _successor(dialect: str) -> Any:
    """INSERT … SELECT the next attempt of execution ``:id`` (still ``:status``), once."""
    source = select(
        *(_E[name] for name in _COPIED),
        (_E.attempt + 1).label("attempt"),
        _E.id.label("retry_of_id"),
        bindparam("eligible_at", type_=UTCDateTime()).label("eligible_at"),
        literal(ExecutionStatus.SCHEDULED.value).label("status"),
    ).where(_E.id == bindparam("id"), _E.status == bindparam("status"))
    columns = [*_COPIED, "attempt", "retry_of_id", "eligible_at", "status"]
    construct = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        construct(EXECUTION_TABLE)
        .from_select(columns, source)
        # The unique index holds only the rows that have one (migration 20261201_0016).
        .on_conflict_do_nothing(
            index_elements=["retry_of_id"], index_where=_E.retry_of_id.is_not(None)
        )
        .returning(_E.id, _E.requested_at.label("now"))
    )


REPAIR_WINDOW_S = 86_400.0
"""How far back the sweep looks for ended attempts whose successor a crash left missing."""
SWEEP_BATCH = 1000
"""Most rows one sweep repairs or sends of each kind."""

_RETRIABLE = tuple(sorted(rule.value for rule in RetryOn))


def repair(session: Session, settings: Settings, now: datetime | None = None) -> list[Dispatch]:
    """Create the successors that ended attempts are owed and lack (a crash in between, or an
    attempt the sweep itself just abandoned); the messages to send for them."""
    rows = session.execute(owed_query(now)).all()
    created = (follow(session, settings, Ended.from_row(row), row.runner_type) for row in rows)
    return [dispatch for dispatch in created if dispatch is not None]


@functools.lru_cache(maxsize=16)
def owed_query(now: datetime | None) -> Any:
    """The ended attempts owed a successor they lack (built once per clock: every sweep asks)."""
    successor = EXECUTION_TABLE.alias("successor")
    return (
        select(*ENDED_COLUMNS, _A.runner_type)
        .select_from(EXECUTION_TABLE.outerjoin(ACTION_TABLE, _A.ref == _E.action_ref))
        .where(
            _E.max_attempts > 1,
            _E.status.in_(_RETRIABLE),
            _E.finished_at >= cutoff(REPAIR_WINDOW_S, now),
            _E.attempt < _E.max_attempts,
            ~select(successor.c.id).where(successor.c.retry_of_id == _E.id).exists(),
        )
        .order_by(_E.id)
        .limit(SWEEP_BATCH)
    )


def due(session: Session, now: datetime | None = None) -> list[Dispatch]:
    """Messages for pending ungated retries that are eligible now (a lost countdown message,
    or a delay too long for one); the claim refuses any that was sent twice."""
    rows = session.execute(due_query(now)).all()
    return [Dispatch(row.id, queue_of(row.target_worker, row.runner_type)) for row in rows]


@functools.lru_cache(maxsize=16)
def due_query(now: datetime | None) -> Any:
    """The pending ungated retries eligible now (built once per clock)."""
    return (
        select(_E.id, _E.target_worker, _A.runner_type)
        .select_from(EXECUTION_TABLE.join(ACTION_TABLE, _A.ref == _E.action_ref))
        .where(
            _E.status == ExecutionStatus.SCHEDULED.value,
            _E.attempt > 1,
            _E.gate_key.is_(None),
            _E.eligible_at <= cutoff(0, now),
        )
        .order_by(_E.eligible_at, _E.id)
        .limit(SWEEP_BATCH)
    )


def queue_of(target_worker: str | None, runner_type: str) -> str:
    """The queue an execution's message goes to: its named worker's, else its runtime's."""
    return worker_queue(target_worker) if target_worker else runtime_queue(runner_type)


@dataclass(frozen=True)
class Transitioned:
    """An attempt moved to a terminal status: the successor to send, the gate it freed."""

    successor: Dispatch | None
    gate: tuple[str, str, int] | None
    """(action_ref, gate_key, gate_limit) of a gated attempt: its gate has a free slot now."""
    parent_id: int | None = None
    """The workflow run the attempt is a task of: it has an outcome to take in."""


def end_attempt(
    database: Database,
    settings: Settings,
    execution_id: int,
    target: ExecutionStatus,
    finishing: Finishing | None = None,
    *,
    held_by: str | None = None,
    **values: Any,
) -> Transitioned | None:
    """Move the attempt to terminal ``target`` and insert its successor, in one transaction
    (with an active ``finishing``, its execution-finished event too).

    None when the attempt was not in a state that allows ``target`` (or, with ``held_by``,
    not held by that worker).
    """
    statement = (
        update(EXECUTION_TABLE)
        .where(_E.id == execution_id, _E.status.in_(sorted(TRANSITIONS[target])))
        .values(status=target.value, finished_at=db_now(), **values)
        .returning(*ENDED_COLUMNS, _E.action_ref, _E.gate_key, _E.gate_limit, _E.parent_id)
    )
    if held_by is not None:
        statement = statement.where(_E.worker == held_by)
    watching = finishing is not None and finishing.active(database, status=target.value)
    listening = finishing if watching else None
    with database.session_scope() as session:
        row = session.execute(statement).first()
        if row is None:
            return None
        ended = Ended.from_row(row)
        runner_type = None
        if eligible_at(ended, settings) is not None:
            runner_type = session.scalar(select(_A.runner_type).where(_A.ref == row.action_ref))
        successor = follow(session, settings, ended, runner_type)
        after = None if listening is None else listening.record(session, execution_id)
    if after is not None:
        after()
    gate = None if row.gate_key is None else (row.action_ref, row.gate_key, row.gate_limit)
    return Transitioned(successor, gate, row.parent_id)
