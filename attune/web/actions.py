"""``/actions`` and ``/actions/{ref}``: packs, actions, and each action's generated run form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from attune import client
from attune.api.deps import DatabaseDep
from attune.errors import EnqueueError, NoWorkerAvailableError, ParameterError
from attune.executions import listing
from attune.packs.upsert import find_action, find_actions
from attune.store.db import Database
from attune.store.models import Action, Pack
from attune.web import forms
from attune.web.pages import render
from attune.web.viewer import FormDep, Viewer, ViewerDep, authorize

router = APIRouter()

RECENT = 10
"""How many of an action's latest executions its page lists."""


@router.get("/actions")
def actions_page(request: Request, viewer: ViewerDep, database: DatabaseDep) -> HTMLResponse:
    """Every loaded pack and action."""
    with database.session_scope() as session:
        packs = list(session.scalars(select(Pack).order_by(Pack.ref)))
        return render(request, viewer, "actions.html", packs=packs, actions=find_actions(session))


def run_page(
    request: Request,
    viewer: Viewer,
    action: Action,
    *,
    texts: Mapping[str, str],
    problems: Mapping[str, list[str]] | None = None,
    rerun_of: int | None = None,
) -> HTMLResponse:
    """The page of ``action`` with its run form (422 when ``problems`` are given); a re-run's
    form posts to the original execution's ``rerun``."""
    database: Database = request.app.state.database
    where = listing.ExecutionFilter(action_ref=action.ref)
    recent, _ = listing.page(database, where, limit=RECENT)
    return render(
        request,
        viewer,
        "action.html",
        status_code=422 if problems else 200,
        action=action,
        fields=forms.fields(action.parameters),
        texts=texts,
        problems=problems or {},
        form_level=(problems or {}).get(forms.FORM_LEVEL, []),
        rerun_of=rerun_of,
        recent=recent,
        declared={
            name: {key: value for key, value in spec.items() if key != "default" or not secret}
            for name, spec in action.parameters.items()
            for secret in (spec.get("secret") is True,)
        },
    )


def launched(viewer: Viewer, ref: str, parameters: dict[str, Any]) -> RedirectResponse:
    """Start ``ref`` for the viewer and go to the new execution's page (also when no worker
    could take it: the page then shows why it failed). Raises ParameterError, storing nothing."""
    try:
        handle = client.execute(ref, parameters, requested_by=viewer.session.principal.name)
    except (NoWorkerAvailableError, EnqueueError) as error:
        return RedirectResponse(f"/executions/{error.execution_id}", 303)
    return RedirectResponse(f"/executions/{handle.id}", 303)


def action_of(database: Database, ref: str) -> Action:
    """The loaded action ``ref`` (its columns read; no session held while it is used)."""
    with database.session_scope() as session:
        return find_action(session, ref)


@router.get("/actions/{ref}")
def action_page(
    request: Request, ref: str, viewer: ViewerDep, database: DatabaseDep
) -> HTMLResponse:
    """The action, its parameters, its run form (defaults filled in) and recent executions."""
    action = action_of(database, ref)
    return run_page(request, viewer, action, texts=forms.shown(action.parameters, {}))


@router.post("/actions/{ref}")
def run(
    request: Request, ref: str, viewer: ViewerDep, form: FormDep, database: DatabaseDep
) -> Response:
    """Run the action with the posted form: 303 to the new execution, or 422 with the form
    again and a message per field (nothing is created)."""
    authorize(viewer, form)
    action = action_of(database, ref)
    values, problems = forms.parse(ref, action.parameters, form)
    if not problems:
        try:
            return launched(viewer, ref, values)
        except ParameterError as error:
            problems = forms.by_field(error.problems, action.parameters)
    texts = forms.texts_of(form, action.parameters)
    return run_page(request, viewer, action, texts=texts, problems=problems)
