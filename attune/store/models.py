"""The SQL data model: packs, actions, workers, executions, keys, web sessions, periodic runs."""

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
    UniqueConstraint,
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

API_SCOPES = ("read", "operate", "admin")
"""An API key's scopes, each including the ones before it."""

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

HELD_STATUSES = tuple(sorted(TRANSITIONS[_S.ABANDONED]))
"""The states of the executions a worker holds: what its stop abandons, what a listing counts."""

LIVE_STATUSES = tuple(sorted(set(ExecutionStatus) - TERMINAL_STATUSES))
"""The states of the executions not finished yet."""

_IN_HELD = one_of("status", HELD_STATUSES)
_IN_LIVE = one_of("status", LIVE_STATUSES)


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
        # Only live rows (migration 20261201_0006): the sweep's and the scheduled-timeout
        # check's indexes stay as small as the work in flight, and finishing an execution
        # writes no entry to them.
        Index(
            "ix_execution_held_worker",
            "worker",
            postgresql_where=text(_IN_HELD),
            sqlite_where=text(_IN_HELD),
        ),
        Index(
            "ix_execution_live_status_id",
            "status",
            "id",
            postgresql_where=text(_IN_LIVE),
            sqlite_where=text(_IN_LIVE),
        ),
        Index("ix_execution_action_ref_id", "action_ref", "id"),
        # Only the few rows whose action group may still be alive (migration 20261201_0002).
        Index(
            "ix_execution_worker_pgid",
            "worker",
            postgresql_where=text("pgid IS NOT NULL"),
            sqlite_where=text("pgid IS NOT NULL"),
        ),
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
    # Who asked: the API key's name for a request over HTTP, else None.
    requested_by: Mapped[str | None] = mapped_column(String(255))
    # Rules (migration 20261201_0007): the enforcement that started it, and how many
    # execution-finished firings led to it (0 for a caller's execution).
    enforcement_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    trigger_depth: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The action's process group while it may be alive: its id, its leader's start time (clock
    # ticks since boot) and the host it runs on ("<host name> <boot id>"); cleared with the result.
    pgid: Mapped[int | None] = mapped_column(Integer)
    pgid_start_ticks: Mapped[int | None] = mapped_column(BigInteger)
    pgid_host: Mapped[str | None] = mapped_column(Text)
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


class PeriodicRun(Base):
    """When a watched periodic pass (the sweep, :data:`SWEEP_RUN`) last ran, on the database clock.

    One row per pass, written by whoever ran it (beat, the embedded loop, the CLI, the task).
    """

    __tablename__ = "periodic_run"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


SWEEP_RUN = "sweep"
"""The :class:`PeriodicRun` name of the stale-worker sweep."""


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


# --- rules, triggers and timers (attune/rules/, migration 20261201_0007) ---------------------


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


class ConcurrencyGate(Base):
    """One row per (action, key) of a concurrency policy: the row gated claims lock."""

    __tablename__ = "concurrency_gate"

    action_ref: Mapped[str] = mapped_column(String(255), primary_key=True)
    gate_key: Mapped[str] = mapped_column(String(64), primary_key=True)


ACTION_TABLE = cast(Table, Action.__table__)
WORKER_TABLE = cast(Table, Worker.__table__)
EXECUTION_TABLE = cast(Table, Execution.__table__)
PERIODIC_RUN_TABLE = cast(Table, PeriodicRun.__table__)
API_KEY_TABLE = cast(Table, ApiKey.__table__)
IDEMPOTENCY_TABLE = cast(Table, IdempotencyKey.__table__)
RULE_TABLE = cast(Table, Rule.__table__)
RULE_TIMER_TABLE = cast(Table, RuleTimer.__table__)
TRIGGER_EVENT_TABLE = cast(Table, TriggerEvent.__table__)
ENFORCEMENT_TABLE = cast(Table, Enforcement.__table__)
GATE_TABLE = cast(Table, ConcurrencyGate.__table__)
"""The models' Core tables, for statements built once (:meth:`attune.store.db.Database.run`)."""
