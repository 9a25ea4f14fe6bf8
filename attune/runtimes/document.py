"""The parameter document: an action's parameters rendered as json, yaml or dotenv bytes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import yaml

from attune.errors import RuntimeLaunchError
from attune.store.models import ParameterFormat

_YAML_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def render(parameters: Mapping[str, Any], parameter_format: ParameterFormat) -> bytes:
    """The parameter document in ``parameter_format``, UTF-8, ending with one newline."""
    formatter = _FORMATTERS.get(parameter_format)
    if formatter is None:
        raise RuntimeLaunchError(f"unknown parameter format {parameter_format!r}")
    try:
        return (formatter(parameters).rstrip("\n") + "\n").encode("utf-8")
    except (TypeError, ValueError, yaml.YAMLError) as exc:
        raise RuntimeLaunchError(
            f"parameters cannot be rendered as {parameter_format}: {exc}"
        ) from exc


def _yaml(parameters: Mapping[str, Any]) -> str:
    return yaml.dump(dict(parameters), Dumper=_YAML_DUMPER, allow_unicode=True, sort_keys=False)


def _dotenv(parameters: Mapping[str, Any]) -> str:
    """Sorted ``key='value'`` lines, nested keys joined with dots."""
    return "".join(f"{key}='{_quote(value)}'\n" for key, value in sorted(_flat(parameters)))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _flat(parameters: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted key, value text)`` pairs; an empty mapping gives none."""
    for key, value in parameters.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flat(value, f"{name}.")
        elif value is None:
            yield name, ""
        elif isinstance(value, str):
            yield name, value
        else:
            yield name, _json(value)


def _quote(value: str) -> str:
    """``value`` made safe inside single quotes: each ``'`` becomes ``'\\''``."""
    return value.replace("'", "'\\''")


_FORMATTERS: dict[ParameterFormat, Callable[[Mapping[str, Any]], str]] = {
    ParameterFormat.JSON: _json,
    ParameterFormat.YAML: _yaml,
    ParameterFormat.DOTENV: _dotenv,
}
