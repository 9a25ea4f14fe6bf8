"""Overdue policy work the sweep catches up with, wherever the sweep runs.

Retry successors a crash left missing are created (and those of executions the sweep itself
just abandoned, in its transaction), pending retries that are due are sent, and the heads of
gates with free slots are sent. Messages are hints: a doubled one is refused by the claim.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from attune.executions import releases, retries
from attune.executions.dispatch import Dispatch
from attune.settings import Settings


def catch_up(session: Session, settings: Settings, now: datetime | None = None) -> list[Dispatch]:
    """Do the policies' overdue work in the caller's transaction; the messages to send once
    it committed (:func:`attune.executions.dispatch.send`)."""
    created = retries.repair(session, settings, now)
    made = {dispatch.execution_id for dispatch in created}
    due = [dispatch for dispatch in retries.due(session, now) if dispatch.execution_id not in made]
    return [*created, *due, *releases.sweep_heads(session, now)]
