"""Parameters: an action's flat StackStorm-style map as JSON Schema, validated, defaulted, masked.

An action declares its parameters as a flat map ``name → JSON-Schema property`` in which each
property may also carry the booleans ``required`` and ``secret``::

    parameters:
      url: {type: string, required: true}
      auth_token: {type: string, secret: true}
      retries: {type: integer, minimum: 0, default: 3}

:func:`json_schema` turns that map into one JSON Schema object (Draft 7), :func:`resolve` checks
caller values against it, :func:`mask` hides secrets. The map itself is checked when a pack is
loaded (:mod:`attune.executions.param_definitions`); a command-line value is converted by its
parameter's type in :mod:`attune.executions.param_arguments`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

from attune.errors import ParameterError
from attune.store.models import MASK

INLINE_KEYS = frozenset({"required", "secret"})
"""attune's own boolean keys inside a property; they are not JSON Schema and never reach it."""


def json_schema(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema object (Draft 7) that the flat map ``parameters`` describes."""
    return {
        "type": "object",
        "properties": {name: property_schema(spec) for name, spec in parameters.items()},
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


def property_schema(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A property as JSON Schema: ``spec`` without attune's inline keys."""
    return {key: value for key, value in spec.items() if key not in INLINE_KEYS}


def _value_problems(parameters: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    problems = [
        f"{name}: required parameter is missing"
        for name, spec in parameters.items()
        if spec.get("required") is True and name not in values
    ]
    problems += [unknown_problem(name, parameters) for name in values if name not in parameters]
    secrets = secret_names(parameters)
    known = {name: value for name, value in values.items() if name in parameters}
    # No validator cache: building one costs about as much (~10 µs) as a cache key would.
    validator = Draft7Validator(json_schema(parameters))
    errors = sorted(validator.iter_errors(known), key=error_order)
    problems += [_value_problem(error, secrets) for error in errors if error.absolute_path]
    return problems


def _value_problem(error: ValidationError, secrets: frozenset[str]) -> str:
    where = dotted(error.absolute_path)
    if error.absolute_path[0] in secrets:
        return f"{where}: the value does not satisfy {error.validator}={error.validator_value!r}"
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"{where}: {message}"


def error_order(error: ValidationError) -> tuple[str, str]:
    """The sort key of a validation error: where, then what (problems come in one order)."""
    return (dotted(error.absolute_path), error.message)


def unknown_problem(name: str, parameters: Mapping[str, Any]) -> str:
    """The problem of an unknown parameter ``name``, listing the ones the action takes."""
    known = ", ".join(parameters) or "none"
    return f"{name}: unknown parameter (the action takes: {known})"


def dotted(path: Iterable[object], prefix: str = "") -> str:
    """A JSON path as text: its parts joined by dots, the first after ``prefix``."""
    return "".join(f"{prefix if i == 0 else '.'}{part}" for i, part in enumerate(path))
