"""After a sweep or a shutdown committed: the log records, signals and counts of what changed,
and the task messages the policies owe."""

from __future__ import annotations

import logging

from attune import metrics
from attune.executions import dispatch
from attune.liveness.reports import Deactivation, SweepReport, when
from attune.liveness.signals import WorkerTransition, worker_deactivated, worker_reactivated
from attune.store.models import WorkerStatus

logger = logging.getLogger(__name__)


def announce(report: SweepReport) -> None:
    """After the sweep committed: one log record, one signal and the counts per deactivation;
    then the task messages the policies owe are sent."""
    dispatch.send(report.dispatches)
    for deactivation in report.deactivated:
        announce_deactivation(deactivation)
    if report.failed_scheduled:
        logger.warning(
            "failed %d scheduled execution(s) that no worker picked up in time",
            report.failed_scheduled,
            extra={"event": "scheduled_timeout", "failed": report.failed_scheduled},
        )


def announce_deactivation(deactivation: Deactivation, *, expected: bool = False) -> None:
    """Log, signal and count one worker that went inactive (call it after the commit).

    ``expected`` (a worker shutting itself down) logs at INFO unless executions were abandoned.
    """
    quiet = expected and not deactivation.abandoned
    logger.log(
        logging.INFO if quiet else logging.WARNING,
        "worker %s deactivated: %s; %d execution(s) abandoned",
        deactivation.name,
        deactivation.reason,
        deactivation.abandoned,
        extra={
            "event": "worker_deactivated",
            "worker": deactivation.name,
            "last_heartbeat": when(deactivation.last_heartbeat),
            "abandoned": deactivation.abandoned,
        },
    )
    metrics.count_deactivations()
    metrics.count_abandoned(deactivation.abandoned)
    worker_deactivated.send(
        WorkerTransition(
            worker=deactivation.name,
            status=WorkerStatus.INACTIVE.value,
            reason=deactivation.reason,
            last_heartbeat=deactivation.last_heartbeat,
            abandoned_executions=deactivation.abandoned,
        )
    )


def announce_reactivation(name: str) -> None:
    """Log, signal and count a worker that heartbeats again after it was deactivated."""
    reason = "heartbeat received while inactive"
    logger.warning(
        "worker %s reactivated: %s",
        name,
        reason,
        extra={"event": "worker_reactivated", "worker": name},
    )
    metrics.count_reactivation()
    worker_reactivated.send(
        WorkerTransition(
            worker=name, status=WorkerStatus.ACTIVE.value, reason=reason, last_heartbeat=None
        )
    )
