"""Browser sessions: an API key pasted once at ``/login`` becomes a revocable session row.

The browser holds only a random session id (in an HttpOnly cookie); the database holds its
SHA-256, the key it was opened with, and the session's CSRF token. A session ends after
:data:`IDLE_S` without use, :data:`ABSOLUTE_S` after it opened, at logout, or as soon as its
key is revoked or expires (every lookup checks the key).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from attune.access.keys import TOKEN_PREFIX, Principal, Scope, digest_of, usable
from attune.store.models import ApiKey, WebSession
from attune.store.sqltypes import db_ago, db_now

IDLE_S = 8 * 3600.0
"""A session unused for this long has ended."""
ABSOLUTE_S = 24 * 3600.0
"""A session ends this long after it opened, however much it is used."""
TOUCH_S = 60.0
"""A session's ``last_seen_at`` is written at most once in this many seconds."""


@dataclass(frozen=True)
class BrowserSession:
    """A live session: who it acts as, and the CSRF token its forms must carry."""

    principal: Principal
    csrf_token: str

    def csrf_ok(self, token: str | None) -> bool:
        """True when ``token`` is this session's CSRF token (compared in constant time)."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf_token.encode())


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(session: Session, token: str) -> str | None:
    """A new session of the usable key ``token``: its id (the cookie's value), or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id = session.scalar(select(ApiKey.id).where(ApiKey.digest == digest_of(token), *usable()))
    if key_id is None:
        return None
    session_id = secrets.token_urlsafe(32)
    session.execute(
        insert(WebSession).values(
            digest=_digest(session_id),
            api_key_id=key_id,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=db_ago(-ABSOLUTE_S),
        )
    )
    return session_id


def find_session(session: Session, session_id: str) -> BrowserSession | None:
    """The live session with this id, None when it is unknown, ended, or its key unusable."""
    row = session.execute(
        select(
            WebSession.id,
            WebSession.csrf_token,
            (WebSession.last_seen_at > db_ago(TOUCH_S)).label("recent"),
            ApiKey.name,
            ApiKey.scope,
        )
        .join(ApiKey, ApiKey.id == WebSession.api_key_id)
        .where(
            WebSession.digest == _digest(session_id),
            WebSession.expires_at > db_now(),
            WebSession.last_seen_at > db_ago(IDLE_S),
            *usable(),
        )
    ).first()
    if row is None:
        return None
    if not row.recent:
        session.execute(
            update(WebSession).where(WebSession.id == row.id).values(last_seen_at=db_now())
        )
    return BrowserSession(Principal(row.name, Scope(row.scope)), row.csrf_token)


def close_session(session: Session, session_id: str) -> None:
    """End the session with this id (logout); nothing happens for an unknown one."""
    session.execute(delete(WebSession).where(WebSession.digest == _digest(session_id)))
