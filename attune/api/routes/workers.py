"""``/workers``: every worker with its heartbeat age and staleness, on the database clock."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.exceptions import HTTPException

from attune.api.deps import DatabaseDep, Reader, SettingsDep
from attune.api.problems import responses
from attune.api.schemas import SweeperOut, WorkerOut, WorkersOut
from attune.liveness.registry import WorkerView, list_workers
from attune.liveness.sweeper import sweeper_status

router = APIRouter(prefix="/workers", tags=["workers"], responses=responses(401, 403))


def _out(view: WorkerView) -> WorkerOut:
    return WorkerOut(**view.to_json())


@router.get("", operation_id="list_workers", summary="List workers")
def workers(database: DatabaseDep, settings: SettingsDep, _: Reader) -> WorkersOut:
    """Every registered worker by name (``stale``: active, but its heartbeat is too old), and
    when the sweep last ran."""
    with database.session_scope() as session:
        views = list_workers(session, settings)
        sweeper = sweeper_status(session, settings)
    return WorkersOut(items=[_out(view) for view in views], sweeper=SweeperOut(**sweeper.to_json()))


@router.get(
    "/{name}", operation_id="get_worker", summary="Show one worker", responses=responses(404)
)
def worker(name: str, database: DatabaseDep, settings: SettingsDep, _: Reader) -> WorkerOut:
    """The worker ``name``."""
    with database.session_scope() as session:
        for view in list_workers(session, settings):
            if view.name == name:
                return _out(view)
    raise HTTPException(404, f"worker {name!r} is not registered")
