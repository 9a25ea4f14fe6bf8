"""``/health``: whether the database and the broker answer; needs no key, tells nothing else."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from attune.api.deps import DatabaseDep
from attune.api.schemas import Health
from attune.worker.app import app as celery_app

router = APIRouter(tags=["health"])

_BROKER_TIMEOUT_S = 2.0


def _database_ok(database: DatabaseDep) -> bool:
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # any failure means "not reachable"; the reason is not disclosed
        return False
    return True


def _broker_ok() -> bool:
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=_BROKER_TIMEOUT_S)
    except Exception:  # any failure means "not reachable"; the reason is not disclosed
        return False
    return True


@router.get("/health", operation_id="health", summary="Health of the database and broker")
def health(database: DatabaseDep) -> Health:
    """``{db, broker}``: true when each answers."""
    return Health(db=_database_ok(database), broker=_broker_ok())
