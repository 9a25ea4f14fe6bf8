"""``/executions``: start, list, read, follow, cancel and re-run executions."""

from __future__ import annotations

import base64
import binascii
import contextlib
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import PlainTextResponse
from pydantic import BeforeValidator
from pydantic_core import to_json
from starlette.exceptions import HTTPException

from attune import client
from attune.access import idempotency
from attune.access.keys import Principal
from attune.api.deps import AsyncReaderDep, DatabaseDep, Operator, Reader, SettingsDep
from attune.api.problems import responses
from attune.api.routes import PREFIX
from attune.api.schemas import (
    CancelOut,
    ExecutionOut,
    ExecutionPage,
    RerunRequest,
    RunRequest,
)
from attune.errors import WaitTimeoutError
from attune.executions import chains, listing, records
from attune.executions.rerun import rerun_request
from attune.store.db import Database
from attune.store.models import ExecutionStatus
from attune.worker.dispatch import RuleFinishing

router = APIRouter(prefix="/executions", tags=["executions"], responses=responses(401, 403))

MAX_PAGE = 200
"""The most executions one page holds."""
MAX_WAIT_S = 300.0
"""The longest ``/wait`` holds a request open."""
_RUN_RESPONSES = responses(404, 409, 422, 503)


def _iso(value: object) -> object:
    if isinstance(value, str):
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return value


ExecutionId = Annotated[int, Path(ge=1, le=2**63 - 1, description="An execution's id")]
"""An execution id in a path: a positive 64-bit integer."""
Moment = Annotated[datetime | None, BeforeValidator(_iso)]
"""An ISO 8601 timestamp in a query (UTC unless it says; a number is refused, not an epoch)."""
_LINKS = {
    "get": {"operationId": "get_execution", "parameters": {"execution_id": "$response.body#/id"}},
    "cancel": {
        "operationId": "cancel_execution",
        "parameters": {"execution_id": "$response.body#/id"},
    },
    "rerun": {
        "operationId": "rerun_execution",
        "parameters": {"execution_id": "$response.body#/id"},
    },
}


def _out(database: Database, execution_id: int, status_code: int = 200) -> Response:
    """The execution's body as its routes answer it (an :class:`ExecutionOut`), encoded here:
    FastAPI would validate the model again, in a worker thread of its own for a sync route."""
    record, requested_by = listing.with_requester(database, execution_id)
    body = ExecutionOut.of(record, requested_by).model_dump_json()
    return Response(body, status_code, media_type="application/json")


def _launch(principal: Principal, request: RunRequest) -> int:
    handle = client.execute(
        request.action,
        request.parameters,
        worker=request.worker,
        timeout_s=request.timeout_s,
        requested_by=principal.name,
    )
    return handle.id


def _located(database: Database, execution_id: int, status_code: int = 201) -> Response:
    located = _out(database, execution_id, status_code)
    located.headers["Location"] = f"{PREFIX}{router.prefix}/{execution_id}"
    return located


