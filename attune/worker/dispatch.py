"""Send the tasks of recorded executions to their queues, after the recording committed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from attune.errors import EnqueueError
from attune.executions import records as executions
from attune.executions.dispatch import EXECUTE_TASK
from attune.rules import enforcement, finished, timers
from attune.rules.enforcement import Enforced
from attune.rules.timers import TickReport
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import ExecutionStatus
from attune.worker import sender
from attune.worker.app import app, resources

log = logging.getLogger(__name__)


def send_task(database: Database, execution_id: int, queue: str) -> None:
    """Send ``attune.execute_action(execution_id)`` to ``queue``; when the broker refuses it,
    store the execution ``failed`` with the reason and raise :class:`EnqueueError`."""
    try:
        sender.send(app, EXECUTE_TASK, execution_id, queue)
    except Exception as exc:  # kombu and redis raise several families; all mean "not sent"
        reason = f"the broker refused the message: {exc}"
        finishing = RuleFinishing(resources.settings)
        database.reconnecting(
            lambda: executions.finish(
                database, execution_id, ExecutionStatus.FAILED, finishing, error=reason
            )
        )
        raise EnqueueError(execution_id, str(exc)) from exc


def send_enforced(database: Database, enforced: Iterable[Enforced]) -> int:
    """Send the task of every scheduled enforcement's execution, follow-ups included; returns
    how many were sent.

    A refused message leaves its execution ``failed`` (logged), and the others still go.
    """
    sent = 0
    for rule_ref, execution_id, queue in (item for top in enforced for item in top.routed()):
        try:
            send_task(database, execution_id, queue)
            sent += 1
        except EnqueueError as error:
            log.warning("rule %s: %s", rule_ref, error)
    return sent


@dataclass(frozen=True)
class RuleFinishing:
    """The runner's :class:`~attune.executions.results.Finishing` for execution-finished rules:
    the event and its enforcements in the terminal transaction, their tasks sent after it."""

    settings: Settings

    def active(
        self, database: Database, action_ref: str | None = None, status: str | None = None
    ) -> bool:
        """True when an enabled execution-finished rule may select the execution."""
        return finished.watched(database, action_ref, status)

    def record(self, session: Session, execution_id: int) -> Callable[[], object]:
        """Record the event in ``session``; returns the sending of the follow-ups."""
        enforced = finished.record_finished(session, self.settings, execution_id)
        database = resources.database
        return lambda: send_enforced(database, enforced)

    def enforce(self, session: Session, event_ids: Sequence[int]) -> Callable[[], object]:
        """Enforce the events the sweep recorded in ``session``; returns the sending."""
        enforced = enforcement.enforce_recorded(session, self.settings, event_ids)
        database = resources.database
        return lambda: send_enforced(database, enforced)


def timer_pass(database: Database, settings: Settings, now: datetime | None = None) -> TickReport:
    """One timer pass (:func:`attune.rules.timers.tick`), then the fired executions' tasks sent:
    what beat runs on every tick (about once a second)."""
    report = timers.tick(database, settings, now)
    send_enforced(database, report.enforced)
    return report
