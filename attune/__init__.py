"""attune: a Celery-based action runner that records every execution in SQL.

Public names are imported lazily, so ``import attune`` stays cheap and does no I/O;
``celery -A attune`` finds the Celery app as ``attune.app``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from attune.client import ExecutionHandle, emit, execute, get_execution
    from attune.executions.records import ExecutionRecord
    from attune.worker.app import app

_LAZY = {
    "app": "attune.worker.app",
    "execute": "attune.client",
    "emit": "attune.client",
    "get_execution": "attune.client",
    "ExecutionHandle": "attune.client",
    "ExecutionRecord": "attune.executions.records",
}

__all__ = [
    "ExecutionHandle",
    "ExecutionRecord",
    "__version__",
    "app",
    "emit",
    "execute",
    "get_execution",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'attune' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
