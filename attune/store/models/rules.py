"""Rules, their timer cursors, trigger events and enforcements."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from attune.store.models.base import (
    Base,
    _created,
    _values,
)
from attune.store.sqltypes import JSONType, UTCDateTime, one_of


class EventStatus(enum.StrEnum):
    """What became of a trigger event."""

    FIRED = "fired"
    MISSED = "missed"
    DUPLICATE = "duplicate"


class EnforcementStatus(enum.StrEnum):
    """Whether a rule ran its action for an event, and if not, why."""

    SCHEDULED = "scheduled"
    NO_MATCH = "no_match"
    RENDER_FAILED = "render_failed"
    PARAMS_INVALID = "params_invalid"
    ACTION_MISSING = "action_missing"
    CHAIN_LIMIT = "chain_limit"


class Rule(Base):
    """A pack's rule: when its trigger fires and its criteria hold, run its action."""

    __tablename__ = "rule"
    __table_args__ = (Index("ix_rule_trigger_type_enabled", "trigger_type", "enabled"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pack_id: Mapped[int] = mapped_column(ForeignKey("pack.id", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(default=True)
    trigger_type: Mapped[str] = mapped_column(String(255))
    trigger_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params_hash: Mapped[str] = mapped_column(String(64))
    misfire_policy: Mapped[str] = mapped_column(String(16), default="once")
    misfire_grace_s: Mapped[float] = mapped_column(default=60.0)
    criteria: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    action_ref: Mapped[str] = mapped_column(String(255))
    action_parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    file: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class RuleTimer(Base):
    """A timer rule's cursor: the last tick handled and the next one due (moved by CAS)."""

    __tablename__ = "rule_timer"

    rule_id: Mapped[int] = mapped_column(
        ForeignKey("rule.id", ondelete="CASCADE"), primary_key=True
    )
    params_hash: Mapped[str] = mapped_column(String(64))
    last_fire_time: Mapped[datetime] = mapped_column(UTCDateTime())
    next_fire_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class TriggerEvent(Base):
    """Something that happened: a timer tick, a finished execution, an emitted payload."""

    __tablename__ = "trigger_event"
    __table_args__ = (
        CheckConstraint(one_of("status", _values(EventStatus)), name="status"),
        UniqueConstraint("rule_id", "fire_time"),
        UniqueConstraint("type", "dedup_key"),
        Index("ix_trigger_event_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    type: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(Text, default="")
    rule_id: Mapped[int | None] = mapped_column(Integer)
    fire_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dedup_key: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.FIRED)
    received_at: Mapped[datetime] = _created()


class Enforcement(Base):
    """One rule's verdict on one event: scheduled (with its execution) or why not."""

    __tablename__ = "enforcement"
    __table_args__ = (
        CheckConstraint(one_of("status", _values(EnforcementStatus)), name="status"),
        UniqueConstraint("event_id", "rule_id"),
        Index("ix_enforcement_rule_ref_id", "rule_ref", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("trigger_event.id", ondelete="CASCADE"),
    )
    rule_id: Mapped[int | None] = mapped_column(Integer)
    rule_ref: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    criteria_trace: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    execution_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    created_at: Mapped[datetime] = _created()


RULE_TABLE = cast(Table, Rule.__table__)


RULE_TIMER_TABLE = cast(Table, RuleTimer.__table__)


TRIGGER_EVENT_TABLE = cast(Table, TriggerEvent.__table__)


ENFORCEMENT_TABLE = cast(Table, Enforcement.__table__)
"""These models' Core tables, for statements built once (:meth:`attune.store.db.Database.run`)."""
