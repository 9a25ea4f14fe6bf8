"""Parameter arguments: a command-line ``name=raw`` value (``attune run``, the web form's text
fields) converted by its parameter's declared type."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from attune.errors import ParameterError
from attune.executions.params import unknown_problem

_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
}


def parse_cli_value(ref: str, parameters: Mapping[str, Any], name: str, raw: str) -> Any:
    """The value of a command-line ``name=raw`` argument, converted by the parameter's type.

    Integers, numbers and booleans are parsed, strings stay as written, objects and arrays
    are JSON; a parameter without a type takes JSON when ``raw`` parses as JSON, else the string.
    Raises :class:`ParameterError` for an unknown name or a value that does not parse.
    """
    if name not in parameters:
        raise ParameterError(ref, [unknown_problem(name, parameters)])
    spec = parameters[name]
    declared = spec.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or ())
    value = _parse_as(types, raw)
    if value is _UNPARSED:
        shown = "the value" if spec.get("secret") is True else repr(raw)
        raise ParameterError(ref, [f"{name}: {shown} is not {' or '.join(_article(types))}"])
    return value


class _Unparsed:
    """Marks a command-line value that none of the declared types accepts."""


_UNPARSED = _Unparsed()


def _parse_as(types: list[str], raw: str) -> Any:
    if not types:
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    for kind in types:
        value = _parse_one(kind, raw)
        if value is not _UNPARSED:
            return value
    return _UNPARSED


def _parse_one(kind: str, raw: str) -> Any:
    text = raw.strip()
    if kind == "string":
        return raw
    if kind == "integer":
        return int(text) if _INTEGER.match(text) else _UNPARSED
    if kind == "number":
        if _INTEGER.match(text):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            return _UNPARSED
        return number if math.isfinite(number) else _UNPARSED
    if kind == "boolean":
        lowered = text.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else _UNPARSED
    if kind == "null":
        return None if text in ("", "null") else _UNPARSED
    try:
        value = json.loads(text)
    except ValueError:
        return _UNPARSED
    return value if isinstance(value, _JSON_TYPES.get(kind, ())) else _UNPARSED


def _article(types: Iterable[str]) -> list[str]:
    named = [f"an {kind}" if kind[0] in "aeiou" else f"a {kind}" for kind in types]
    return named or ["valid"]
