"""Celery tasks: thin adapters that open a session and call the real function."""

from __future__ import annotations

from attune.celery_app import app, resources
from attune.runner import CancelWatcher, run_execution

_watcher = CancelWatcher(lambda: resources.database)


@app.task(name="attune.execute_action")
def execute_action(execution_id: int) -> str | None:
    """Run one scheduled execution on this worker (at most once, whatever is redelivered)."""
    status = run_execution(
        resources.database, resources.settings, resources.worker_name, execution_id, _watcher
    )
    return None if status is None else status.value
