"""Locking a run for its advance, and telling in one round trip that another advance holds it.

An advance locks its run with one UPDATE (a row lock on PostgreSQL, the write lock on SQLite),
which on PostgreSQL also reads the parent's row and takes a transaction-level advisory lock
keyed by the run's id (the one-``bigint`` key space; attune takes no other advisory lock).
Only a holder of the row lock takes that advisory lock, and it never waits for it. The same
statement stores the result of the child whose worker advances the run, once the row is
locked (a CTE; SQLite runs the store next).

So :func:`held_elsewhere` can ask, with one autocommit ``pg_try_advisory_xact_lock`` (no
transaction of a session, no row written), whether an advance holds the run now. A worker
whose fan-out item just ended asks that first: when the answer is yes, that advance looks
for ended children after its commit and takes the item in, as it would after the worker's
``SKIP LOCKED`` attempt had found the row locked (that attempt cost a BEGIN, the lock
statement and a COMMIT through a session). When the answer is no, or the probe itself held
the advisory lock at the moment a holder tried it, the worker makes the attempt as before.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger, BindParameter, Update, bindparam, exists, func, select, update
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.sql import visitors

from attune.store.db import Database
from attune.store.models import (
    EXECUTION_TABLE,
    WORKFLOW_RUN_TABLE,
    RunPhase,
    TaskState,
    WorkflowRun,
    WorkflowTask,
)
from attune.store.sqltypes import db_now

_E = EXECUTION_TABLE.c
_RUN = WORKFLOW_RUN_TABLE
_RUN_KEYS = tuple(column.key for column in _RUN.c)
_PARENT_COLUMNS = (_E.parameters, _E.secrets, _E.status, _E.parent_id, db_now().label("now"))
_FREE = (
    select(_RUN.c.execution_id)
    .where(_RUN.c.execution_id == bindparam("id"))
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)


def _locking(free: bool) -> Any:
    """The UPDATE that locks a run that is not done (``free``: unless another holds it)."""
    target = _FREE if free else bindparam("id")
    return (
        update(_RUN)
        .where(_RUN.c.phase != RunPhase.DONE.value, _RUN.c.execution_id == target)
        .values(version=_RUN.c.version + 1)
    )


# The children in flight when the lock was taken (a running activation's): when the pass took
# in all of them, none can have ended while it held the lock, and no look after it is owed.
_IN_FLIGHT = (
    select(func.coalesce(func.sum(WorkflowTask.in_flight), 0))
    .where(
        WorkflowTask.workflow_id == _RUN.c.execution_id,
        WorkflowTask.state == TaskState.RUNNING.value,
    )
    .scalar_subquery()
    .label("in_flight")
)
# Evaluated once the row is locked (RETURNING), so only a holder of the row lock takes it.
_HOLDING = func.pg_try_advisory_xact_lock(_RUN.c.execution_id).label("holding")
# Core statements, built once: PostgreSQL locks the run and reads its parent in one statement
# (SQLite's RETURNING cannot name the joined table). The run's row becomes the session's
# object without the ORM's UPDATE ... RETURNING of an entity (about a quarter of an
# advance's CPU time).
_LOCK_JOINED = {
    free: _locking(free)
    .where(_E.id == _RUN.c.execution_id)
    .returning(*_RUN.c, *_PARENT_COLUMNS, _IN_FLIGHT, _HOLDING)
    for free in (False, True)
}
_LOCK_ALONE = {free: _locking(free).returning(*_RUN.c) for free in (False, True)}
_PARENT = select(*_PARENT_COLUMNS).where(_E.id == bindparam("id"))
_PROBE = select(func.pg_try_advisory_xact_lock(bindparam("id", type_=BigInteger())).label("free"))


def held_elsewhere(database: Database, workflow_id: int) -> bool:
    """True if an advance holds run ``workflow_id`` now (PostgreSQL; False on SQLite, whose
    advances serialize on the database's write lock)."""
    if database.is_sqlite:
        return False
    return not database.run(_PROBE, {"id": workflow_id})[0].free


Store = tuple[Update, Mapping[str, Any]]
"""A worker's store of its ended child's result: a conditional UPDATE of the execution table
that returns a row when it wrote (:func:`attune.executions.records.transition_of`), and its
values: the child's id as ``execution_id``, the others named as the columns it sets."""


# In one statement, a value named as a column of either table would be written to it: the
# lock's ``id`` and the store's ``execution_id`` are bound by these names instead.
_LOCKED_ID, _STORED_ID = "locked_run_id", "stored_child_id"
_NO_OPTIONS: dict[str, Any] = {}


def _renamed(statement: Any, old: str, new: str) -> Any:
    """``statement`` with its bound value ``old`` bound as ``new``."""

    def rename(element: Any, **_kw: Any) -> Any:
        if isinstance(element, BindParameter) and element.key == old:
            return bindparam(new, type_=element.type)
        return None

    return visitors.replacement_traverse(statement, _NO_OPTIONS, rename)


@functools.cache
def _storing(free: bool, store: Update) -> Any:
    """The lock (``free``: unless another holds it) and, once it holds, the ``store`` in one
    statement: the locked run's row and its parent's, and whether the store wrote."""
    locked = _renamed(_LOCK_JOINED[free], "id", _LOCKED_ID).cte("locked")
    guarded = store.where(exists(select(locked.c.execution_id)))
    stored = _renamed(guarded, "execution_id", _STORED_ID).cte("stored")
    return select(*locked.c, exists(select(stored.c.id)).label("stored"))


def lock(
    session: Session, workflow_id: int, unless_busy: bool, store: Store | None = None
) -> tuple[WorkflowRun, Any, bool] | None:
    """Lock the run (None if it is done, or busy with ``unless_busy``); it and its parent's
    row (parameters, secrets, status, its own parent, the database's ``now``), and whether
    ``store``, run once the lock holds (in the same statement on PostgreSQL), wrote."""
    values = {"id": workflow_id}
    if session.get_bind().dialect.name != "sqlite":
        if store is None:
            joined = session.execute(_LOCK_JOINED[unless_busy], values).first()
        else:
            bound = {_STORED_ID if key == "execution_id" else key: v for key, v in store[1].items()}
            statement = _storing(unless_busy, store[0])
            joined = session.execute(statement, {**bound, _LOCKED_ID: workflow_id}).first()
        if joined is None:
            return None
        return _attached(session, joined), joined, store is not None and joined.stored
    row = session.execute(_LOCK_ALONE[unless_busy], values).first()
    if row is None:
        return None
    stored = store is not None and session.execute(*store).first() is not None
    return _attached(session, row), session.execute(_PARENT, values).one(), stored


def _attached(session: Session, row: Any) -> WorkflowRun:
    """The locked run's row as the session's object, as if loaded (its changes are flushed)."""
    run = WorkflowRun(**{key: getattr(row, key) for key in _RUN_KEYS})
    make_transient_to_detached(run)
    session.add(run)
    return run
