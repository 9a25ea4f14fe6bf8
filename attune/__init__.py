"""attune: a Celery-based action runner that records every execution in SQL.

Public names are imported lazily, so ``import attune`` stays cheap and does no I/O;
``celery -A attune`` finds the Celery app as ``attune.app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from attune.celery_app import app

__all__ = ["__version__", "app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from attune.celery_app import app

        return app
    raise AttributeError(f"module 'attune' has no attribute {name!r}")
