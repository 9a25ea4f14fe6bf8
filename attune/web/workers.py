"""``/workers``: every worker with its heartbeat age and stale flag, and the sweep's state."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from attune.api.deps import DatabaseDep, SettingsDep
from attune.liveness.registry import list_workers
from attune.liveness.sweeper import sweeper_status
from attune.web.pages import render
from attune.web.viewer import ViewerDep

router = APIRouter()


@router.get("/workers")
def workers_page(
    request: Request, viewer: ViewerDep, database: DatabaseDep, settings: SettingsDep
) -> HTMLResponse:
    """Workers by name, ages on the database clock; an alert when the sweep is overdue."""
    with database.session_scope() as session:
        workers = list_workers(session, settings)
        sweeper = sweeper_status(session, settings)
    return render(
        request,
        viewer,
        "workers.html",
        workers=workers,
        sweeper=sweeper,
        stale_after_s=settings.staleness_threshold_s,
    )
