"""The SQL data model: packs, actions, workers and executions, with their status enums."""

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
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from attune.store.sqltypes import JSONType, UTCDateTime, db_now, matches, one_of

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PACK_REF_REGEX = "^[a-z][a-z0-9_-]+$"
"""A pack ref: lowercase, starts with a letter, at least two characters."""

ACTION_REF_REGEX = "^[a-z][a-z0-9_-]+[.][a-z0-9][a-z0-9_-]*$"
"""An action ref: ``<pack>.<name>`` with exactly one dot."""

MASK = "********"
"""What a secret value is replaced with wherever it is stored or shown."""


class ExecutionStatus(enum.StrEnum):
    """Where an execution is in its life; terminal states are final."""

    REQUESTED = "requested"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    CANCELING = "canceling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELED = "canceled"
    ABANDONED = "abandoned"

    @property
    def is_terminal(self) -> bool:
        """True for the states an execution never leaves."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMEOUT,
        ExecutionStatus.CANCELED,
        ExecutionStatus.ABANDONED,
    }
)
"""The final states."""

_S = ExecutionStatus
TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    _S.SCHEDULED: frozenset({_S.REQUESTED}),
    _S.RUNNING: frozenset({_S.SCHEDULED}),
    _S.CANCELING: frozenset({_S.RUNNING}),
    _S.SUCCEEDED: frozenset({_S.RUNNING, _S.CANCELING}),
    _S.FAILED: frozenset({_S.REQUESTED, _S.SCHEDULED, _S.RUNNING, _S.CANCELING}),
    _S.TIMEOUT: frozenset({_S.RUNNING, _S.CANCELING}),
    _S.CANCELED: frozenset({_S.REQUESTED, _S.SCHEDULED, _S.CANCELING}),
    _S.ABANDONED: frozenset({_S.RUNNING, _S.CANCELING}),
}
"""For each target state, the states an execution may move to it from (the one table).

A running execution is canceled through ``canceling``: its worker kills the process, then
moves it on to ``canceled``.
"""

NOT_STARTED = frozenset({_S.REQUESTED, _S.SCHEDULED})
"""States in which no worker has picked the execution up yet."""


class WorkerStatus(enum.StrEnum):
    """Whether a worker is heartbeating (as far as the last sweep or heartbeat knows)."""

    ACTIVE = "active"
    INACTIVE = "inactive"


class RunnerType(enum.StrEnum):
    """The runtime that runs an action's entry point."""

    SHELL = "shell"
    PYTHON = "python"
    NATIVE = "native"


class ParameterDelivery(enum.StrEnum):
    """How an action's process receives its parameters."""

    STDIN = "stdin"
    FILE = "file"


class ParameterFormat(enum.StrEnum):
    """The format of the parameter document."""

    JSON = "json"
    YAML = "yaml"
    DOTENV = "dotenv"


class OutputFormat(enum.StrEnum):
    """How an action's stdout is parsed into ``result``."""

    TEXT = "text"
    JSON = "json"
    YAML = "yaml"
    JSONL = "jsonl"


WORKER_ROLES: tuple[str, ...] = ("action",)
"""Roles a worker row may have."""


