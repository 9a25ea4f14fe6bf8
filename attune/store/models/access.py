"""API keys, browser sessions and idempotency keys of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from attune.store.models.base import (
    API_SCOPES,
    Base,
    _created,
)
from attune.store.sqltypes import UTCDateTime, one_of


class ApiKey(Base):
    """An API key of the HTTP API: only a SHA-256 of its secret is stored."""

    __tablename__ = "api_key"
    __table_args__ = (CheckConstraint(one_of("scope", API_SCOPES), name="scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebSession(Base):
    """A browser session of the web UI, opened with an API key; revoking the key ends it.

    Only a SHA-256 of the session id (the cookie's value) is stored; the CSRF token is the
    synchronizer token every form of the session carries.
    """

    __tablename__ = "web_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("api_key.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()
    last_seen_at: Mapped[datetime] = _created()
    # The absolute end; the idle end is last_seen_at plus the idle limit.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class IdempotencyKey(Base):
    """An ``Idempotency-Key`` a principal sent with ``POST /executions``, and what it started."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("principal", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    # A digest of the request body: the same key with another body is refused.
    request_digest: Mapped[str] = mapped_column(String(64))
    execution_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("execution.id", ondelete="CASCADE"),
    )
    created_at: Mapped[datetime] = _created()


API_KEY_TABLE = cast(Table, ApiKey.__table__)


IDEMPOTENCY_TABLE = cast(Table, IdempotencyKey.__table__)
"""These models' Core tables, for statements built once (:meth:`attune.store.db.Database.run`)."""
