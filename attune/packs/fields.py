"""Typed reads of one YAML file's top-level fields; every bad field a problem naming it."""

from __future__ import annotations

import difflib
import enum
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from attune.packs.documents import kind_of
from attune.packs.specs import MAX_TIMEOUT_S

_E = TypeVar("_E", bound=enum.StrEnum)


@functools.cache
def values_of(choices: type[enum.StrEnum]) -> tuple[str, ...]:
    """The values of an enum's members, in order (for messages and checks)."""
    return tuple(member.value for member in choices)


class Fields:
    """Typed access to one YAML file's top-level keys, appending a problem per bad field."""

    def __init__(
        self,
        path: Path,
        document: Mapping[str, Any],
        allowed: frozenset[str],
        problems: list[str],
        prefix: str = "",
    ) -> None:
        """``prefix`` goes before each field's name (``tasks[2].`` for a nested mapping)."""
        self.path = path
        self.prefix = prefix
        self.document = document
        self.problems = problems
        self.failed = False
        for key in document:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problem(key, f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}")

    def problem(self, field: str, what: str) -> None:
        """Record that ``field`` is wrong, and how."""
        self.failed = True
        self.problems.append(f"{self.path}: {self.prefix}{field}: {what}")

    def extend(self, problems: Sequence[str]) -> None:
        """Record problems that already name their field (``field: what``)."""
        self.failed = self.failed or bool(problems)
        self.problems.extend(f"{self.path}: {self.prefix}{problem}" for problem in problems)

    def text(self, key: str, *, required: bool = False) -> str:
        """A string field ("" when absent and optional)."""
        if key not in self.document:
            if required:
                self.problem(key, "missing (required)")
            return ""
        value = self.document[key]
        if not isinstance(value, str):
            self.problem(key, f"must be a string, got {kind_of(value)} {value!r}")
            return ""
        if required and not value.strip():
            self.problem(key, "must not be empty")
        return value

    def flag(self, key: str, *, default: bool) -> bool:
        """A boolean field: true or false, never a truthy string."""
        value = self.document.get(key, default)
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {kind_of(value)} {value!r}")
            return default
        return value

    def choice(self, key: str, choices: type[_E], *, required: bool = False) -> str:
        """One of an enum's values (its first member when absent and optional)."""
        allowed = values_of(choices)
        if key not in self.document:
            if required:
                self.problem(key, f"missing (required): one of {', '.join(allowed)}")
            return allowed[0]
        value = self.document[key]
        if value not in allowed:
            self.problem(key, f"{value!r} is not one of {', '.join(allowed)}")
            return allowed[0]
        return str(value)

    def tags(self) -> tuple[str, ...]:
        """The ``tags`` field: a list of non-empty strings."""
        value = self.document.get("tags", [])
        if not isinstance(value, list) or not all(isinstance(tag, str) and tag for tag in value):
            self.problem("tags", f"must be a list of non-empty strings, got {value!r}")
            return ()
        return tuple(value)

    def timeout(self) -> int | None:
        """The ``timeout`` field: whole seconds, 1 or more (None when absent)."""
        value = self.document.get("timeout")
        if value is None and "timeout" not in self.document:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_TIMEOUT_S:
            self.problem(
                "timeout", f"must be a whole number of seconds, 1 to {MAX_TIMEOUT_S}, got {value!r}"
            )
            return None
        return value
