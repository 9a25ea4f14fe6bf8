"""Who a request acts as, and whether it may: API keys by Bearer header, scopes per route.

Without any usable key, only an app serving the embedded default on a loopback address answers
unauthenticated requests (as ``operate``, never ``admin``); creating the first key switches
authentication on. Keys travel only in ``Authorization: Bearer``, never in a query string.
A browser signed in at ``/login`` presents its session cookie instead (so ``EventSource``
works); a request that changes something with that cookie must also carry the session's CSRF
token in ``X-CSRF-Token``, as the web UI's forms carry it in a field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

import anyio
from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from attune.access.keys import Principal, Scope, any_usable_key, authenticate
from attune.access.sessions import BrowserSession, find_session
from attune.api.credentials import CredentialCache
from attune.store.db import Database

SESSION_COOKIE = "attune_session"
"""The cookie holding a browser's session id."""
CSRF_HEADER = "X-CSRF-Token"
"""The header a script sends the session's CSRF token in."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that never change anything (no CSRF token needed)."""

ANONYMOUS = Principal("anonymous", Scope.OPERATE)
"""The principal of an unauthenticated request where that is allowed."""

BEARER = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer atk_…`")
"""The ``Authorization: Bearer`` credentials of a request (None without them)."""


@dataclass(frozen=True)
class Access:
    """How this app authenticates: its database, whether it may answer without a key, and the
    keys and sessions it verified within the last second (see :mod:`attune.api.credentials`)."""

    database: Database
    open_without_keys: bool
    keys: CredentialCache[Principal] = field(default_factory=CredentialCache)
    sessions: CredentialCache[BrowserSession] = field(default_factory=CredentialCache)

    def principal(self, token: str | None) -> Principal | None:
        """The principal of a request carrying ``token`` (or none); None when unauthenticated."""
        if token is not None:
            return self.keys.verified(token, lambda: authenticate(self.database, token))
        if self.open_without_keys:
            with self.database.session_scope() as session:
                if not any_usable_key(session):
                    return ANONYMOUS
        return None

    def remembered(self, token: str | None) -> Principal | None:
        """The principal of ``token`` if this process verified it within the bound, without
        asking the database (None otherwise: then :meth:`principal` asks)."""
        return None if token is None else self.keys.remembered(token)

    def remembered_session(self, request: Request) -> BrowserSession | None:
        """The session whose cookie ``request`` carries if this process verified it within the
        bound, without asking the database (None otherwise: then :meth:`session` asks)."""
        session_id = request.cookies.get(SESSION_COOKIE)
        return self.sessions.remembered(session_id) if session_id else None

    def session(self, request: Request) -> BrowserSession | None:
        """The live browser session whose cookie ``request`` carries, if any."""
        session_id = request.cookies.get(SESSION_COOKIE)
        if not session_id:
            return None
        return self.sessions.verified(session_id, lambda: self._find_session(session_id))

    def _find_session(self, session_id: str) -> BrowserSession | None:
        with self.database.session_scope() as session:
            return find_session(session, session_id)

    def forget_session(self, session_id: str) -> None:
        """Stop trusting a session this process ended (logout) at once, not after the bound."""
        self.sessions.forget(session_id)


def require(
    scope: Scope,
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Principal]]:
    """A route dependency: the request's principal, which must hold ``scope`` (401, 403)."""

    async def dependency(  # async: a credential verified lately costs no thread
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> Principal:
        access: Access = request.app.state.access
        browser = None
        if credentials is None:
            browser = access.remembered_session(request) or await anyio.to_thread.run_sync(
                access.session, request
            )
        if browser is not None:
            if request.method not in SAFE_METHODS and not browser.csrf_ok(
                request.headers.get(CSRF_HEADER)
            ):
                raise HTTPException(403, f"a session request needs its {CSRF_HEADER} header")
            principal: Principal | None = browser.principal
        else:
            token = None if credentials is None else credentials.credentials
            principal = access.remembered(token) or await anyio.to_thread.run_sync(
                access.principal, token
            )
        if principal is None:
            raise HTTPException(401, "a valid API key is required: Authorization: Bearer atk_…")
        if not principal.scope.allows(scope):
            raise HTTPException(
                403, f"key {principal.name!r} has scope {principal.scope}; this needs {scope}"
            )
        return principal

    return dependency