def _values(enum_type: type[enum.StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum_type)


class Base(DeclarativeBase):
    """Declarative base with attune's constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONType, list[str]: JSONType, datetime: UTCDateTime}


def _created() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), server_default=db_now(), nullable=False)


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
    # idempotent/retry/concurrency as validated (attune.executions.policies); NULL: none.
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()

    pack: Mapped[Pack] = relationship(back_populates="actions")


class Worker(Base):
    """A worker process that registered itself; ``last_heartbeat`` is on the database clock."""

    __tablename__ = "worker"
    __table_args__ = (
        CheckConstraint(one_of("status", _values(WorkerStatus)), name="status"),
        CheckConstraint(one_of("worker_role", WORKER_ROLES), name="worker_role"),
        # Half-empty pages keep room for HOT heartbeat updates (migration 20261128_0003).
        {"postgresql_with": {"fillfactor": 50}},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    worker_role: Mapped[str] = mapped_column(String(32), default="action")
    runtimes: Mapped[list[str]] = mapped_column(default=list)
    queues: Mapped[list[str]] = mapped_column(default=list)
    host: Mapped[str] = mapped_column(Text, default="")
    pid: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=WorkerStatus.ACTIVE)
    capabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Deliberately unindexed: an index here would turn every heartbeat into a non-HOT update.
    last_heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


_EXECUTION_ID = BigInteger().with_variant(Integer, "sqlite")


class Execution(Base):
    """One run of an action: what was asked, where it ran, and everything it produced."""

    __tablename__ = "execution"
    __table_args__ = (
        CheckConstraint(one_of("status", _values(ExecutionStatus)), name="status"),
        Index("ix_execution_status_id", "status", "id"),
        Index("ix_execution_worker_status", "worker", "status"),
        Index("ix_execution_action_ref_id", "action_ref", "id"),
        # Policies (migration 20261201_0004): a gate's queue in start order, the chains.
        Index(
            "ix_execution_gate",
            "action_ref",
            "gate_key",
            "status",
            "eligible_at",
            "id",
            postgresql_where=text("gate_key IS NOT NULL"),
            sqlite_where=text("gate_key IS NOT NULL"),
        ),
        Index(
            "ix_execution_retry_owed",
            "status",
            "finished_at",
            postgresql_where=text("max_attempts > 1"),
            sqlite_where=text("max_attempts > 1"),
        ),
        Index("ix_execution_first_attempt_id", "first_attempt_id"),
    )

    id: Mapped[int] = mapped_column(_EXECUTION_ID, primary_key=True)
    action_ref: Mapped[str] = mapped_column(String(255))
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Fernet token of the secret parameter values; never sent to the broker or shown.
    secrets: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=ExecutionStatus.REQUESTED)
    target_worker: Mapped[str | None] = mapped_column(String(255))
    worker: Mapped[str | None] = mapped_column(String(255))
    timeout_s: Mapped[float | None] = mapped_column()
    exit_code: Mapped[int | None] = mapped_column(Integer)
    stdout: Mapped[str] = mapped_column(Text, default="")
    stderr: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[Any | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    stdout_truncated: Mapped[bool] = mapped_column(default=False)
    stderr_truncated: Mapped[bool] = mapped_column(default=False)
    requested_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    # Policies, snapshotted from the action when scheduled (migration 20261201_0004).
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    max_attempts: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    # The chain's first attempt: a trigger sets it to the row's own id when left NULL.
    first_attempt_id: Mapped[int | None] = mapped_column(
        _EXECUTION_ID, ForeignKey("execution.id", ondelete="SET NULL")
    )
    retry_of_id: Mapped[int | None] = mapped_column(
        _EXECUTION_ID, ForeignKey("execution.id", ondelete="SET NULL"), unique=True
    )
    eligible_at: Mapped[datetime] = _created()
    spawned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When a gate's releaser last sent it (a hint against sending it twice).
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    gate_key: Mapped[str | None] = mapped_column(String(64))
    gate_limit: Mapped[int | None] = mapped_column(Integer)


class ConcurrencyGate(Base):
    """One row per (action, key) of a concurrency policy: the row gated claims lock."""

    __tablename__ = "concurrency_gate"

    action_ref: Mapped[str] = mapped_column(String(255), primary_key=True)
    gate_key: Mapped[str] = mapped_column(String(64), primary_key=True)


ACTION_TABLE = cast(Table, Action.__table__)
WORKER_TABLE = cast(Table, Worker.__table__)
EXECUTION_TABLE = cast(Table, Execution.__table__)
GATE_TABLE = cast(Table, ConcurrencyGate.__table__)
"""The models' Core tables, for statements built once (:meth:`attune.store.db.Database.run`)."""