@router.post(
    "",
    status_code=201,
    response_model=ExecutionOut,
    operation_id="start_execution",
    summary="Start an execution",
    responses={
        **_RUN_RESPONSES,
        200: {"model": ExecutionOut, "description": "Started before with this Idempotency-Key"},
        201: {"links": _LINKS},
    },
)
def start(
    body: RunRequest,
    database: DatabaseDep,
    principal: Operator,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> Response:
    """Validate, record and enqueue an execution; 201 with its record and ``Location``.

    With an ``Idempotency-Key`` the same key and body within 24 h answer 200 with the execution
    the first request started; the same key with another body is a 409.
    """
    if idempotency_key is None:
        return _located(database, _launch(principal, body))
    execution_id, started = idempotency.once(
        database,
        principal.name,
        idempotency_key,
        body.model_dump(),
        lambda: _launch(principal, body),
    )
    if execution_id is None:
        raise HTTPException(409, "a request with this Idempotency-Key is still being started")
    return _located(database, execution_id, 201 if started else 200)


def cursor_of(text: str | None, fingerprint: str) -> int | None:
    """The id a ``cursor`` continues below; 400 for one this server did not give for
    ``fingerprint`` (the listing's filters)."""
    if not text:
        return None
    try:
        last, _, seen = base64.urlsafe_b64decode(text.encode()).decode().partition(".")
        if seen != fingerprint:
            raise HTTPException(400, "this cursor belongs to a listing with other filters")
        return int(last)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise HTTPException(400, f"cursor {text!r} is not one this server gave") from None


def page_body(items: bytes, last: int | None, fingerprint: str) -> bytes:
    """The page's JSON: its items (a JSON array) and the cursor continuing after ``last``."""
    following = None
    if last is not None:
        following = base64.urlsafe_b64encode(f"{last}.{fingerprint}".encode()).decode()
    return b'{"items":' + items + b',"next_cursor":' + to_json(following) + b"}"


@router.get(
    "",
    operation_id="list_executions",
    summary="List executions",
    response_model=ExecutionPage,
    responses=responses(400, 422),
)
async def list_executions(
    database: DatabaseDep,
    reader: AsyncReaderDep,
    _: Reader,
    status: Annotated[list[ExecutionStatus] | None, Query()] = None,
    action: str | None = None,
    pack: str | None = None,
    worker: str | None = None,
    requested_by: str | None = None,
    requested_after: Moment = None,
    requested_before: Moment = None,
    parent: int | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> Response:
    """Executions newest first; ``next_cursor`` continues with older ones."""
    where = listing.ExecutionFilter(
        tuple(status or ()),
        action,
        pack,
        worker,
        requested_by,
        requested_after,
        requested_before,
        parent,
    )
    fingerprint = where.fingerprint()
    before_id = cursor_of(cursor, fingerprint)
    # The summaries as the database wrote them, not validated into models and back: the
    # page's JSON is the same (ExecutionPage documents it), at a fraction of the cost.
    items, last = await listing.page_json(database, reader, where, limit=limit, before_id=before_id)
    return Response(page_body(items, last, fingerprint), media_type="application/json")


@router.get(
    "/{execution_id}",
    response_model=ExecutionOut,
    operation_id="get_execution",
    summary="Show one execution",
    responses=responses(404),
)
def get(execution_id: ExecutionId, database: DatabaseDep, _: Reader) -> Response:
    """The execution's record, without its output bodies."""
    return _out(database, execution_id)


@router.get(
    "/{execution_id}/output/{stream}",
    operation_id="get_output",
    summary="Read stored output",
    response_class=PlainTextResponse,
    responses={**responses(404), 200: {"content": {"text/plain": {}}}},
)
def output(
    execution_id: ExecutionId,
    stream: Literal["stdout", "stderr"],
    database: DatabaseDep,
    _: Reader,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1024 * 1024)] = 65536,
) -> PlainTextResponse:
    """A slice of the stored stdout or stderr, in characters from ``offset``.

    ``X-Output-Size`` gives the whole length, ``X-Output-Complete`` whether it can still grow.
    """
    record = records.get(database, execution_id)
    text = record.stdout if stream == "stdout" else record.stderr
    headers = {
        "X-Output-Size": str(len(text)),
        "X-Output-Complete": "true" if record.is_terminal else "false",
    }
    return PlainTextResponse(text[offset : offset + limit], headers=headers)


@router.post(
    "/{execution_id}/cancel",
    status_code=202,
    operation_id="cancel_execution",
    summary="Cancel an execution",
    responses=responses(404, 409),
)
def cancel(
    execution_id: ExecutionId, database: DatabaseDep, settings: SettingsDep, _: Operator
) -> CancelOut:
    """Cancel at once if it has not started, else through ``canceling``; 409 once it is over.

    A retry chain stops; a workflow run cancels its tasks (nested runs too) at once."""
    _target, status = chains.cancel(database, execution_id, RuleFinishing(settings))
    return CancelOut(id=execution_id, status=status)


@router.post(
    "/{execution_id}/rerun",
    status_code=201,
    response_model=ExecutionOut,
    operation_id="rerun_execution",
    summary="Run an execution again",
    responses={**_RUN_RESPONSES, 201: {"links": _LINKS}},
)
def rerun(
    execution_id: ExecutionId,
    database: DatabaseDep,
    settings: SettingsDep,
    principal: Operator,
    body: RerunRequest | None = None,
) -> Response:
    """A new execution of the same action with the same parameters, ``parameters`` overriding."""
    overrides = {} if body is None else body.parameters
    with database.session_scope() as session:
        ref, parameters = rerun_request(session, settings, execution_id, overrides)
    again = RunRequest(action=ref, parameters=parameters)
    return _located(database, _launch(principal, again))


@router.get(
    "/{execution_id}/wait",
    response_model=ExecutionOut,
    operation_id="wait_execution",
    summary="Wait for an execution to end",
    responses=responses(404, 422),
)
def wait(
    execution_id: ExecutionId,
    database: DatabaseDep,
    _: Reader,
    timeout_s: Annotated[float, Query(gt=0, le=MAX_WAIT_S)] = 30.0,
) -> Response:
    """The record once terminal, or as it is after ``timeout_s`` (check its ``status``)."""
    records.status_of(database, execution_id)  # 404 for an unknown id, before waiting
    with contextlib.suppress(WaitTimeoutError):
        client.ExecutionHandle(execution_id).wait(timeout_s)
    return _out(database, execution_id)
