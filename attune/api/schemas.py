"""The API's request and response bodies (pydantic models; they make the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from attune.executions.records import ExecutionRecord


class Health(BaseModel):
    """Whether the server reaches its database and broker; nothing else is disclosed."""

    db: bool
    broker: bool


class PackOut(BaseModel):
    """A loaded pack and the refs of its actions."""

    ref: str
    label: str
    description: str
    version: str
    author: str | None
    email: str | None
    tags: list[str]
    actions: list[str]


class ActionOut(BaseModel):
    """A loaded action, with its parameters as declared and as a JSON Schema."""

    ref: str
    pack: str
    label: str
    description: str
    enabled: bool
    tags: list[str]
    runner_type: str
    output_format: str
    timeout_s: int | None
    parameters: dict[str, Any]
    parameters_schema: dict[str, Any]


class RunRequest(BaseModel):
    """``POST /executions``: which action, its parameters, and optionally where and how long."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1, max_length=255)
    parameters: dict[str, Any] = Field(default_factory=dict)
    worker: str | None = Field(default=None, min_length=1, max_length=255)
    timeout_s: float | None = Field(default=None, gt=0, le=2**31 - 1)


class RerunRequest(BaseModel):
    """``POST /executions/{id}/rerun``: parameters that override the original's."""

    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict)


class ExecutionSummary(BaseModel):
    """One row of the executions list: no output bodies, no result."""

    id: int
    action_ref: str
    status: str
    worker: str | None
    exit_code: int | None
    error: str | None
    requested_by: str | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None


class ExecutionOut(ExecutionSummary):
    """One execution: everything but its output bodies, which have their own route."""

    parameters: dict[str, Any]
    result: Any
    stdout_size: int
    stderr_size: int
    stdout_truncated: bool
    stderr_truncated: bool
    parent_id: int | None = None
    """The workflow run this execution is a task attempt of."""

    @classmethod
    def of(cls, record: ExecutionRecord, requested_by: str | None) -> ExecutionOut:
        """The body for ``record``."""
        fields = record.to_json()
        stdout, stderr = fields.pop("stdout"), fields.pop("stderr")
        return cls(
            **fields, requested_by=requested_by, stdout_size=len(stdout), stderr_size=len(stderr)
        )


class ExecutionPage(BaseModel):
    """A page of executions, newest first; ``next_cursor`` fetches the next older page."""

    items: list[ExecutionSummary]
    next_cursor: str | None


class CancelOut(BaseModel):
    """The state a cancel left the execution in: ``canceled`` or ``canceling``."""

    id: int
    status: str


class WorkerOut(BaseModel):
    """A worker with its heartbeat age and staleness, judged on the database clock."""

    name: str
    status: str
    runtimes: list[str]
    queues: list[str]
    host: str
    pid: int | None
    last_heartbeat: datetime | None
    heartbeat_age_s: float | None
    stale: bool
    running: int


class SweeperOut(BaseModel):
    """When the stale-worker sweep last ran; ``overdue``: none within 3 sweep intervals."""

    last_sweep_at: datetime | None
    last_sweep_age_s: float | None
    sweep_interval_s: float
    overdue: bool


class WorkersOut(BaseModel):
    """Every worker, and the state of the sweep that settles the stale ones."""

    items: list[WorkerOut]
    sweeper: SweeperOut


class WebhookEnforcement(BaseModel):
    """One rule's verdict on a webhook delivery, and the execution it started (if any)."""

    rule: str
    status: str
    execution_id: int | None


class WebhookOut(BaseModel):
    """The event a webhook delivery recorded, and what each rule on its path made of it."""

    event_id: int
    enforcements: list[WebhookEnforcement]
