"""``/webhooks/{path}``: another system's POST records a ``core.webhook`` event and runs the rules
listening on that path.

No API key: the body's HMAC-SHA256 under the rule's secret (``X-Hub-Signature-256``) stands for
one; a hook whose rules name no ``secret_env`` asks for an ``operate`` key instead. The checks
run in the order of the rules design, the first failure giving its status: 404 (no enabled rule
on the path), 405, 415, 411/413 (before the body is read), 401, 400 (not JSON), 422 (a rule's
``payload_schema``). A refused request writes no row, only a log line and a count in
``attune_webhook_requests_total{code}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from attune import client, metrics
from attune.access.keys import Scope
from attune.api.auth import BEARER, require
from attune.api.problems import TITLES, field_problems, problem, responses
from attune.api.schemas import WebhookEnforcement, WebhookOut
from attune.rules import triggers, webhooks
from attune.rules.webhooks import Hook
from attune.settings import Settings
from attune.store.db import Database

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

_JSON = "application/json"
_OPENAPI = {"requestBody": {"required": True, "content": {_JSON: {"schema": {}}}}}
_SIGNATURE = "`sha256=` and the hex HMAC-SHA256 of the body under the rule's secret"


def _hook(request: Request, path: str) -> Hook | None:
    database: Database = request.app.state.database
    with database.session_scope() as session:
        return webhooks.find_hook(session, path)


def _refused(
    path: str, status: int, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    log.info("webhook %r refused: %s %s", path, status, detail)
    metrics.count_webhook(status)
    return problem(status, TITLES[status], detail, headers, **extra)


@router.post(
    "/{path:path}",
    status_code=202,
    operation_id="deliver_webhook",
    summary="Deliver a webhook",
    response_model=WebhookOut,
    responses={
        200: {"model": WebhookOut, "description": "Delivered before: the first event, no run"},
        **responses(400, 401, 403, 404, 411, 413, 415, 422, 503),
    },
    openapi_extra=_OPENAPI,
)
async def deliver(
    path: str,
    request: Request,
    response: Response,
    x_hub_signature_256: Annotated[str | None, Header(description=_SIGNATURE)] = None,
) -> WebhookOut | JSONResponse:
    """Record the delivery as a ``core.webhook`` event and enforce the path's rules: 202 with
    the event and each rule's verdict. A delivery id seen before (``X-Attune-Delivery``, or the
    rule's ``dedup_header``) answers 200 with the first event and fires nothing."""
    hook = await run_in_threadpool(_hook, request, path)
    if hook is None:
        return _refused(path, 404, f"no enabled core.webhook rule listens on {path!r}")
    refusal = _framing_refusal(request.headers, hook)
    if refusal is not None:
        return _refused(path, *refusal)
    body = await request.body()
    refusal = await _auth_refusal(request, hook, body, x_hub_signature_256)
    if refusal is not None:
        return _refused(path, *refusal)
    try:
        document = json.loads(body)
    except ValueError as error:
        return _refused(path, 400, f"the body is not JSON: {error}")
    problems = hook.payload_problems(document)
    if problems:
        detail = "the body does not match the rule's payload_schema"
        return _refused(path, 422, detail, errors=field_problems("body", problems))
    payload = hook.payload(document, request.headers)
    emitted = await run_in_threadpool(
        client.emit,
        triggers.WEBHOOK,
        payload,
        dedup_key=hook.dedup_key(payload["delivery_id"]),
        source="webhook",
    )
    if emitted.duplicate:
        response.status_code = 200
        verdicts = await run_in_threadpool(_verdicts, request, emitted.event_id)
    else:
        verdicts = [(e.rule_ref, str(e.status), e.execution_id) for e in emitted.enforcements]
    log.info("webhook %r: event %s (%s)", path, emitted.event_id, response.status_code)
    metrics.count_webhook(response.status_code)
    enforcements = [WebhookEnforcement(rule=r, status=s, execution_id=x) for r, s, x in verdicts]
    return WebhookOut(event_id=emitted.event_id, enforcements=enforcements)


@router.api_route(
    "/{path:path}", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
async def other_method(path: str, request: Request) -> JSONResponse:
    """A hook takes only POST: 404 for a path no rule listens on (first), else 405."""
    if await run_in_threadpool(_hook, request, path) is None:
        return _refused(path, 404, f"no enabled core.webhook rule listens on {path!r}")
    return _refused(path, 405, "a webhook takes POST only", {"Allow": "POST"})


def _framing_refusal(headers: Headers, hook: Hook) -> tuple[int, str] | None:
    """415 unless the body is JSON, 411 without a length, 413 past the hook's ``max_bytes``."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _JSON:
        return 415, f"a webhook body must be {_JSON}, not {content_type or 'untyped'}"
    length = headers.get("content-length")
    if length is None or not length.isdigit():
        return 411, "a webhook body must declare its Content-Length"
    if int(length) > hook.max_bytes:
        return 413, f"the body is {length} bytes; this hook takes at most {hook.max_bytes}"
    return None


async def _auth_refusal(
    request: Request, hook: Hook, body: bytes, signature: str | None
) -> tuple[int, str] | None:
    """401 unless signed by every secret of the hook (503 for a secret not set here); an
    unsigned hook asks for an ``operate`` API key as any other route does (401, 403)."""
    if not hook.signed:
        credentials = await BEARER(request)
        try:
            await require(Scope.OPERATE)(request, credentials)
        except HTTPException as error:
            return error.status_code, str(error.detail)
        return None
    settings: Settings = request.app.state.settings
    for variable in hook.secret_envs:
        secret = settings.secret_from_env(variable)
        if secret is None:
            return 503, f"this hook's secret variable {variable} is not set on the API server"
        if not webhooks.signature_ok(secret, body, signature):
            return 401, f"{webhooks.SIGNATURE_HEADER} is missing or does not sign this body"
    return None


def _verdicts(request: Request, event_id: int) -> list[tuple[str, str, int | None]]:
    database: Database = request.app.state.database
    with database.session_scope() as session:
        return webhooks.enforcements_of(session, event_id)
