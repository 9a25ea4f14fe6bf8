"""Executions: one row per run of an action, from the request to its result."""

from __future__ import annotations

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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from attune.store.models.base import (
    _EXECUTION_ID,
    _IN_HELD,
    _IN_LIVE,
    Base,
    ExecutionStatus,
    _created,
    _values,
)
from attune.store.sqltypes import JSONType, UTCDateTime, one_of

_UNCONSUMED = "parent_id IS NOT NULL AND NOT wf_consumed"
_UNIQUE_WHERE_SET = ("retry_of_id", "enforcement_id")


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
        # Unique where set (migration 20261201_0016): most rows have neither, and a status
        # change, never HOT, would write an entry for them into every full index.
        *(
            Index(
                f"uq_execution_{column}",
                column,
                unique=True,
                postgresql_where=text(f"{column} IS NOT NULL"),
                sqlite_where=text(f"{column} IS NOT NULL"),
            )
            for column in _UNIQUE_WHERE_SET
        ),
        # Workflows (migration 20261201_0011): a run's children, and those not consumed yet.
        Index(
            "ix_execution_parent_id_id",
            "parent_id",
            "id",
            postgresql_where=text("parent_id IS NOT NULL"),
            sqlite_where=text("parent_id IS NOT NULL"),
        ),
        Index(
            "ix_execution_unconsumed",
            "parent_id",
            postgresql_where=text(_UNCONSUMED),
            sqlite_where=text(_UNCONSUMED),
        ),
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
    enforcement_id: Mapped[int | None] = mapped_column(BigInteger)
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
        _EXECUTION_ID, ForeignKey("execution.id", ondelete="SET NULL")
    )
    eligible_at: Mapped[datetime] = _created()
    spawned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The claim that moved it to running: a claim repeated because its reply was lost (the
    # database restarted between commit and answer) knows its own work (migration 0019).
    claim_token: Mapped[int | None] = mapped_column(BigInteger)
    # When a gate's releaser last sent it (a hint against sending it twice).
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    gate_key: Mapped[str | None] = mapped_column(String(64))
    gate_limit: Mapped[int | None] = mapped_column(Integer)
    # Workflows: the run it is a task attempt of, its activation and item (NULL outside a
    # fan-out), and whether that run has taken its outcome into account yet.
    parent_id: Mapped[int | None] = mapped_column(_EXECUTION_ID)
    wf_task_id: Mapped[int | None] = mapped_column(_EXECUTION_ID)
    wf_item: Mapped[int | None] = mapped_column(Integer)
    wf_consumed: Mapped[bool] = mapped_column(default=False, server_default=text("false"))


EXECUTION_TABLE = cast(Table, Execution.__table__)
"""The execution model's Core table, for statements built once
(:meth:`attune.store.db.Database.run`)."""
