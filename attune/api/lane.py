"""The executions list's fast lane: its plainest pages answered before FastAPI's machinery.

``GET /api/v1/executions`` with at most ``limit`` and ``cursor`` in its query, from a key
this process verified within the last second (:mod:`attune.api.credentials`), is what a
dashboard or a CI job polls. Solving the route's dependencies and validating its dozen
query parameters costs more than the indexed read behind it, so :class:`ListingLane`
answers such a request itself, with the route's own pieces (its cursor, its page JSON,
its response). Every other request goes on to the app, and so does every request the lane
is unsure of (an unknown key, a malformed limit, a cursor it cannot read): the route
answers those, errors included, as it always does.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from fastapi.security.utils import get_authorization_scheme_param
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from attune.access import keys
from attune.api.auth import Access
from attune.api.routes import PREFIX
from attune.api.routes.executions import MAX_PAGE, cursor_of, page_response
from attune.executions import listing

PATH = f"{PREFIX}/executions"
"""The route the lane serves."""
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")
_PARAMETERS = frozenset({"limit", "cursor"})


class ListingLane:
    """ASGI middleware answering the plain pages of :data:`PATH` (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.fingerprint = listing.ExecutionFilter().fingerprint()  # the unfiltered listing's

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request if it is a plain page of a verified reader, else pass it on."""
        page = self._plain_page(scope) if scope["type"] == "http" else None
        if page is None:
            await self.app(scope, receive, send)
            return
        limit, before_id = page
        state = scope["app"].state
        everything = listing.ExecutionFilter()
        items, last = await listing.page_json(
            state.database, state.reader, everything, limit=limit, before_id=before_id
        )
        await page_response(items, last, self.fingerprint)(scope, receive, send)

    def _plain_page(self, scope: Scope) -> tuple[int, int | None] | None:
        """The page's limit and ``before_id`` when the lane may answer, else None."""
        if scope["method"] != "GET" or scope["path"] != PATH:
            return None
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        if not query.keys() <= _PARAMETERS or _count(scope) != len(query):
            return None
        limit = query.get("limit", "50")
        if not _LIMIT.fullmatch(limit) or int(limit) > MAX_PAGE:
            return None
        access: Access = scope["app"].state.access
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
