"""Claims: an execution moved ``scheduled`` → ``running`` for one worker, exactly once.

A claim is one conditional UPDATE (on PostgreSQL it reads the action in the same statement);
a gated or early execution goes to :mod:`attune.executions.gates`. Each claim carries a random
token it writes on the row, so a claim repeated because the database's answer was lost (a
restart between commit and reply) finds its own row instead of a ``running`` one to skip.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from attune.executions import dispatch, gates, releases, routing
from attune.executions.handoff import Taken
from attune.executions.records import Finishing
from attune.store.db import Database
from attune.store.models import ACTION_TABLE, EXECUTION_TABLE, TRANSITIONS, ExecutionStatus
from attune.store.sqltypes import db_now, in_literals

log = logging.getLogger(__name__)

_EXECUTION = EXECUTION_TABLE.c
_ACTION = ACTION_TABLE.c
# Hot-path statements are built once; each call only binds its values.
_TO_RUNNING = (
    update(EXECUTION_TABLE)
    .where(
        _EXECUTION.id == bindparam("execution_id"),
        or_(
            and_(
                in_literals(_EXECUTION.status, TRANSITIONS[ExecutionStatus.RUNNING]),
                # Gated executions are claimed by attune.executions.gates; retries not before due.
                _EXECUTION.gate_key.is_(None),
                _EXECUTION.eligible_at <= db_now(),
            ),
            # This very claim, committed by an attempt whose answer was lost.
            and_(
                _EXECUTION.status == ExecutionStatus.RUNNING.value,
                _EXECUTION.claim_token == bindparam("token"),
            ),
        ),
    )
    .values(
        status=ExecutionStatus.RUNNING.value,
        worker=bindparam("worker"),
        started_at=db_now(),
        claim_token=bindparam("token"),
    )
)
CLAIMED_COLUMNS = (
    _EXECUTION.action_ref,
    _EXECUTION.parameters,
    _EXECUTION.secrets,
    _EXECUTION.timeout_s,
    _EXECUTION.policy,
    _EXECUTION.gate_key,
    _EXECUTION.gate_limit,
    _EXECUTION.parent_id,
    _EXECUTION.wf_item,
)
_ACTION_COLUMNS = (
    _ACTION.runner_type,
    _ACTION.entry_point,
    _ACTION.parameter_delivery,
    _ACTION.parameter_format,
    _ACTION.output_format,
    _ACTION.timeout_s.label("action_timeout_s"),
)
_CLAIM = _TO_RUNNING.returning(*CLAIMED_COLUMNS)
_ACTION_RUN = select(*_ACTION_COLUMNS).where(_ACTION.ref == bindparam("ref"))
# PostgreSQL claims and reads the action in one statement (SQLite's RETURNING cannot name
# the joined table); no row means "not scheduled" or "action gone", which _CLAIM sorts out.
_CLAIM_JOINED = _TO_RUNNING.where(_EXECUTION.action_ref == _ACTION.ref).returning(
    *CLAIMED_COLUMNS, *_ACTION_COLUMNS
)


def claim(
    database: Database,
    execution_id: int,
    worker_name: str,
    token: int,
    finishing: Finishing | None = None,
) -> tuple[Any, Any]:
    """Move the execution scheduled → running under the claim ``token``; its row and its
    action's, or (None, None). Repeated with the same ``token``, it finds the row it claimed."""
    values = {"execution_id": execution_id, "worker": worker_name, "token": token}
    if not database.is_sqlite:
        for joined in database.run(_CLAIM_JOINED, values):
            return joined, joined
    else:
        for claimed in database.run(_CLAIM, values):
            return claimed, _action_of(database, claimed)
    # Not claimable as a plain execution: gated, early (a pending retry), or no longer due.
    return _claim_gated(database, values, finishing)


