"""Parameters: an action's flat StackStorm-style map as JSON Schema, validated, defaulted, masked.

An action declares its parameters as a flat map ``name → JSON-Schema property`` in which each
property may also carry the booleans ``required`` and ``secret``::

    parameters:
      url: {type: string, required: true}
      auth_token: {type: string, secret: true}
      retries: {type: integer, minimum: 0, default: 3}

:func:`json_schema` turns that map into one JSON Schema object (Draft 7), :func:`resolve` checks
caller values against it, :func:`mask` hides secrets, :func:`definition_problems` checks the map
itself when a pack is loaded.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

from attune.errors import ParameterError
from attune.packs.documents import kind_of
from attune.store.models import MASK

NAME_REGEX = "^[A-Za-z_][A-Za-z0-9_]*$"
"""A parameter name: an identifier, so it reads the same in JSON, YAML and dotenv documents."""

INLINE_KEYS = frozenset({"required", "secret"})
"""attune's own boolean keys inside a property; they are not JSON Schema and never reach it."""

KEYWORDS = frozenset(Draft7Validator.META_SCHEMA["properties"]) | INLINE_KEYS
"""Keys a property may use: Draft 7 keywords plus the inline ones (anything else is a typo)."""

_NAME = re.compile(NAME_REGEX)
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
_META = Draft7Validator(Draft7Validator.META_SCHEMA)
_ANNOTATIONS: dict[str, type] = {
    "title": str,
    "description": str,
    "$comment": str,
    "examples": list,
}
_INLINE_ORDER = tuple(sorted(INLINE_KEYS))
# What a property's shape (the part checked against the meta-schema) leaves out.
_NOT_SHAPE = INLINE_KEYS | _ANNOTATIONS.keys() | {"default"}


