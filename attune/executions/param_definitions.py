"""Parameter definitions: the checks of an action's ``parameters`` map as written, when a pack
is loaded (names, inline booleans, Draft 7 keywords and meta-schema, defaults valid against their
own property).

Property shapes repeat across actions, so the meta-schema check and short defaults' checks are
cached by the property's canonical JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jsonschema import Draft7Validator

from attune.executions.params import INLINE_KEYS, dotted, error_order
from attune.packs.documents import kind_of

NAME_REGEX = "^[A-Za-z_][A-Za-z0-9_]*$"
"""A parameter name: an identifier, so it reads the same in JSON, YAML and dotenv documents."""

KEYWORDS = frozenset(Draft7Validator.META_SCHEMA["properties"]) | INLINE_KEYS
"""Keys a property may use: Draft 7 keywords plus the inline ones (anything else is a typo)."""

_NAME = re.compile(NAME_REGEX)
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
    errors = sorted(_META.iter_errors(json.loads(canonical)), key=error_order)
    return tuple(f"{dotted(error.absolute_path, prefix='.')}: {error.message}" for error in errors)


_CANONICAL = json.JSONEncoder(sort_keys=True, allow_nan=False)


def _canonical(value: Any) -> str:
    return _CANONICAL.encode(value)
