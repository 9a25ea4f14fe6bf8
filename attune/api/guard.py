"""Checks every request passes before routing: Host allowlist, Origin, body size and type.

On a loopback address only loopback Host names are served (against DNS rebinding); a request
that changes something is refused when a browser says it comes from another origin (CSRF);
bodies must declare their length, stay within :data:`MAX_BODY_BYTES` and be JSON under
``/api/`` (the web UI's pages, elsewhere, take HTML form posts too), except a webhook's, which
its route checks against its rule.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from attune.api.auth import SAFE_METHODS
from attune.api.problems import TITLES, problem
from attune.api.routes import PREFIX

MAX_BODY_BYTES = 1024 * 1024
"""The largest request body accepted (1 MiB)."""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Host names a loopback-bound server answers to."""

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
"""Body types a web page (outside ``/api/``) also accepts: what HTML forms post."""
_JSON = frozenset({"application/json"})
WEBHOOKS = f"{PREFIX}/webhooks/"
"""Where hooks live: their size limit is their rule's ``max_bytes``, checked by the route."""


class Guard:
    """ASGI middleware applying the checks above; ``loopback`` turns the Host allowlist on."""

    def __init__(self, app: ASGIApp, *, loopback: bool) -> None:
        self.app = app
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request with a problem document, or pass it on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = refusal(scope, loopback=self.loopback)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, detail = refused
        await problem(status, TITLES[status], detail)(scope, receive, send)


def refusal(scope: Scope, *, loopback: bool) -> tuple[int, str] | None:
    """The status and detail :class:`Guard` refuses the HTTP request of ``scope`` with, or
    None when it passes (``loopback``: the Host allowlist is on)."""
    method, path, headers = scope["method"], scope["path"], Headers(scope=scope)
    host = headers.get("host", "")
    if loopback and _hostname(host) not in LOOPBACK_HOSTS:
        return 400, f"this server answers only to loopback host names, not {host!r}"
    if method in SAFE_METHODS:
        return None
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != host:
        return 403, f"cross-origin request from {origin!r} refused"
    if headers.get("sec-fetch-site") == "cross-site":
        return 403, "cross-site request refused"
    if path.startswith(WEBHOOKS):
        return None  # a hook checks its body itself, in the order webhooks answer in
    length = headers.get("content-length")
    if length is None:
        if "transfer-encoding" in headers:
            return 411, "a request body must declare its Content-Length"
        return None
    if not length.isdigit():
        return 400, f"Content-Length {length!r} is not a number"
    if int(length) > MAX_BODY_BYTES:
        return 413, f"the body is {length} bytes; at most {MAX_BODY_BYTES} are accepted"
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    accepted = _JSON if path.startswith(f"{PREFIX}/") else _JSON | FORM_TYPES
    if int(length) and content_type not in accepted:
        return 415, f"a request body here must be one of: {', '.join(sorted(accepted))}"
    return None


def _hostname(host: str) -> str:
    """The name part of a Host header (``[::1]:8000`` → ``::1``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host