def json_schema(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema object (Draft 7) that the flat map ``parameters`` describes."""
    return {
        "type": "object",
        "properties": {name: _property_schema(spec) for name, spec in parameters.items()},
        "required": [name for name, spec in parameters.items() if spec.get("required") is True],
        "additionalProperties": False,
    }


def secret_names(parameters: Mapping[str, Any]) -> frozenset[str]:
    """The names of the parameters marked ``secret: true``."""
    return frozenset(name for name, spec in parameters.items() if spec.get("secret") is True)


def resolve(ref: str, parameters: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against action ``ref``'s parameters, with defaults filled in.

    Raises :class:`ParameterError` listing every problem at once (unknown names, missing
    required parameters, wrong types or ranges), each naming its parameter; a secret's value
    never appears in a message.
    """
    bad_keys = sorted(repr(key) for key in values if not isinstance(key, str))
    if bad_keys:
        raise ParameterError(ref, [f"{key}: a parameter name must be a string" for key in bad_keys])
    resolved = {
        name: copy.deepcopy(spec["default"])
        for name, spec in parameters.items()
        if "default" in spec and name not in values
    }
    resolved.update(values)
    problems = _value_problems(parameters, resolved)
    if problems:
        raise ParameterError(ref, problems)
    return resolved


def mask(parameters: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` whose secret parameters hold :data:`attune.store.models.MASK`."""
    secrets = secret_names(parameters)
    return {name: MASK if name in secrets else value for name, value in values.items()}


def parse_cli_value(ref: str, parameters: Mapping[str, Any], name: str, raw: str) -> Any:
    """The value of a command-line ``name=raw`` argument, converted by the parameter's type.

    Integers, numbers and booleans are parsed, strings stay as written, objects and arrays
    are JSON; a parameter without a type takes JSON when ``raw`` parses as JSON, else the string.
    Raises :class:`ParameterError` for an unknown name or a value that does not parse.
    """
    if name not in parameters:
        raise ParameterError(ref, [_unknown(name, parameters)])
    spec = parameters[name]
    declared = spec.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or ())
    value = _parse_as(types, raw)
    if value is _UNPARSED:
        shown = "the value" if spec.get("secret") is True else repr(raw)
        raise ParameterError(ref, [f"{name}: {shown} is not {' or '.join(_article(types))}"])
    return value


def definition_problems(parameters: object) -> list[str]:
    """Every problem of a ``parameters`` map as written in an action file ([] when valid).

    Each problem starts with ``parameters.<name>`` (and the keyword at fault): names must be
    identifiers, ``required``/``secret`` booleans, every key a JSON Schema keyword, every property
    valid against the Draft 7 meta-schema, and every ``default`` valid against its own property.
    """
    if not isinstance(parameters, Mapping):
        return [f"parameters: must be a mapping of name → property, got {kind_of(parameters)}"]
    problems: list[str] = []
    for name, spec in parameters.items():
        problems += _property_problems(name, spec)
    return problems


class _Unparsed:
    """Marks a command-line value that none of the declared types accepts."""


_UNPARSED = _Unparsed()


def _property_schema(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in spec.items() if key not in INLINE_KEYS}


def _property_problems(name: object, spec: object) -> list[str]:
    where = f"parameters.{name}"
    if not isinstance(name, str) or not _NAME.match(name):
        return [f"{where}: the name must match {NAME_REGEX} (letters, digits, underscores)"]
    if not isinstance(spec, Mapping):
        return [f"{where}: must be a mapping of JSON Schema keywords, got {kind_of(spec)}"]
    keys = spec.keys()
    problems = (
        []
        if keys <= KEYWORDS  # set operations first: a thousand actions' properties are valid
        else [
            f"{where}.{key}: unknown keyword (not JSON Schema Draft 7, nor required/secret)"
            for key in spec
            if key not in KEYWORDS
        ]
    )
    if keys & INLINE_KEYS:
        problems += [
            f"{where}.{key}: must be true or false, got {kind_of(spec[key])} {spec[key]!r}"
            for key in _INLINE_ORDER
            if key in spec and not isinstance(spec[key], bool)
        ]
    if keys & _ANNOTATIONS.keys():
        problems += [
            f"{where}.{key}: must be {kind_of(kind())}, got {kind_of(spec[key])}"
            for key, kind in _ANNOTATIONS.items()
            if key in spec and not isinstance(spec[key], kind)
        ]
    # The meta-schema accepts any default and only types the annotations (checked above), so
    # the check runs on the rest: property shapes repeat across actions, and its result is cached.
    shape = {key: value for key, value in spec.items() if key not in _NOT_SHAPE}
    try:
        canonical = _canonical(shape)
        default = _canonical(spec["default"]) if "default" in spec else None
    except (TypeError, ValueError) as error:
        return [*problems, f"{where}: not a JSON value ({error})"]
    schema_problems = _schema_problems(canonical)
    problems += [f"{where}{problem}" for problem in schema_problems]
    if default is not None and not schema_problems and not _plainly_valid(shape, spec["default"]):
        messages = (
            _default_problems(canonical, default)
            if len(default) <= _CACHED_DEFAULT_LENGTH
            else _validate_default(canonical, default)
        )
        problems += [f"{where}.default: {message}" for message in messages]
    return problems


_CACHED_DEFAULT_LENGTH = 256


def _validate_default(canonical: str, default: str) -> tuple[str, ...]:
    """What is wrong with the default ``default`` (canonical JSON) of property ``canonical``."""
    return tuple(
        error.message for error in _shape_validator(canonical).iter_errors(json.loads(default))
    )


_default_problems = lru_cache(maxsize=4096)(_validate_default)
""":func:`_validate_default` once per (property, short default): both repeat across actions."""


_PLAIN_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "boolean": bool,
    "object": dict,
    "array": list,
}


def _plainly_valid(shape: Mapping[str, Any], default: Any) -> bool:
    """True when ``default`` obviously satisfies a property that only names its type (the
    common ``{type: string, default: …}``), sparing a validator run; False: validate it."""
    if shape.keys() != {"type"}:
        return False
    kind = _PLAIN_TYPES.get(shape["type"]) if isinstance(shape["type"], str) else None
    return kind is not None and isinstance(default, kind)


@lru_cache(maxsize=4096)
def _shape_validator(canonical: str) -> Draft7Validator:
    """A validator of one property shape (annotations never change what validates)."""
    return Draft7Validator(json.loads(canonical))


@lru_cache(maxsize=4096)
def _schema_problems(canonical: str) -> tuple[str, ...]:
    """Meta-schema problems of one property (cached: packs repeat the same property shapes)."""
    errors = sorted(_META.iter_errors(json.loads(canonical)), key=_error_order)
    return tuple(f"{_dotted(error.absolute_path, prefix='.')}: {error.message}" for error in errors)


def _value_problems(parameters: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    problems = [
        f"{name}: required parameter is missing"
        for name, spec in parameters.items()
        if spec.get("required") is True and name not in values
    ]
    problems += [_unknown(name, parameters) for name in values if name not in parameters]
    secrets = secret_names(parameters)
    known = {name: value for name, value in values.items() if name in parameters}
    # No validator cache: building one costs about as much (~10 µs) as a cache key would.
    validator = Draft7Validator(json_schema(parameters))
    errors = sorted(validator.iter_errors(known), key=_error_order)
    problems += [_value_problem(error, secrets) for error in errors if error.absolute_path]
    return problems


def _value_problem(error: ValidationError, secrets: frozenset[str]) -> str:
    where = _dotted(error.absolute_path)
    if error.absolute_path[0] in secrets:
        return f"{where}: the value does not satisfy {error.validator}={error.validator_value!r}"
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"{where}: {message}"


def _error_order(error: ValidationError) -> tuple[str, str]:
    return (_dotted(error.absolute_path), error.message)


def _unknown(name: str, parameters: Mapping[str, Any]) -> str:
    known = ", ".join(parameters) or "none"
    return f"{name}: unknown parameter (the action takes: {known})"


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


_CANONICAL = json.JSONEncoder(sort_keys=True, allow_nan=False)


def _canonical(value: Any) -> str:
    return _CANONICAL.encode(value)


def _dotted(path: Iterable[object], prefix: str = "") -> str:
    return "".join(f"{prefix if i == 0 else '.'}{part}" for i, part in enumerate(path))
