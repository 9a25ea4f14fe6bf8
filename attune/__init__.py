"""attune: a Celery-based action runner that records every execution in SQL."""

from __future__ import annotations

__version__ = "0.1.0"
