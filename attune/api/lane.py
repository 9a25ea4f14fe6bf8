"""The executions list's fast lane: its plainest pages answered before FastAPI's machinery.

``GET /api/v1/executions`` with at most ``limit`` and ``cursor`` in its query, from a key
this process verified within the last second (:mod:`attune.api.credentials`), is what a
dashboard or a CI job polls. Solving the route's dependencies and validating its dozen
query parameters costs more than the indexed read behind it, so :class:`ListingLane`
answers such a request itself, with the route's own pieces (its cursor, its page JSON,
its response). Every other request goes on to the app, and so does every request the lane
is unsure of (an unknown key, a malformed limit, a cursor it cannot read): the route
answers those, errors included, as it always does.

The lane stands outermost, ahead of the app's middleware (see :class:`attune.api.app.Api`),
and applies their checks that concern such a request itself: :class:`~attune.api.guard.Guard`'s
(a request it would refuse goes on to be refused), and OpenTelemetry's (while FastAPI's
native telemetry is on, every request goes through the app to be observed). A page whose read
fails goes on too, so that the route reads again and answers as it does: the same 500 and log.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.types import Scope, Send

from attune.access import keys
from attune.api.auth import Access
from attune.api.guard import refusal
from attune.api.routes import PREFIX
from attune.api.routes.executions import MAX_PAGE, cursor_of, page_body
from attune.executions import listing

PATH = f"{PREFIX}/executions"
"""The route the lane serves."""
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")
_PARAMETERS = frozenset({"limit", "cursor"})
_EVERYTHING = listing.ExecutionFilter()
_JSON_TYPE = (b"content-type", b"application/json")


class ListingLane:
    """Answers the plain pages of :data:`PATH` for the app whose ``state`` it is given (see
    the module); ``loopback``: the Guard's Host allowlist is on."""

    def __init__(self, state: State, *, loopback: bool) -> None:
        self.state = state
        self.loopback = loopback
        self.fingerprint = listing.ExecutionFilter().fingerprint()  # the unfiltered listing's

    async def answered(self, scope: Scope, send: Send) -> bool:
        """Answer the HTTP request of ``scope`` if it is a plain page of a verified reader;
        False when the app must answer it."""
        page = self._plain_page(scope)
        if page is None:
            return False
        limit, before_id = page
        state = self.state
        try:
            items, last = await listing.page_json(
                state.database, state.reader, _EVERYTHING, limit=limit, before_id=before_id
            )
        except Exception:  # the route meets it again and answers it (see the module)
            return False
        body = page_body(items, last, self.fingerprint)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                # as the route's Response writes them, in its order
                "headers": [(b"content-length", b"%d" % len(body)), _JSON_TYPE],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return True

    def _plain_page(self, scope: Scope) -> tuple[int, int | None] | None:
        """The page's limit and ``before_id`` when the lane may answer, else None."""
        if scope["method"] != "GET" or scope["path"] != PATH:
            return None
        if refusal(scope, loopback=self.loopback) is not None:
            return None
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        if not query.keys() <= _PARAMETERS or _count(scope) != len(query):
            return None
        limit = query.get("limit", "50")
        if not _LIMIT.fullmatch(limit) or int(limit) > MAX_PAGE:
            return None
        access: Access = self.state.access
        principal = access.remembered(_bearer(scope))
        if principal is None or not principal.scope.allows(keys.Scope.READ):
            return None
        try:
            return int(limit), cursor_of(query.get("cursor"), self.fingerprint)
        except HTTPException:
            return None


def _count(scope: Scope) -> int:
    """How many parameters the query string holds (a repeated one counts each time)."""
    raw: bytes = scope["query_string"]
    return raw.count(b"&") + 1 if raw else 0


def _bearer(scope: Scope) -> str | None:
    """The credentials of the ``Authorization: Bearer`` header (the first, as FastAPI's
    HTTPBearer reads it); None without one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, credentials = get_authorization_scheme_param(value.decode("latin-1"))
            return credentials if scheme.lower() == "bearer" and credentials else None
    return None
