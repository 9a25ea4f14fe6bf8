"""Errors as RFC 9457 problem documents (``application/problem+json``), one handler per kind."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from attune.errors import (
    ActionDisabledError,
    ActionNotFoundError,
    AttuneError,
    EnqueueError,
    ExecutionNotFoundError,
    IdempotencyKeyError,
    InvalidTransitionError,
    NoWorkerAvailableError,
    ParameterError,
    SecretKeyError,
)

MEDIA_TYPE = "application/problem+json"
"""The media type of every error response."""

_FIELD = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


class FieldProblem(BaseModel):
    """One bad field of a request: a JSON pointer into the body and what is wrong with it."""

    pointer: str
    message: str


class Problem(BaseModel):
    """An error response (RFC 9457)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    errors: list[FieldProblem] | None = None
    execution_id: int | None = None


def problem(
    status: int,
    title: str,
    detail: str = "",
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response; ``extra`` holds ``errors`` or ``execution_id``."""
    body = Problem(title=title, status=status, detail=detail, **extra)
    sent = {**(headers or {}), **({"WWW-Authenticate": "Bearer"} if status == 401 else {})}
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=MEDIA_TYPE, headers=sent
    )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry documenting ``statuses`` as problem documents."""
    return {
        status: {"model": Problem, "content": {MEDIA_TYPE: {}}, "description": TITLES[status]}
        for status in statuses
    }


TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    411: "Length required",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    503: "Unavailable",
}
"""The title of each status attune answers with a problem document."""


def field_problems(root: str, texts: Sequence[str]) -> list[FieldProblem]:
    """Problems worded ``where: what`` (``where`` dotted) as pointers under ``/root``."""
    found = []
    for text in texts:
        match = _FIELD.match(text)
        field = match.group(1).replace(".", "/") if match else ""
        found.append(FieldProblem(pointer=f"/{root}/{field}".rstrip("/"), message=text))
    return found


def _attune_error(_: Request, exc: Exception) -> JSONResponse:
    detail = str(exc)
    if isinstance(exc, ActionDisabledError):
        return problem(409, "Action disabled", detail)
    if isinstance(exc, ActionNotFoundError | ExecutionNotFoundError):
        return problem(404, TITLES[404], detail)
    if isinstance(exc, ParameterError):
        return problem(422, TITLES[422], detail, errors=field_problems("parameters", exc.problems))
    if isinstance(exc, InvalidTransitionError | IdempotencyKeyError):
        return problem(409, TITLES[409], detail)
    if isinstance(exc, NoWorkerAvailableError | EnqueueError):
        return problem(503, TITLES[503], detail, execution_id=exc.execution_id)
    if isinstance(exc, SecretKeyError):
        return problem(503, TITLES[503], detail)
    return problem(400, TITLES[400], detail)


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldProblem(
            pointer="/" + "/".join(str(part) for part in error["loc"][1:]),
            message=str(error["msg"]),
        )
        for error in exc.errors()
    ]
    return problem(422, TITLES[422], "the request does not match its schema", errors=errors)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    title = TITLES.get(exc.status_code, "Error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # Starlette names only the first route of the path
        headers["Allow"] = ", ".join(_methods_of(request))
    return problem(exc.status_code, title, str(exc.detail), headers=headers)


def _methods_of(request: Request) -> list[str]:
    """Every method the routes of the request's path accept."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Answer attune's errors, validation errors and HTTP errors with problem documents, and
    document them so in the OpenAPI (FastAPI's own 422 says ``application/json``)."""
    app.add_exception_handler(AttuneError, _attune_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problems_documented(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _problems_documented(spec: dict[str, Any]) -> dict[str, Any]:
    """Every error response as problem+json; a 400 wherever a body may fail to parse."""
    problem_schema = {"$ref": "#/components/schemas/Problem"}
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, FieldProblem):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schema.pop("$defs", None)
        schemas[model.__name__] = schema
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            answers = operation.setdefault("responses", {})
            if "requestBody" in operation:
                answers.setdefault("400", {"description": TITLES[400]})
            for status, answer in answers.items():
                if status[0] in "45":
                    answer["content"] = {MEDIA_TYPE: {"schema": problem_schema}}
    return spec
