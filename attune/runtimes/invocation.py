"""Invocation and RunResult: the values that go into and come out of a runtime."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attune.runtimes.livefeed import LiveSink
from attune.runtimes.reaper import ProcessGroup
from attune.store.models import OutputFormat, ParameterDelivery, ParameterFormat, RunnerType


@dataclass(frozen=True)
class Invocation:
    """Everything a runtime needs to run one execution of an action (secrets included)."""

    runtime: RunnerType
    entry_point: Path
    pack_dir: Path
    parameters: Mapping[str, Any] = field(repr=False)
    secret_values: tuple[str, ...] = field(repr=False)
    parameter_delivery: ParameterDelivery
    parameter_format: ParameterFormat
    output_format: OutputFormat
    timeout_s: float
    max_output_bytes: int
    kill_grace_s: float
    execution_id: int
    action_ref: str
    base_env: Mapping[str, str] = field(repr=False)
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)
    python: str | None = None
    """The interpreter of a python action (its pack's environment); None: the default."""
    on_start: Callable[[ProcessGroup], None] | None = field(default=None, compare=False, repr=False)
    """Called with the action's process group once its process started."""
    live: LiveSink | None = field(default=None, compare=False, repr=False)
    live_after_s: float = 0.0
    """How long the action runs before its output goes to ``live`` (see LiveFeed)."""
    """Where output goes while the action runs (after redaction and the cap); None: nowhere."""

    @property
    def pack_ref(self) -> str:
        """The ref of the action's pack: the part of ``action_ref`` before the dot."""
        return self.action_ref.partition(".")[0]


class Outcome(enum.StrEnum):
    """How a run ended; each is a terminal execution status of the same name."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELED = "canceled"


@dataclass(frozen=True)
class RunResult:
    """What a runtime reports about one run, secrets already redacted.

    ``exit_code`` is None when no process ran (or it was not reaped), and ``-N`` when the
    action's own process was killed by signal N. ``stdout`` holds only what was not parsed
    into ``result``.
    """

    outcome: Outcome
    exit_code: int | None
    stdout: str
    stderr: str
    result: Any | None
    error: str | None
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_dropped_bytes: int
    stderr_dropped_bytes: int
    duration_ms: int

    @classmethod
    def not_started(cls, outcome: Outcome, error: str, duration_ms: int = 0) -> RunResult:
        """The result of a run whose process never started: no exit code, no output."""
        return cls(
            outcome=outcome,
            exit_code=None,
            stdout="",
            stderr="",
            result=None,
            error=error,
            stdout_truncated=False,
            stderr_truncated=False,
            stdout_dropped_bytes=0,
            stderr_dropped_bytes=0,
            duration_ms=duration_ms,
        )
