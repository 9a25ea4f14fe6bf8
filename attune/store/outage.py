"""Working through a database outage: an attempt repeated while the database is unreachable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def through_outage(what: str, attempt: Callable[[], _T], delays_s: Sequence[float]) -> _T:
    """Run ``attempt``; while the database is unreachable, pause ``delays_s[n]`` and run it
    again (the last error is raised once the pauses are spent). ``what`` names it in the log."""
    for delay_s in (*delays_s, None):
        try:
            return attempt()
        except (OperationalError, InterfaceError) as exc:
            if delay_s is None:
                raise
            log.warning("%s: database error, retrying in %g s: %s", what, delay_s, exc)
            time.sleep(delay_s)
    raise AssertionError("unreachable")
