"""API keys: issued once as ``atk_<secret>``, stored only as a SHA-256, each with one scope.

Scopes are ordered: ``read`` (every GET and stream) < ``operate`` (+ execute, cancel, rerun)
< ``admin`` (+ keys and pack reload). A key's secret is 32 random bytes, so a SHA-256 of it is
as good as a slow password hash and costs microseconds per request.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from attune.errors import ApiKeyError
from attune.store.db import Database
from attune.store.models import ApiKey
from attune.store.sqltypes import db_ago, db_now

TOKEN_PREFIX = "atk_"
"""Every API key starts with this, so a leaked one is easy to recognise and scan for."""

_MAX_NAME_LENGTH = 255

USE_RECORD_S = 60.0
"""A key's ``last_used_at`` is at most this much older than its last use."""


class Scope(enum.StrEnum):
    """What a key may do; each scope includes the ones before it."""

    READ = "read"
    OPERATE = "operate"
    ADMIN = "admin"

    def allows(self, needed: Scope) -> bool:
        """True when a key of this scope may do what ``needed`` guards."""
        order = list(Scope)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class KeyView:
    """An API key as listed: never its secret."""

    name: str
    scope: Scope
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def to_json(self) -> dict[str, str | None]:
        """A JSON-ready dict, timestamps in ISO 8601."""
        moments = {
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }
        return {
            "name": self.name,
            "scope": self.scope.value,
            **{key: None if value is None else value.isoformat() for key, value in moments.items()},
        }


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a key's name and scope (or the unauthenticated embedded user)."""

    name: str
    scope: Scope


def digest_of(token: str) -> str:
    """The stored form of a key: the SHA-256 of the whole token, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(session: Session, name: str, scope: Scope, expires_days: float | None = None) -> str:
    """Store a new key named ``name`` and return its token, which is shown only this once."""
    if not name or len(name) > _MAX_NAME_LENGTH or not name.isprintable():
        raise ApiKeyError(name, f"a key name is 1 to {_MAX_NAME_LENGTH} printable characters")
    if expires_days is not None and not expires_days > 0:
        raise ApiKeyError(name, f"--expires-days must be positive, got {expires_days!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = None if expires_days is None else db_ago(-expires_days * 86400)
    try:
        with session.begin_nested():
            session.execute(
                insert(ApiKey).values(
                    name=name, scope=scope.value, digest=digest_of(token), expires_at=expires_at
                )
            )
    except IntegrityError as exc:
        raise ApiKeyError(name, "a key with this name already exists") from exc
    return token


def list_keys(session: Session) -> list[KeyView]:
    """Every key by name, revoked and expired ones included."""
    rows = session.scalars(select(ApiKey).order_by(ApiKey.name))
    return [
        KeyView(
            row.name,
            Scope(row.scope),
            row.created_at,
            row.expires_at,
            row.revoked_at,
            row.last_used_at,
        )
        for row in rows
    ]


def revoke_key(session: Session, name: str) -> None:
    """Revoke the key ``name`` at once; raises ApiKeyError when there is no such live key."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
        .values(revoked_at=db_now())
        .returning(ApiKey.id)
    )
    if result.first() is None:
        raise ApiKeyError(name, "no such key, or it is already revoked")


def usable() -> tuple[ColumnElement[bool], ...]:
    """The conditions of a usable key: neither revoked nor expired (on the database clock)."""
    return (
        ApiKey.revoked_at.is_(None),
        or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > db_now()),
    )


_recent = and_(ApiKey.last_used_at.is_not(None), ApiKey.last_used_at > db_ago(USE_RECORD_S))


def any_usable_key(session: Session) -> bool:
    """True when at least one key is neither revoked nor expired (auth is then required)."""
    return session.scalar(select(ApiKey.id).where(*usable()).limit(1)) is not None


_AUTHENTICATED: tuple[Any, ...] = (ApiKey.id, ApiKey.name, ApiKey.scope, _recent.label("recent"))
_AUTHENTICATE: Select[Any] = select(*_AUTHENTICATED).where(
    ApiKey.digest == bindparam("digest"), *usable()
)
_RECORD_USE = update(ApiKey).where(ApiKey.id == bindparam("key_id")).values(last_used_at=db_now())


def authenticate(database: Database, token: str) -> Principal | None:
    """The principal of a usable key with this token; None for any other.

    One indexed read per request, prebuilt and run at the driver's cost (no session, no pool
    checkout); ``last_used_at`` is written at most once a :data:`USE_RECORD_S` per key, so
    reading the API costs no write per request.
    """
    if not token.startswith(TOKEN_PREFIX):
        return None
    found = database.run(_AUTHENTICATE, {"digest": digest_of(token)})
    if not found:
        return None
    row = found[0]
    if not row.recent:
        database.run(_RECORD_USE, {"key_id": row.id})
    return Principal(row.name, Scope(row.scope))
