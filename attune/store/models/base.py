"""The schema's foundations: ref formats, status enums and transitions, the declarative base."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    MetaData,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from attune.store.sqltypes import JSONType, UTCDateTime, db_now, one_of

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
    WORKFLOW = "workflow"


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


_EXECUTION_ID = BigInteger().with_variant(Integer, "sqlite")
