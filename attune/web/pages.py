"""Rendering a page: the Jinja2 templates of ``templates/`` with the viewer in every context."""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from attune.rules.triggers import TIMER_TYPES
from attune.store.models import ExecutionStatus
from attune.web.viewer import CSRF_FIELD, Viewer

HERE = Path(__file__).parent
"""The web package's directory (``templates/`` and ``static/`` live in it)."""


def _moment(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _duration(milliseconds: int | None) -> str:
    if milliseconds is None:
        return ""
    if milliseconds < 1000:
        return f"{milliseconds} ms"
    seconds = milliseconds / 1000
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _age(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:.1f} s"


def _badge(status: str) -> Markup:
    """A status badge (each status its own colour in the stylesheet)."""
    shown = escape(status)
    return Markup(f'<span class="badge s-{shown}" data-status="{shown}">{shown}</span>')


templates = Jinja2Templates(directory=HERE / "templates")
"""The page templates (autoescaped), each compiled once: they are files of the package, so
nothing checks them for changes on every render."""
templates.env.auto_reload = False
ROWS_REMEMBERED = 4096
"""How many rendered rows of the executions table are kept (a few pages of many views)."""


@functools.lru_cache(maxsize=ROWS_REMEMBERED)
def _execution_row(row: Any) -> Markup:
    """An executions table's row, rendered once per distinct row: the row's values are the
    key, so an execution that changed is another key (a fragment cache that is never stale),
    and a page polled again re-renders only the rows that changed."""
    macro = templates.get_template("_execution_row.html").module.execution_row  # type: ignore[attr-defined]
    return Markup(macro(row))


templates.env.filters.update(moment=_moment, duration=_duration, age=_age)
templates.env.globals.update(
    CSRF_FIELD=CSRF_FIELD,
    badge=_badge,
    execution_row=_execution_row,
    STATUSES=[status.value for status in ExecutionStatus],
    TIMER_TYPES=TIMER_TYPES,
)


def render(
    request: Request, viewer: Viewer | None, name: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """The page ``name`` (a template file) for ``viewer`` with ``context``."""
    return templates.TemplateResponse(
        request, name, {"viewer": viewer, **context}, status_code=status_code
    )
