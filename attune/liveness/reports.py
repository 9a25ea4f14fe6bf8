"""What a sweep or a worker's own shutdown changed: the values it reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from attune.executions.dispatch import Dispatch

STOPPED_HEARTBEATING = "stopped heartbeating"
"""The cause of a deactivation by the sweep."""


@dataclass(frozen=True)
class Deactivation:
    """A worker that went inactive, its last heartbeat, and how many executions it abandoned.

    ``cause`` is :data:`STOPPED_HEARTBEATING` for a swept worker, else what the worker said
    as it shut down.
    """

    name: str
    last_heartbeat: datetime | None
    abandoned: int
    cause: str = STOPPED_HEARTBEATING

    @property
    def reason(self) -> str:
        """Why, in words; an abandoned execution's error is "worker <name> <reason>"."""
        if self.cause != STOPPED_HEARTBEATING:
            return self.cause
        return f"{STOPPED_HEARTBEATING}; last heartbeat {when(self.last_heartbeat)}"


@dataclass(frozen=True)
class SweepReport:
    """What one sweep changed."""

    deactivated: tuple[Deactivation, ...] = ()
    failed_scheduled: int = 0
    dispatches: tuple[Dispatch, ...] = ()
    """Task messages the policies owe (retries, gate heads), sent by
    :func:`attune.liveness.announcements.announce`."""
    events: tuple[int, ...] = ()
    """The execution-finished events of the executions it ended, for the rules to enforce
    in its transaction (:func:`attune.liveness.sweep.sweep` with ``events``)."""

    @property
    def abandoned(self) -> int:
        """Executions settled as abandoned, over every deactivated worker."""
        return sum(worker.abandoned for worker in self.deactivated)

    def counts(self) -> dict[str, int]:
        """The counts, for a task result or a log line."""
        return {
            "deactivated": len(self.deactivated),
            "abandoned": self.abandoned,
            "failed_scheduled": self.failed_scheduled,
        }


def when(moment: datetime | None) -> str:
    """A last heartbeat as a log line and an error say it (``never`` if there was none)."""
    return "never" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
