"""``/workers``: every worker with its heartbeat age and staleness, on the database clock."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.exceptions import HTTPException

from attune.api.deps import DatabaseDep, Reader, SettingsDep
from attune.api.problems import responses
from attune.api.schemas import WorkerOut
from attune.liveness.registry import WorkerView, list_workers

router = APIRouter(prefix="/workers", tags=["workers"], responses=responses(401, 403))


def _out(view: WorkerView) -> WorkerOut:
    return WorkerOut(**view.to_json())


@router.get("", operation_id="list_workers", summary="List workers")
def workers(database: DatabaseDep, settings: SettingsDep, _: Reader) -> list[WorkerOut]:
    """Every registered worker by name; ``stale``: active, but its heartbeat is too old."""
    with database.session_scope() as session:
        return [_out(view) for view in list_workers(session, settings)]


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
