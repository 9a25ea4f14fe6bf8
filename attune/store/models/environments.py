"""Per-pack Python environments: one row per host, pack and key, and each execution's use."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from attune.store.models.base import (
    Base,
    _created,
    _values,
)
from attune.store.sqltypes import UTCDateTime, one_of


class EnvironmentStatus(enum.StrEnum):
    """Where a pack's environment stands on one host."""

    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


class PackEnvironment(Base):
    """A pack's Python environment on one host: its key, status, and the failure backoff."""

    __tablename__ = "pack_environment"
    __table_args__ = (
        CheckConstraint(one_of("status", _values(EnvironmentStatus)), name="status"),
        Index("uq_pack_environment_host_pack_key", "host", "pack", "key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pack: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    python: Mapped[str] = mapped_column(String(64))
    installer: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    built_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class ExecutionEnvironment(Base):
    """The environment an execution ran in (or failed to get), and whether it waited."""

    __tablename__ = "execution_environment"

    execution_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("execution.id", ondelete="CASCADE"),
        primary_key=True,
    )
    host: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(64))
    waited: Mapped[bool] = mapped_column()
    built: Mapped[bool] = mapped_column()
