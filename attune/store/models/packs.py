"""Packs and their actions: what a pack loaded, keyed by ``ref``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from attune.store.models.base import (
    ACTION_REF_REGEX,
    PACK_REF_REGEX,
    Base,
    OutputFormat,
    ParameterDelivery,
    ParameterFormat,
    RunnerType,
    _created,
    _values,
)
from attune.store.sqltypes import JSONType, matches, one_of


class Pack(Base):
    """A pack of actions, keyed by ``ref``."""

    __tablename__ = "pack"
    __table_args__ = (
        CheckConstraint(
            matches("ref", PACK_REF_REGEX, ((False, "[a-z]*"), (True, "*[^a-z0-9_-]*")), 2),
            name="ref_format",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(255), unique=True)
    label: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[str] = mapped_column(String(64))
    author: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(default=list)
    # Per-pack Python environment: sha256 of requirements.txt (+ included files), python: range.
    requirements_digest: Mapped[str | None] = mapped_column(String(64))
    python: Mapped[str | None] = mapped_column(String(255))
    # Content hash of the pack.yaml loaded; cleared by any edit but the loader's (migration
    # 20261201_0003), so a reload whose files hash the same may skip parsing them.
    source_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()

    actions: Mapped[list[Action]] = relationship(
        back_populates="pack", cascade="all, delete-orphan", passive_deletes=True
    )


class Action(Base):
    """An action of a pack, keyed by ``ref`` = ``<pack>.<name>``."""

    __tablename__ = "action"
    __table_args__ = (
        CheckConstraint(
            matches(
                "ref",
                ACTION_REF_REGEX,
                (
                    (False, "[a-z][a-z0-9_-]*.[a-z0-9]*"),
                    (True, "*[^a-z0-9_.-]*"),
                    (True, "*.*.*"),
                    (True, "?.*"),
                ),
                4,
            ),
            name="ref_format",
        ),
        CheckConstraint(one_of("runner_type", _values(RunnerType)), name="runner_type"),
        CheckConstraint(
            one_of("parameter_delivery", _values(ParameterDelivery)), name="parameter_delivery"
        ),
        CheckConstraint(
            one_of("parameter_format", _values(ParameterFormat)), name="parameter_format"
        ),
        CheckConstraint(one_of("output_format", _values(OutputFormat)), name="output_format"),
        CheckConstraint("timeout_s IS NULL OR timeout_s > 0", name="timeout_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pack_id: Mapped[int] = mapped_column(ForeignKey("pack.id", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(255), unique=True)
    label: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(default=True)
    tags: Mapped[list[str]] = mapped_column(default=list)
    runner_type: Mapped[str] = mapped_column(String(16))
    entry_point: Mapped[str] = mapped_column(Text)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    parameter_delivery: Mapped[str] = mapped_column(String(16), default=ParameterDelivery.STDIN)
    parameter_format: Mapped[str] = mapped_column(String(16), default=ParameterFormat.JSON)
    output_format: Mapped[str] = mapped_column(String(16), default=OutputFormat.TEXT)
    timeout_s: Mapped[int | None] = mapped_column(Integer)
    # Content hash of the action file loaded, cleared as the pack's is.
    source_hash: Mapped[str | None] = mapped_column(String(64))
    # idempotent/retry/concurrency as validated (attune.executions.policies); NULL: none.
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # A workflow action's file as validated (attune.workflows.reader); NULL for the others.
    workflow: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()

    pack: Mapped[Pack] = relationship(back_populates="actions")


PACK_TABLE = cast(Table, Pack.__table__)


ACTION_TABLE = cast(Table, Action.__table__)
"""The action model's Core table, for statements built once
(:meth:`attune.store.db.Database.run`)."""
