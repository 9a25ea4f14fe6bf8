"""Read an action file's ``idempotent``, ``retry`` and ``concurrency`` keys into a Policy.

Every bad field is a problem naming the file and the dotted field (``retry.max_attempts``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, TypeVar

from attune.executions import params
from attune.executions.policies import (
    MAX_ATTEMPTS,
    MAX_DELAY_S,
    Backoff,
    ConcurrencyPolicy,
    Jitter,
    OnLimit,
    Policy,
    RetryOn,
    RetryPolicy,
)
from attune.packs.documents import kind_of
from attune.packs.fields import Fields

RETRY_KEYS = frozenset({"on", "max_attempts", "delay_s", "backoff", "max_delay_s", "jitter"})
"""The keys of ``retry:``."""
CONCURRENCY_KEYS = frozenset({"limit", "by", "on_limit", "max_waiting"})
"""The keys of ``concurrency:``."""
POLICY_KEYS = frozenset({"idempotent", "retry", "concurrency"})
"""The action keys read here."""

_E = TypeVar("_E", bound=enum.StrEnum)
_MAX_WAITING = 1_000_000


class _Section:
    """One nested mapping (``retry`` or ``concurrency``) of an action file."""

    def __init__(self, fields: Fields, name: str, allowed: frozenset[str]) -> None:
        self.fields = fields
        self.name = name
        self.ok = True
        value = fields.document[name]
        self.document: Mapping[str, Any] = value if isinstance(value, dict) else {}
        if not isinstance(value, dict):
            self.problem("", f"must be a mapping, got {kind_of(value)} {value!r}")
            return
        for key in value:
            if key not in allowed:
                self.problem(key, f"unknown key; allowed: {', '.join(sorted(allowed))}")

    def problem(self, key: str, what: str) -> None:
        self.ok = False
        self.fields.problem(f"{self.name}.{key}" if key else self.name, what)

    def number(self, key: str, low: float, high: float, default: float | None) -> float | None:
        value = self.document.get(key, default)
        if value is None and default is None and key not in self.document:
            self.problem(key, f"missing (required): a number {low:g} to {high:g}")
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            self.problem(key, f"must be a number {low:g} to {high:g}, got {value!r}")
            return None
        return float(value)

    def integer(self, key: str, low: int, high: int, *, required: bool) -> int | None:
        if key not in self.document:
            if required:
                self.problem(key, f"missing (required): a whole number {low} to {high}")
            return None
        value = self.document[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(key, f"must be a whole number {low} to {high}, got {value!r}")
            return None
        return value

    def choice(self, key: str, choices: type[_E], default: _E) -> _E:
        value = self.document.get(key, default.value)
        allowed = [member.value for member in choices]
        if value not in allowed:
            self.problem(key, f"{value!r} is not one of {', '.join(allowed)}")
            return default
        return choices(value)

    def names(self, key: str) -> list[Any]:
        value = self.document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(key, f"must be a list of names, got {value!r}")
            return []
        if len(set(value)) != len(value):
            self.problem(key, f"lists a name twice: {value!r}")
        return value


def read_policy(
    fields: Fields, parameters: Mapping[str, Any], timeout_s: int | None
) -> Policy | None:
    """The action's policy from its file's top-level fields (None after a problem)."""
    idempotent = fields.flag("idempotent", default=False)
    before = fields.failed
    retry = read_retry(fields, idempotent) if "retry" in fields.document else None
    concurrency = _concurrency(fields, parameters) if "concurrency" in fields.document else None
    if fields.failed and not before:
        return None
    return Policy(idempotent=idempotent, retry=retry, concurrency=concurrency, timeout_s=timeout_s)


def read_retry(fields: Fields, idempotent: bool) -> RetryPolicy | None:
    """The ``retry`` mapping of ``fields`` (an action's, or a workflow task's)."""
    section = _Section(fields, "retry", RETRY_KEYS)
    if not section.ok:
        return None
    on: list[RetryOn] = []
    raw_on = section.document.get("on")
    if raw_on is None:
        section.problem("on", "missing (required): a list of failed, timeout, abandoned")
    elif not isinstance(raw_on, list) or not raw_on:
        section.problem("on", f"must be a non-empty list of failed, timeout, abandoned: {raw_on!r}")
    else:
        for status in raw_on:
            if status not in [member.value for member in RetryOn]:
                section.problem("on", f"{status!r} is not one of failed, timeout, abandoned")
            elif RetryOn(status) not in on:
                on.append(RetryOn(status))
    if RetryOn.ABANDONED in on and not idempotent:
        section.problem(
            "on",
            "abandoned needs idempotent: true (the abandoned attempt may still be running "
            "on a cut-off host)",
        )
    max_attempts = section.integer("max_attempts", 2, MAX_ATTEMPTS, required=True)
    delay_s = section.number("delay_s", 0, MAX_DELAY_S, 0.0)
    max_delay_s = section.number("max_delay_s", 0, MAX_DELAY_S, float(MAX_DELAY_S))
    backoff = section.choice("backoff", Backoff, Backoff.CONSTANT)
    jitter = section.choice("jitter", Jitter, Jitter.NONE)
    if not section.ok or max_attempts is None or delay_s is None or max_delay_s is None:
        return None
    return RetryPolicy(tuple(on), max_attempts, delay_s, backoff, max_delay_s, jitter)


def _concurrency(fields: Fields, parameters: Mapping[str, Any]) -> ConcurrencyPolicy | None:
    section = _Section(fields, "concurrency", CONCURRENCY_KEYS)
    if not section.ok:
        return None
    limit = section.integer("limit", 1, 2**31 - 1, required=True)
    by = section.names("by")
    readable = isinstance(parameters, dict) and all(
        isinstance(v, dict) for v in parameters.values()
    )
    secrets = params.secret_names(parameters) if readable else frozenset()
    for name in by:
        if not isinstance(parameters, dict) or name not in parameters:
            known = ", ".join(sorted(parameters)) if isinstance(parameters, dict) else ""
            section.problem("by", f"{name!r} is not a parameter of the action ({known or 'none'})")
        elif name in secrets:
            section.problem("by", f"{name!r} is a secret parameter and cannot form a key")
    on_limit = section.choice("on_limit", OnLimit, OnLimit.QUEUE)
    max_waiting = section.integer("max_waiting", 0, _MAX_WAITING, required=False)
    if not section.ok or limit is None:
        return None
    return ConcurrencyPolicy(limit, tuple(by), on_limit, max_waiting)
