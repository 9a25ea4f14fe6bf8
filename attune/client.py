"""The caller's side: ``execute`` an action, hold its ExecutionHandle, read its record."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from attune.errors import NoWorkerAvailableError, WaitTimeoutError
from attune.executions import chains
from attune.executions import records as executions
from attune.executions.completion import hub
from attune.executions.records import ExecutionRecord
from attune.executions.routing import Unroutable
from attune.executions.scheduler import schedule
from attune.rules import emission
from attune.rules.emission import Emitted
from attune.store.db import Database
from attune.store.models import ExecutionStatus
from attune.worker.app import embedded_worker, resources
from attune.worker.dispatch import RuleFinishing, send_enforced, send_task

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
    requested_by: str | None = None,
) -> ExecutionHandle:
    """Validate, record and enqueue one execution of action ``ref``.

    Raises ActionNotFoundError or ParameterError (nothing stored), NoWorkerAvailableError
    (stored ``failed``) or EnqueueError (stored ``failed``). On the embedded default the
    first call starts an in-process worker. ``requested_by`` is recorded with the execution.
    """
    settings = resources.settings
    if settings.is_embedded:
        embedded_worker.start()
    database = resources.database
    epoch = None if database.is_sqlite else hub.listen_postgres(database.engine.url)
    routed = _reconnecting(
        lambda database: schedule(
            database,
            settings,
            ref,
            params or {},
            worker=worker,
            timeout_s=timeout_s,
            requested_by=requested_by,
            finishing=RuleFinishing(settings),
        )
    )
    if isinstance(routed, Unroutable):
        raise NoWorkerAvailableError(routed.execution_id, routed.reason)
    handle = ExecutionHandle(routed.execution_id, epoch)
    if epoch is not None:  # before the task is sent, so its notification cannot be missed
        hub.await_record(handle.id)
        weakref.finalize(handle, hub.forget, handle.id)
    if not routed.send:  # gated: waits for a slot (its gate sends it), or canceled at once
        return handle
    send_task(database, routed.execution_id, routed.queue)
    return handle


def emit(
    trigger_type: str,
    payload: Mapping[str, Any],
    *,
    dedup_key: str | None = None,
    source: str = "emit",
) -> Emitted:
    """Record an event of a known trigger type and enforce the rules it selects.

    The payload is validated against the type (TriggerError); a repeated ``dedup_key`` records
    nothing new and fires nothing (``Emitted.duplicate``). Matched rules' executions are sent
    after the event, its enforcements and the executions committed together.
    """
    settings = resources.settings
    if settings.is_embedded:
        embedded_worker.start()
    emitted = _reconnecting(
        lambda database: emission.emit(
            database, settings, trigger_type, payload, dedup_key=dedup_key, source=source
        )
    )
    send_enforced(resources.database, emitted.enforcements)
    return emitted


def get_execution(execution_id: int) -> ExecutionRecord:
    """The stored record of an execution."""
    return _reconnecting(lambda database: executions.get(database, execution_id))


def _reconnecting(work: Callable[[Database], _T]) -> _T:
    """Run ``work`` on this process's database, once more if its connection had died."""
    database = resources.database
    return database.reconnecting(lambda: work(database))


@dataclass(frozen=True)
class ExecutionHandle:
    """A reference to an execution that the caller can poll, wait on, or cancel."""

    id: int
    listened_since: int | None = field(default=None, repr=False, compare=False)
    """The completion listener's :attr:`~attune.executions.completion.CompletionHub.epoch` when
    ``execute`` awaited this execution, before sending its task (None: not known)."""

    def status(self) -> ExecutionStatus:
        """The current status."""
        return _reconnecting(lambda database: executions.status_of(database, self.id))

    def wait(self, timeout_s: float | None = None, *, follow: bool = True) -> ExecutionRecord:
        """Block until the execution is terminal and return its record.

        With a retry policy, ``follow`` waits on along the chain of attempts and returns the
        last one's record (``follow=False``: this attempt's). Wakes on completion
        notifications (in-process, or a PostgreSQL NOTIFY that carries the record) and
        otherwise re-reads the row on a back-off: a safety net where notifications exist,
        polling where they do not (SQLite shared between processes). Waiting on a handle from
        ``execute`` reads nothing until woken, as long as the listener that was up then has
        stayed connected: no notification can have been missed. Raises WaitTimeoutError after
        ``timeout_s`` (for the whole chain).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        record = _wait_for(self.id, self.listened_since, timeout_s, deadline)
        while follow and record.attempt < record.max_attempts and record.status in _RETRIABLE:
            # The successor is created with the terminal transition: it exists by now if any.
            successor = _successor(record.id)
            if successor is None:
                return record
            record = _wait_for(successor, None, timeout_s, deadline)
        return record

    def cancel(self) -> ExecutionStatus:
        """Ask for cancellation: ``canceled`` at once if not started, else ``canceling``.

        With a retry policy this cancels the chain's live attempt, and the chain stops.
        """
        finishing = RuleFinishing(resources.settings)
        return _reconnecting(lambda database: chains.cancel(database, self.id, finishing))[1]


_RETRIABLE = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT, ExecutionStatus.ABANDONED})


def _successor(execution_id: int) -> int | None:
    return _reconnecting(lambda database: chains.successor(database, execution_id))


def _status(execution_id: int) -> ExecutionStatus:
    return _reconnecting(lambda database: executions.status_of(database, execution_id))


def _wait_for(
    execution_id: int, listened_since: int | None, timeout_s: float | None, deadline: float | None
) -> ExecutionRecord:
    """Block until one execution is terminal (see :meth:`ExecutionHandle.wait`)."""
    database = resources.database
    if not database.is_sqlite:
        hub.listen_postgres(database.engine.url)
    notified = not database.is_sqlite or resources.settings.is_embedded
    pause_s, max_pause_s = _SAFETY_NET_S if notified else _POLL_S
    # Awaited by execute() before its task was sent: while the listener of then stays
    # connected, no notification of this execution can have been missed.
    awaited = not hub.await_record(execution_id) and listened_since is not None

    def unbroken() -> bool:
        return awaited and hub.epoch == listened_since

    try:
        read = not unbroken()
        while True:
            seen = hub.version
            notified_record = hub.finished_record(execution_id)
            if notified_record:
                return executions.from_notification(notified_record)
            if read or notified_record is not None:
                status = _status(execution_id)  # one column: the full record once it is final
                if status.is_terminal:
                    return get_execution(execution_id)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeoutError(execution_id, timeout_s or 0.0, _status(execution_id))
            woke = hub.wait_for_change(
                seen, pause_s if remaining is None else min(pause_s, remaining)
            )
            read = not (woke and unbroken())
            if not woke:
                pause_s = min(pause_s * 2, max_pause_s)
    finally:
        hub.forget(execution_id)
