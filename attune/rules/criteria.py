"""Rule criteria: operators over dotted paths of the trigger payload, each check traced.

A missing path is false (except for ``nexists``) with reason ``missing``; int and float compare
with each other, a string never compares as a number (``type mismatch``), nothing is coerced.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_MISSING = object()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool | str]:
    def check(actual: Any, expected: Any) -> bool | str:
        if _number(actual) and _number(expected):
            return compare(actual, expected)
        if isinstance(actual, str) and isinstance(expected, str):
            return compare(actual, expected)
        return "type mismatch"

    return check


def _text(check: Callable[[str, str], bool]) -> Callable[[Any, Any], bool | str]:
    def apply(actual: Any, expected: Any) -> bool | str:
        if not isinstance(actual, str):
            return "type mismatch"
        return check(actual, str(expected))

    return apply


def _equals(actual: Any, expected: Any) -> bool | str:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if _number(actual) != _number(expected):
        return "type mismatch" if actual is not None and expected is not None else False
    return bool(actual == expected)


def _contains(actual: Any, expected: Any) -> bool | str:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list | dict):
        return expected in actual
    return "type mismatch"


def _negated(check: Callable[[Any, Any], bool | str]) -> Callable[[Any, Any], bool | str]:
    def apply(actual: Any, expected: Any) -> bool | str:
        verdict = check(actual, expected)
        return verdict if isinstance(verdict, str) else not verdict

    return apply


@functools.cache
def compiled(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """A regex compiled once (operators ``regex``/``iregex``)."""
    return re.compile(pattern, flags)


def _member(actual: Any, expected: Any) -> bool | str:
    if not isinstance(expected, list):
        return "the value must be a list"
    return any(_equals(actual, item) is True for item in expected)


OPERATORS: dict[str, Callable[[Any, Any], bool | str]] = {
    "equals": _equals,
    "nequals": _negated(_equals),
    "iequals": _text(lambda a, e: a.casefold() == e.casefold()),
    "contains": _contains,
    "ncontains": _negated(_contains),
    "icontains": _text(lambda a, e: e.casefold() in a.casefold()),
    "startswith": _text(str.startswith),
    "endswith": _text(str.endswith),
    "regex": _text(lambda a, e: compiled(e).search(a) is not None),
    "iregex": _text(lambda a, e: compiled(e, re.IGNORECASE).search(a) is not None),
    "wildcard": _text(fnmatch.fnmatchcase),
    "gt": _ordered(lambda a, e: a > e),
    "ge": _ordered(lambda a, e: a >= e),
    "lt": _ordered(lambda a, e: a < e),
    "le": _ordered(lambda a, e: a <= e),
    "in": _member,
    "nin": _negated(_member),
    "exists": lambda _actual, _expected: True,
    "nexists": lambda _actual, _expected: False,
}
"""Every operator, by name: ``check(actual, expected)`` gives True, False or why it cannot."""

ALIASES = {"eq": "equals", "neq": "nequals"}
"""Other names accepted for operators."""

NO_VALUE = frozenset({"exists", "nexists"})
"""Operators that take no ``value``."""


@dataclass(frozen=True)
class Criterion:
    """One check: the value at ``key`` (``trigger.a.b``) against ``value`` by ``op``."""

    key: str
    op: str
    value: Any = None

    def to_json(self) -> dict[str, Any]:
        """The criterion as stored on the rule row."""
        return {"key": self.key, "op": self.op, "value": self.value}


@dataclass(frozen=True)
class Check:
    """How one criterion fared: the actual value seen and whether it held (and why not)."""

    key: str
    op: str
    expected: Any
    actual: Any
    ok: bool
    why: str = ""

    def to_json(self) -> dict[str, Any]:
        """The trace entry stored on the enforcement."""
        return {
            "key": self.key,
            "op": self.op,
            "expected": self.expected,
            "actual": self.actual,
            "ok": self.ok,
            "why": self.why,
        }


def lookup(context: Mapping[str, Any], key: str) -> Any:
    """The value at dotted ``key`` in ``context`` (list items by index), or a missing marker."""
    value: Any = context
    for part in key.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def check(criterion: Criterion, context: Mapping[str, Any]) -> Check:
    """Evaluate one criterion against ``context`` (``{"trigger": payload}``)."""
    actual = lookup(context, criterion.key)
    op = ALIASES.get(criterion.op, criterion.op)
    if actual is _MISSING:
        ok = op == "nexists"
        why = "" if ok else "missing"
        return Check(criterion.key, criterion.op, criterion.value, None, ok, why)
    verdict = OPERATORS[op](actual, criterion.value)
    why = verdict if isinstance(verdict, str) else ("" if verdict else "no match")
    return Check(criterion.key, criterion.op, criterion.value, actual, verdict is True, why)


def evaluate(criteria: Sequence[Criterion], context: Mapping[str, Any]) -> list[Check]:
    """Every criterion's check, in order (all of them, so a trace shows each)."""
    return [check(criterion, context) for criterion in criteria]


def criterion_problems(key: str, spec: Any) -> list[str]:
    """Why criterion ``key: spec`` cannot be used (each ``criteria.<key>: what``), if it cannot."""
    where = f"criteria.{key}"
    if not key.startswith("trigger.") or not all(key.split(".")):
        return [f"{where}: the key must be a dotted path under trigger. (trigger.status)"]
    if not isinstance(spec, Mapping):
        return [f"{where}: must be a mapping {{op: ..., value: ...}}"]
    unknown = sorted(set(spec) - {"op", "value"})
    if unknown:
        return [f"{where}: unknown key {', '.join(unknown)}; allowed: op, value"]
    op = spec.get("op")
    name = ALIASES.get(op, op) if isinstance(op, str) else None
    if name not in OPERATORS:
        return [f"{where}.op: {op!r} is not an operator; known: {', '.join(sorted(OPERATORS))}"]
    if name in NO_VALUE:
        return [f"{where}.value: {op} takes no value"] if "value" in spec else []
    if "value" not in spec:
        return [f"{where}.value: missing (required for {op})"]
    value = spec["value"]
    if name in ("regex", "iregex"):
        try:
            compiled(str(value), re.IGNORECASE if name == "iregex" else 0)
        except re.error as error:
            return [f"{where}.value: {value!r} is not a regular expression: {error}"]
    if name in ("in", "nin") and not isinstance(value, list):
        return [f"{where}.value: {op} needs a list"]
    return []
