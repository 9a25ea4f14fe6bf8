"""Output: an action's stdout parsed into a structured result, and secrets redacted by value.

Parsing never loses or repeats output: what was parsed goes to ``result``, everything else
stays in ``stdout``; a parse failure is no error (``result`` None, ``stdout`` untouched).
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from attune.store.models import MASK, OutputFormat

_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Parsed:
    """A result parsed from stdout (None when nothing parsed) and the stdout left over."""

    result: Any | None
    stdout: str


class _UnparsableError(Exception):
    """Raised inside this module when a document is not a result."""


def parse(stdout: str, output_format: OutputFormat, secrets: Sequence[str] = ()) -> Parsed:
    """Split ``stdout`` into a result and what was not parsed, per ``output_format``.

    The result is made storable as JSON (see :func:`_Storable`) with ``secrets`` masked in
    its strings; the leftover ``stdout`` is returned as it is.
    """
    if output_format == OutputFormat.TEXT or not stdout.strip():
        return Parsed(None, stdout)
    storable = _Storable(len(stdout), secrets)
    try:
        if output_format == OutputFormat.JSONL:
            values, rest = _jsonl(stdout)
            return Parsed(storable.value(values), rest)
        if output_format == OutputFormat.YAML:
            return Parsed(storable.value(_structure(yaml.load(stdout, Loader=_YAML_LOADER))), "")
        result, rest = _json(stdout)
        return Parsed(storable.value(result), rest)
    except (_UnparsableError, ValueError, yaml.YAMLError, RecursionError):
        return Parsed(None, stdout)


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``MASK``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_cut(text: str, end: int, secrets: Sequence[str]) -> str:
    """``text`` with the beginning of a secret masked where the output limit cut it.

    ``end`` is where the kept output ends (a truncation notice may follow). The cut may fall
    inside a secret, where what is kept of it does not match the whole value; the longest such
    beginning is masked. A character cut in half decodes as one U+FFFD, dropped with it. Reads
    only the end of ``text``: it may hold megabytes.
    """
    stop = end - 1 if text.endswith("\ufffd", 0, end) else end
    cut = max(
        (
            length
            for secret in secrets
            for length in range(min(len(secret) - 1, stop), 0, -1)
            if text.endswith(secret[:length], 0, stop)
        ),
        default=0,
    )
    return f"{text[: stop - cut]}{MASK}{text[end:]}" if cut else text


def secrets_to_redact(secret_values: Sequence[str]) -> tuple[str, ...]:
    """The non-empty secret values, longest first (so no part of a longer one is left)."""
    return tuple(sorted({value for value in secret_values if value}, key=len, reverse=True))


def _json(stdout: str) -> tuple[Any, str]:
    try:
        return _structure(_json_value(stdout)), ""
    except (_UnparsableError, ValueError):
        pass
    # Log lines printed before the document: parse the last non-blank line alone.
    body = stdout.rstrip()
    start = body.rfind("\n") + 1
    return _structure(_json_value(body[start:])), stdout[:start]


def _jsonl(stdout: str) -> tuple[list[Any], str]:
    values: list[Any] = []
    rest: list[str] = []
    for line in _lines(stdout):
        if not line.strip():
            continue
        try:
            values.append(_json_value(line))
        except ValueError:
            rest.append(line)
    if not values:
        raise _UnparsableError
    return values, "".join(rest)


def _lines(text: str) -> Iterator[str]:
    """Lines split at ``\\n`` only (JSON strings may hold U+2028 and other line breaks)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start) + 1 or len(text)
        yield text[start:end]
        start = end


def _json_value(text: str) -> Any:
    """Strict JSON: NaN and Infinity are not JSON (and PostgreSQL's jsonb refuses them)."""
    return json.loads(text, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _structure(value: Any) -> Any:
    """``value`` if it is a mapping or a list: a bare scalar is not a result."""
    if isinstance(value, dict | list):
        return value
    raise _UnparsableError


class _Storable:
    """Converts a parsed value into one JSON (and PostgreSQL) can store, secrets masked.

    YAML dates become ISO text, sets lists, keys text, non-finite floats text, NUL characters
    U+FFFD. A value with more nodes than its document has characters was built from YAML
    aliases (a "billion laughs"): it is refused rather than expanded.
    """

    def __init__(self, budget: int, secrets: Sequence[str]) -> None:
        self.budget = budget + 16
        self.secrets = secrets

    def value(self, value: Any) -> Any:
        """``value`` converted, recursively."""
        self.budget -= 1
        if self.budget < 0:
            raise _UnparsableError
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.key(key): self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(item) for item in value]
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, datetime.date):
            return value.isoformat()
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        return value

    def key(self, key: Any) -> str:
        """A mapping key as text (JSON's spelling for null, booleans and numbers)."""
        if isinstance(key, str):
            return self.text(key)
        if key is None or isinstance(key, bool | int | float):
            return json.dumps(key)
        return self.text(str(key))

    def text(self, text: str) -> str:
        """A string without NUL characters or secrets."""
        if "\0" in text:
            text = text.replace("\0", "\ufffd")
        return redact(text, self.secrets)
