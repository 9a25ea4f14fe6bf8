"""Celery tasks: thin adapters that open a session and call the real function."""

from __future__ import annotations

from attune import retention, workers
from attune.celery_app import app, resources


@app.task(name="attune.sweep_workers")
def sweep_workers() -> dict[str, int]:
    """Deactivate stale workers, abandon their executions, fail scheduled ones left too long."""
    with resources.database.session_scope() as session:
        report = workers.sweep(session, resources.settings)
    workers.announce(report)
    return report.counts()


@app.task(name="attune.purge_executions")
def purge_executions(older_than_days: float) -> int:
    """Delete terminal executions older than ``older_than_days``."""
    with resources.database.session_scope() as session:
        return retention.purge(session, older_than_days)
