"""Who is looking at a page: a signed-in browser session, or the no-auth embedded user.

A page without either redirects to ``/login``. Every form a page renders carries the viewer's
CSRF token; a post is accepted only with that token and the scope its action needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

import anyio
from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from attune.access.keys import Scope
from attune.access.sessions import BrowserSession
from attune.api.auth import Access

CSRF_FIELD = "csrf_token"
"""The hidden field every form carries the CSRF token in."""


@dataclass(frozen=True)
class Viewer:
    """The viewer's session (principal and CSRF token); ``anonymous`` in no-auth mode."""

    session: BrowserSession
    anonymous: bool

    def may(self, scope: str) -> bool:
        """True when the viewer holds ``scope`` (``read``, ``operate``, ``admin``)."""
        return self.session.principal.scope.allows(Scope(scope))


async def _viewer(request: Request) -> Viewer:  # async: a session verified lately costs no thread
    access: Access = request.app.state.access
    browser = access.remembered_session(request)
    if browser is None:
        browser = await anyio.to_thread.run_sync(access.session, request)
    if browser is not None:
        return Viewer(browser, anonymous=False)
    principal = await anyio.to_thread.run_sync(access.principal, None)
    if principal is not None:
        return Viewer(BrowserSession(principal, request.app.state.anonymous_csrf), anonymous=True)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise HTTPException(
        303, "sign in first", headers={"Location": "/login?" + urlencode({"next": target})}
    )


async def _form(request: Request) -> FormData:
    return await request.form()


ViewerDep = Annotated[Viewer, Depends(_viewer)]
"""The viewer of a page (redirects to ``/login`` when there is none)."""
FormDep = Annotated[FormData, Depends(_form)]
"""The posted form of a request."""


def authorize(viewer: Viewer, form: FormData, scope: Scope = Scope.OPERATE) -> None:
    """Refuse (403) a post without the viewer's CSRF token, or by a viewer lacking ``scope``."""
    token = form.get(CSRF_FIELD)
    if not viewer.session.csrf_ok(token if isinstance(token, str) else None):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
    principal = viewer.session.principal
    if not principal.scope.allows(scope):
        raise HTTPException(
            403, f"{principal.name!r} has scope {principal.scope}; this needs {scope}"
        )
