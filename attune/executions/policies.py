"""Execution policies as values: an action's ``idempotent``, ``retry`` and ``concurrency``.

The loader validates them (:mod:`attune.packs.policies`) and stores them on the action as
JSON; the scheduler snapshots that JSON into each execution, so a pack reload never changes
the policy of an execution already requested.
"""

from __future__ import annotations

import enum
import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class RetryOn(enum.StrEnum):
    """The terminal statuses a retry policy may follow."""

    FAILED = "failed"
    TIMEOUT = "timeout"
    ABANDONED = "abandoned"


class Backoff(enum.StrEnum):
    """How the delay grows from one attempt to the next."""

    CONSTANT = "constant"
    EXPONENTIAL = "exponential"


class Jitter(enum.StrEnum):
    """Whether the delay is drawn at random below its cap (full) or taken as is (none)."""

    FULL = "full"
    NONE = "none"


class OnLimit(enum.StrEnum):
    """What a request beyond a concurrency limit does."""

    QUEUE = "queue"
    REJECT = "reject"


SNAPSHOT_COLUMNS = ("policy", "max_attempts", "gate_key", "gate_limit")
"""The execution columns a policy fills when an execution is scheduled."""

MAX_ATTEMPTS = 10
"""Most runs a retry policy may ask for, the first included."""
MAX_DELAY_S = 3600
"""Longest delay between two attempts."""


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often a failed attempt is followed by another."""

    on: tuple[RetryOn, ...]
    max_attempts: int
    delay_s: float = 0.0
    backoff: Backoff = Backoff.CONSTANT
    max_delay_s: float = float(MAX_DELAY_S)
    jitter: Jitter = Jitter.NONE

    def delay_before(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait, from the end of attempt ``attempt - 1``, before ``attempt`` (>= 2)."""
        base = self.delay_s
        if self.backoff is Backoff.EXPONENTIAL:
            base = self.delay_s * 2 ** (attempt - 2)
        cap = min(base, self.max_delay_s)
        if self.jitter is Jitter.FULL:
            return (rng or random).uniform(0.0, cap)
        return cap


@dataclass(frozen=True)
class ConcurrencyPolicy:
    """At most ``limit`` executions running at once, per value of the ``by`` parameters."""

    limit: int
    by: tuple[str, ...] = ()
    on_limit: OnLimit = OnLimit.QUEUE
    max_waiting: int | None = None

    def key(self, action_ref: str, parameters: Mapping[str, Any]) -> str:
        """The gate of an execution: a digest of the ``by`` values (no value kept at rest)."""
        values = [parameters.get(name) for name in self.by]
        document = json.dumps([action_ref, values], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(document.encode()).hexdigest()


@dataclass(frozen=True)
class Policy:
    """Everything an action's YAML says about how its executions are run."""

    idempotent: bool = False
    retry: RetryPolicy | None = None
    concurrency: ConcurrencyPolicy | None = None
    timeout_s: int | None = None
    """The action's own timeout, kept for the window before an abandoned attempt is retried."""

    @property
    def is_default(self) -> bool:
        """True when the action sets no policy at all (stored as NULL)."""
        return self.retry is None and self.concurrency is None and not self.idempotent

    @property
    def max_attempts(self) -> int:
        """Runs in all: 1 without a retry policy."""
        return 1 if self.retry is None else self.retry.max_attempts

    def to_json(self) -> dict[str, Any] | None:
        """The JSON stored on the action and snapshotted into executions (None: no policy)."""
        if self.is_default:
            return None
        document: dict[str, Any] = {"idempotent": self.idempotent, "timeout_s": self.timeout_s}
        if self.retry is not None:
            retry = self.retry
            document["retry"] = {
                "on": [status.value for status in retry.on],
                "max_attempts": retry.max_attempts,
                "delay_s": retry.delay_s,
                "backoff": retry.backoff.value,
                "max_delay_s": retry.max_delay_s,
                "jitter": retry.jitter.value,
            }
        if self.concurrency is not None:
            gate = self.concurrency
            document["concurrency"] = {
                "limit": gate.limit,
                "by": list(gate.by),
                "on_limit": gate.on_limit.value,
                "max_waiting": gate.max_waiting,
            }
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any] | None) -> Policy:
        """The policy stored as ``document`` (the default policy for None)."""
        if not document:
            return cls()
        retry = document.get("retry")
        gate = document.get("concurrency")
        return cls(
            idempotent=bool(document.get("idempotent", False)),
            timeout_s=document.get("timeout_s"),
            retry=None
            if retry is None
            else RetryPolicy(
                on=tuple(RetryOn(status) for status in retry["on"]),
                max_attempts=int(retry["max_attempts"]),
                delay_s=float(retry["delay_s"]),
                backoff=Backoff(retry["backoff"]),
                max_delay_s=float(retry["max_delay_s"]),
                jitter=Jitter(retry["jitter"]),
            ),
            concurrency=None
            if gate is None
            else ConcurrencyPolicy(
                limit=int(gate["limit"]),
                by=tuple(gate["by"]),
                on_limit=OnLimit(gate["on_limit"]),
                max_waiting=gate.get("max_waiting"),
            ),
        )

    def snapshot(self, action_ref: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """The execution columns of :data:`SNAPSHOT_COLUMNS` for a request of the action."""
        gate = self.concurrency
        return {
            "policy": self.to_json(),
            "max_attempts": self.max_attempts,
            "gate_key": None if gate is None else gate.key(action_ref, parameters),
            "gate_limit": None if gate is None else gate.limit,
        }

    def describe(self) -> list[str]:
        """The policy in words, one line per part (for ``attune actions show``)."""
        lines = [f"idempotent:   {'yes' if self.idempotent else 'no'}"]
        if self.retry is not None:
            retry = self.retry
            lines.append(
                f"retry:        on {', '.join(retry.on)}, {retry.max_attempts} attempts, "
                f"delay {retry.delay_s:g} s {retry.backoff} (cap {retry.max_delay_s:g} s), "
                f"jitter {retry.jitter}"
            )
        if self.concurrency is not None:
            gate = self.concurrency
            by = f" per {', '.join(gate.by)}" if gate.by else ""
            waiting = "" if gate.max_waiting is None else f", at most {gate.max_waiting} waiting"
            lines.append(f"concurrency:  limit {gate.limit}{by}, {gate.on_limit}{waiting}")
        return lines
