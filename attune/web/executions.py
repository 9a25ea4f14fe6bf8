"""``/executions`` (the home page) and ``/executions/{id}``: lists, one execution, its actions."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

import anyio
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from attune.api.deps import AsyncReaderDep, DatabaseDep, SettingsDep
from attune.errors import ParameterError
from attune.executions import chains, listing, records
from attune.executions.rerun import rerun_request
from attune.store.models import ExecutionStatus
from attune.web import forms
from attune.web.actions import action_of, launched, run_page
from attune.web.pages import render
from attune.web.viewer import FormDep, ViewerDep, authorize
from attune.worker.dispatch import RuleFinishing
from attune.workflows.listing import is_workflow, task_of, tasks_of

router = APIRouter()

PAGE_SIZE = 50
"""Executions per page of the list."""
RESULT_SHOWN_CHARS = 200 * 1024
"""A result longer than this (as indented JSON) is cut on the page, with a download link."""
OUTPUT_KEPT_CHARS = 256 * 1024
"""The end of stdout/stderr a page shows (the API serves the whole)."""

_CURSORS = ("older", "newer")
ExecutionId = Annotated[int, Path(ge=1, le=2**63 - 1)]
"""An execution id in a path."""


def _moment(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(400, f"{name}: {text!r} is not a date and time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.get("/")
def home() -> RedirectResponse:
    """The executions list is the home page."""
    return RedirectResponse("/executions", 303)


@router.get("/executions")
async def executions_page(  # async: the home page's read and render need no thread
    request: Request,
    viewer: ViewerDep,
    database: DatabaseDep,
    reader: AsyncReaderDep,
    status: Annotated[list[ExecutionStatus] | None, Query()] = None,
    action: str = "",
    worker: str = "",
    after: str = "",
    before: str = "",
    older: Annotated[int | None, Query(ge=1)] = None,
    newer: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Executions newest first, filtered by the query; ``older``/``newer`` page by id."""
    where = listing.ExecutionFilter(
        statuses=tuple(status or ()),
        action_ref=action or None,
        worker=worker or None,
        requested_after=_moment(after, "after"),
        requested_before=_moment(before, "before"),
    )
    if newer is not None:
        rows = await anyio.to_thread.run_sync(
            functools.partial(listing.newer, database, where, limit=PAGE_SIZE, after_id=newer)
        )
        if len(rows) < PAGE_SIZE:  # the newest page: show it as the first page
            rows, following = await listing.page_async(database, reader, where, limit=PAGE_SIZE)
            newer = None
        else:
            following = rows[-1].id
    else:
        rows, following = await listing.page_async(
            database, reader, where, limit=PAGE_SIZE, before_id=older
        )
    first = older is None and newer is None
    kept = [pair for pair in request.query_params.multi_items() if pair[0] not in _CURSORS]
    return render(
        request,
        viewer,
        "executions.html",
        rows=rows,
        first=first,
        following=following,
        query=urlencode(kept),
        chosen={value.value for value in status or ()},
        form={"action": action, "worker": worker, "after": after, "before": before},
    )


@router.get("/executions/{execution_id}")
def execution_page(
    request: Request, execution_id: ExecutionId, viewer: ViewerDep, database: DatabaseDep
) -> HTMLResponse:
    """One execution: timeline, attempts, its workflow run and task (a child) or its task table
    (a run), masked parameters, result, error, output, buttons."""
    record = records.get(database, execution_id)
    chain = chains.attempts(database, execution_id) if record.max_attempts > 1 else []
    place = None if record.parent_id is None else task_of(database, execution_id)
    tasks = tasks_of(database, execution_id) if is_workflow(database, record.action_ref) else None
    requested_by = listing.requester(database, execution_id)
    result = None if record.result is None else json.dumps(record.result, indent=2, default=str)
    return render(
        request,
        viewer,
        "execution.html",
        record=record,
        chain=chain,
        place=place,
        tasks=tasks,
        requested_by=requested_by,
        result=None if result is None else result[:RESULT_SHOWN_CHARS],
        result_cut=result is not None and len(result) > RESULT_SHOWN_CHARS,
        stdout=record.stdout[-OUTPUT_KEPT_CHARS:],
        stderr=record.stderr[-OUTPUT_KEPT_CHARS:],
        parameters=json.dumps(record.parameters, indent=2, default=str),
    )


@router.get("/executions/{execution_id}/result.json")
def result_download(execution_id: ExecutionId, _: ViewerDep, database: DatabaseDep) -> Response:
    """The whole result as a JSON download."""
    record = records.get(database, execution_id)
    disposition = f'attachment; filename="execution-{execution_id}-result.json"'
    return JSONResponse(record.result, headers={"Content-Disposition": disposition})


@router.post("/executions/{execution_id}/cancel")
def cancel(
    execution_id: ExecutionId,
    viewer: ViewerDep,
    form: FormDep,
    database: DatabaseDep,
    settings: SettingsDep,
) -> RedirectResponse:
    """Cancel (operate scope) as ``attune executions cancel`` does: a workflow run cascades
    to its tasks at once, a retry chain stops; then back to the execution's page."""
    authorize(viewer, form)
    chains.cancel(database, execution_id, RuleFinishing(settings))
    return RedirectResponse(f"/executions/{execution_id}", 303)


@router.get("/executions/{execution_id}/rerun")
def rerun_page(
    request: Request, execution_id: ExecutionId, viewer: ViewerDep, database: DatabaseDep
) -> HTMLResponse:
    """The run form of the execution's action, prefilled with its (masked) parameters."""
    record = records.get(database, execution_id)
    action = action_of(database, record.action_ref)
    texts = forms.shown(action.parameters, record.parameters)
    return run_page(request, viewer, action, texts=texts, rerun_of=execution_id)


@router.post("/executions/{execution_id}/rerun")
def rerun(
    request: Request,
    execution_id: ExecutionId,
    viewer: ViewerDep,
    form: FormDep,
    database: DatabaseDep,
    settings: SettingsDep,
) -> Response:
    """Run it again: the original's parameters, secrets kept sealed, changed fields overriding;
    422 with the form again when a change is invalid."""
    authorize(viewer, form)
    action = action_of(database, records.get(database, execution_id).action_ref)
    overrides, problems = forms.parse(action.ref, action.parameters, form)
    if not problems:
        with database.session_scope() as session:
            ref, parameters = rerun_request(session, settings, execution_id, overrides)
        try:
            return launched(viewer, ref, parameters)
        except ParameterError as error:
            problems = forms.by_field(error.problems, action.parameters)
    texts = forms.texts_of(form, action.parameters)
    return run_page(request, viewer, action, texts=texts, problems=problems, rerun_of=execution_id)