def _claim_gated(
    database: Database, values: dict[str, Any], finishing: Finishing | None = None
) -> tuple[Any, Any]:
    """The claim (``values``) of an execution the plain claim refused (gated, early, gone)."""
    execution_id, worker_name = values["execution_id"], values["worker"]
    admitted = gates.claim(
        database, execution_id, worker_name, CLAIMED_COLUMNS, finishing, values["token"]
    )
    if admitted is gates.UNGATED:
        for claimed in database.run(_CLAIM, values):  # PostgreSQL: its action is gone
            return claimed, _action_of(database, claimed)
    if isinstance(admitted, gates.Refused):
        log.info("not running execution %s: %s", execution_id, admitted.reason)
        if admitted.dispatch is not None:
            dispatch.send([admitted.dispatch])
        return None, None
    # Strict FIFO admits one at a time: with a slot left and others waiting, send the next.
    if database.is_sqlite or (
        admitted.busy_before + 1 < admitted.gate_limit and admitted.waiting_behind > 0
    ):
        gate = (admitted.action_ref, admitted.gate_key, admitted.gate_limit)
        dispatch.send(releases.release(database, *gate, fresh=False))
    return with_action(database, admitted)


def with_action(database: Database, admitted: Any) -> tuple[Any, Any]:
    """A gated claim's row and its action's (on PostgreSQL the claim brought it along)."""
    if not database.is_sqlite:
        return admitted, admitted if admitted.runner_type is not None else None
    return admitted, _action_of(database, admitted)


def claim_in(
    worker: str, session: Session, execution_id: int, token: int | None = None
) -> Taken | None:
    """Claim a scheduled execution for ``worker`` in ``session`` (an advance's): the same
    conditional UPDATE as a message's claim, so it runs once whoever else tries; an advance
    repeated because its commit's answer was lost finds what it claimed under ``token``."""
    values = {"execution_id": execution_id, "worker": worker, "token": token}
    if session.get_bind().dialect.name != "sqlite":
        joined = session.execute(_CLAIM_JOINED, values).first()
        return None if joined is None else (execution_id, joined, joined)
    claimed = session.execute(_CLAIM, values).first()
    if claimed is None:
        return None
    return execution_id, claimed, session.execute(_ACTION_RUN, {"ref": claimed.action_ref}).first()


_RECORDED_CLAIMED_COLUMNS = ("status", "worker", "started_at", "claim_token")


@functools.cache
def _recording_claimed(extra: tuple[str, ...], joined: bool) -> Any:
    """Insert a request for an action known unchanged since ``updated_at`` as ``running`` for
    ``worker`` under ``token``, with the ``extra`` columns; its claimed columns, and (``joined``,
    PostgreSQL: one statement) its action's. No row when the action changed or went away."""
    values = select(
        *routing.request_values(),
        *map(routing.bound, extra),
        literal(ExecutionStatus.RUNNING.value),
        bindparam("worker", type_=_EXECUTION.worker.type),
        db_now(),
        bindparam("token", type_=_EXECUTION.claim_token.type),
    ).where(routing.unchanged())
    inserted = (
        insert(EXECUTION_TABLE)
        .from_select([*routing.REQUEST_COLUMNS, *extra, *_RECORDED_CLAIMED_COLUMNS], values)
        .returning(_EXECUTION.id, *CLAIMED_COLUMNS)
    )
    if not joined:
        return inserted
    row = inserted.cte("inserted")
    return select(*row.c, *_ACTION_COLUMNS).join_from(
        row, ACTION_TABLE, _ACTION.ref == row.c.action_ref
    )


def record_in(
    worker: str,
    session: Session,
    row: Mapping[str, Any],
    updated_at: datetime,
    extra: Mapping[str, Any],
    token: int | None = None,
) -> Taken | None:
    """Record a request (its ``row`` validated against its action as last read here, unchanged
    since ``updated_at``) in ``session`` already claimed for ``worker``: one statement where a
    scheduled row and its claim took two. None, nothing written, when the action changed."""
    joined = session.get_bind().dialect.name != "sqlite"
    values = {**row, **extra, "updated_at": updated_at, "worker": worker, "token": token}
    claimed = session.execute(_recording_claimed(tuple(extra), joined), values).first()
    if claimed is None:
        return None
    if joined:
        return claimed.id, claimed, claimed
    return claimed.id, claimed, session.execute(_ACTION_RUN, {"ref": claimed.action_ref}).first()


def _action_of(database: Database, claimed: Any) -> Any:
    actions = database.run(_ACTION_RUN, {"ref": claimed.action_ref})
    return actions[0] if actions else None
