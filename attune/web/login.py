"""``/login`` and ``/logout``: an API key pasted once becomes an HttpOnly session cookie."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from attune.access.keys import Scope
from attune.access.sessions import ABSOLUTE_S, close_session, open_session
from attune.api.auth import SESSION_COOKIE, Access
from attune.api.deps import DatabaseDep
from attune.web.pages import render
from attune.web.viewer import FormDep, ViewerDep, authorize

router = APIRouter()


def _next(target: object) -> str:
    """Where to go after signing in: a path on this site only (never ``//host``)."""
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//"):
        return target
    return "/executions"


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    """The sign-in form: paste an API key."""
    return render(request, None, "login.html", next=_next(request.query_params.get("next")))


@router.post("/login", response_model=None)
def login(request: Request, form: FormDep, database: DatabaseDep) -> Response:
    """Open a session for the pasted key and set its cookie; 401 with the form again if the
    key is unknown, revoked or expired."""
    key = form.get("key")
    target = _next(form.get("next"))
    with database.session_scope() as session:
        session_id = open_session(session, key.strip()) if isinstance(key, str) else None
    if session_id is None:
        message = "That key is not valid: unknown, revoked or expired."
        return render(request, None, "login.html", 401, next=target, message=message)
    answer = RedirectResponse(target, 303)
    answer.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(ABSOLUTE_S),
        path="/",
        httponly=True,
        samesite="strict",
        secure=not request.app.state.loopback,
    )
    return answer


@router.post("/logout")
def logout(request: Request, viewer: ViewerDep, form: FormDep, database: DatabaseDep) -> Response:
    """End the session (its row is deleted) and drop its cookie."""
    authorize(viewer, form, Scope.READ)
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        with database.session_scope() as session:
            close_session(session, session_id)
        access: Access = request.app.state.access
        access.forget_session(session_id)
    answer = RedirectResponse("/login", 303)
    answer.delete_cookie(SESSION_COOKIE, path="/")
    return answer
