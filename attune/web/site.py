"""Mounting the web UI on the API's app: its routes at ``/``, its assets at ``/static``.

Errors raised on a page (outside ``/api/``) are shown as an HTML page with the same status
and message as the problem document the API would send; a 303 is a plain redirect.
"""

from __future__ import annotations

import json
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from attune.api.routes import PREFIX
from attune.errors import AttuneError
from attune.web import actions, executions, login, rules, workers
from attune.web.pages import HERE, render


def install(app: FastAPI) -> None:
    """Add the pages and assets to ``app`` (after its API routes), and HTML error pages."""
    app.state.anonymous_csrf = secrets.token_urlsafe(32)
    for module in (login, executions, workers, actions, rules):
        app.include_router(module.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for kind in (HTTPException, AttuneError, RequestValidationError):
        _as_html(app, kind)


def _as_html(app: FastAPI, kind: type[Exception]) -> None:
    """Wrap the handler of ``kind`` so a page gets its answer as HTML."""
    problem_handler = app.exception_handlers[kind]

    async def handler(request: Request, exc: Exception) -> Response:
        answer = problem_handler(request, exc)
        assert isinstance(answer, Response)
        if request.url.path.startswith(f"{PREFIX}/"):
            return answer
        if answer.status_code == 303:
            return RedirectResponse(answer.headers["location"], 303)
        problem = json.loads(bytes(answer.body))
        return render(
            request,
            None,
            "error.html",
            status_code=answer.status_code,
            title=problem["title"],
            detail=problem.get("detail", ""),
        )

    app.add_exception_handler(kind, handler)
