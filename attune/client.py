"""The caller's side: ``execute`` an action, hold its ExecutionHandle, read its record."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session

import attune.executions as executions
from attune.celery_app import embedded_worker, resources
from attune.completion import hub
from attune.errors import EnqueueError, NoWorkerAvailableError, WaitTimeoutError
from attune.executions import ExecutionRecord
from attune.models import ExecutionStatus
from attune.scheduler import Unroutable, schedule
from attune.tasks import execute_action

_T = TypeVar("_T")

# With a completion notification at hand (PostgreSQL NOTIFY, or the embedded worker in this
# process) the re-read is only a safety net; otherwise (SQLite shared between processes) poll.
_SAFETY_NET_S = (0.05, 1.0)
_POLL_S = (0.001, 0.1)


def execute(
    ref: str,
    params: Mapping[str, Any] | None = None,
    *,
    worker: str | None = None,
    timeout_s: float | None = None,
) -> ExecutionHandle:
    """Validate, record and enqueue one execution of action ``ref``.

    Raises ActionNotFoundError or ParameterError (nothing stored), NoWorkerAvailableError
    (stored ``failed``) or EnqueueError (stored ``failed``). On the embedded default the
    first call starts an in-process worker.
    """
    settings = resources.settings
    if settings.is_embedded:
        embedded_worker.start()
    database = resources.database
    routed = database.reconnecting(
        lambda: schedule(database, settings, ref, params or {}, worker=worker, timeout_s=timeout_s)
    )
    if isinstance(routed, Unroutable):
        raise NoWorkerAvailableError(routed.execution_id, routed.reason)
    try:
        execute_action.apply_async((routed.execution_id,), queue=routed.queue)
    except Exception as exc:  # kombu and redis raise several families; all mean "not sent"
        reason = f"the broker refused the message: {exc}"
        _in_session(
            lambda session: executions.transition(
                session, routed.execution_id, ExecutionStatus.FAILED, error=reason
            )
        )
        raise EnqueueError(routed.execution_id, str(exc)) from exc
    return ExecutionHandle(routed.execution_id)


def get_execution(execution_id: int) -> ExecutionRecord:
    """The stored record of an execution."""
    return _in_session(lambda session: executions.get(session, execution_id))


def _in_session(work: Callable[[Session], _T]) -> _T:
    """Run ``work`` in an autocommit session (each statement stands alone), reconnecting once."""
    database = resources.database

    def attempt() -> _T:
        with database.session_scope(autocommit=True) as session:
            return work(session)

    return database.reconnecting(attempt)


@dataclass(frozen=True)
class ExecutionHandle:
    """A reference to an execution that the caller can poll, wait on, or cancel."""

    id: int

    def status(self) -> ExecutionStatus:
        """The current status."""
        return _in_session(lambda session: executions.status_of(session, self.id))

    def wait(self, timeout_s: float | None = None) -> ExecutionRecord:
        """Block until the execution is terminal and return its record.

        Wakes on completion notifications (in-process, or a PostgreSQL NOTIFY that carries the
        record) and otherwise re-reads the row on a back-off: a safety net where notifications
        exist, polling where they do not (SQLite shared between processes). Raises
        WaitTimeoutError after ``timeout_s``.
        """
        database = resources.database
        if not database.is_sqlite:
            hub.listen_postgres(database.engine.url)
        notified = not database.is_sqlite or resources.settings.is_embedded
        pause_s, max_pause_s = _SAFETY_NET_S if notified else _POLL_S
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        hub.await_record(self.id)
        try:
            while True:
                seen = hub.version
                notified_record = hub.finished_record(self.id)
                if notified_record is not None:
                    return executions.from_notification(notified_record)
                record = get_execution(self.id)
                if record.is_terminal:
                    return record
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeoutError(self.id, timeout_s or 0.0, record.status)
                hub.wait_for_change(seen, pause_s if remaining is None else min(pause_s, remaining))
                pause_s = min(pause_s * 2, max_pause_s)
        finally:
            hub.forget(self.id)

    def cancel(self) -> ExecutionStatus:
        """Ask for cancellation: ``canceled`` at once if not started, else ``canceling``."""
        return _in_session(lambda session: executions.request_cancel(session, self.id))
