"""Overdue policy work the sweep catches up with, wherever the sweep runs.

Retry successors a crash left missing are created (and those of executions the sweep itself
just abandoned, in its transaction), pending retries that are due are sent, the heads of gates
with free slots are sent, and so is every execution still ``scheduled`` a while after it was
due, whose message a broker may have lost (a restart, a delivery whose record was lost). Messages
are hints: a doubled one is refused by the claim.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, false, or_, select, update
from sqlalchemy.orm import Session

from attune.executions import releases, retries
from attune.executions.dispatch import Dispatch
from attune.settings import Settings
from attune.store.models import ACTION_TABLE, EXECUTION_TABLE, ExecutionStatus
from attune.store.sqltypes import cutoff, db_now, in_constants

_E = EXECUTION_TABLE.c
_A = ACTION_TABLE.c


@dataclass(frozen=True)
class Owed:
    """Which of the overdue kinds of work :func:`probe` found some of (True: look for it)."""

    repairs: bool = True
    due: bool = True
    stale: bool = True
    heads: bool = True


EVERY = Owed()
"""Look for every kind (what a caller that did not probe asks)."""


def probe(settings: Settings, now: datetime | None = None) -> tuple[Any, ...]:
    """Whether each of :func:`catch_up`'s reads would find anything, as columns for a
    statement of the caller's (in :class:`Owed`'s order): the sweep asks in a statement it
    sends anyway, and an idle sweep spends no round trip on the four reads."""
    after_s = settings.resend_after_s
    stale = _every_stale(after_s, now).exists() if after_s > 0 else false()
    return (
        retries.owed_query(now).exists(),
        retries.due_query(now).exists(),
        stale,
        releases.waiting_gates_query(now).exists(),
    )


def catch_up(
    session: Session, settings: Settings, now: datetime | None = None, owed: Owed = EVERY
) -> list[Dispatch]:
    """Do the policies' overdue work in the caller's transaction; the messages to send once
    it committed (:func:`attune.executions.dispatch.send`). ``owed``: what a :func:`probe` in
    this transaction found (a successor created here has every kind looked for after it)."""
    created = retries.repair(session, settings, now) if owed.repairs else []
    if created:
        owed = EVERY
    made = {dispatch.execution_id for dispatch in created}
    found = retries.due(session, now) if owed.due else []
    due = [dispatch for dispatch in found if dispatch.execution_id not in made]
    sent = made | {dispatch.execution_id for dispatch in due}
    found = resend(session, settings, now) if owed.stale else []
    stale = [dispatch for dispatch in found if dispatch.execution_id not in sent]
    heads = releases.sweep_heads(session, now) if owed.heads else []
    return [*created, *due, *stale, *heads]


def resend(session: Session, settings: Settings, now: datetime | None = None) -> list[Dispatch]:
    """Ungated executions ``scheduled`` for ``ATTUNE_RESEND_AFTER_S`` past their eligible time,
    each sent again at most once per that interval (``dispatched_at``); 0 turns it off."""
    return resend_stale(session, settings.resend_after_s, now)


def resend_stale(
    session: Session,
    after_s: float,
    now: datetime | None = None,
    *among: ColumnElement[bool],
) -> list[Dispatch]:
    """The messages of ungated executions (``among`` narrows them) still ``scheduled``
    ``after_s`` past their eligible time, each at most once per ``after_s`` (``dispatched_at``,
    stamped here); none when ``after_s`` is 0."""
    if after_s <= 0:
        return []
    query = _stale(after_s, now, among) if among else _every_stale(after_s, now)
    rows = session.execute(query).all()
    if rows:
        ids = [row.id for row in rows]
        session.execute(
            update(EXECUTION_TABLE).where(_E.id.in_(ids)).values(dispatched_at=db_now())
        )
    return [Dispatch(row.id, retries.queue_of(row.target_worker, row.runner_type)) for row in rows]


@functools.lru_cache(maxsize=16)
def _every_stale(after_s: float, now: datetime | None) -> Any:
    """:func:`_stale` of every execution, built once per clock: every sweep asks."""
    return _stale(after_s, now, ())


def _stale(after_s: float, now: datetime | None, among: tuple[ColumnElement[bool], ...]) -> Any:
    """The ungated executions (``among`` narrows them) scheduled ``after_s`` past their
    eligible time and not sent within it."""
    since = cutoff(after_s, now)
    return (
        select(_E.id, _E.target_worker, _A.runner_type)
        .select_from(EXECUTION_TABLE.join(ACTION_TABLE, _A.ref == _E.action_ref))
        .where(
            *among,
            in_constants(_E.status, (ExecutionStatus.SCHEDULED,)),
            _E.gate_key.is_(None),
            _E.eligible_at <= since,
            or_(_E.dispatched_at.is_(None), _E.dispatched_at <= since),
        )
        .order_by(_E.eligible_at, _E.id)
        .limit(retries.SWEEP_BATCH)
    )
