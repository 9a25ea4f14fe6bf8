"""The run form of an action, generated from its parameter map and read back from a post.

Each parameter becomes one field: ``string`` a text input (with its pattern and lengths),
``integer``/``number`` a number input, ``boolean`` a checkbox behind a hidden ``false``,
``enum`` a select, ``array``/``object`` a JSON textarea, ``secret`` a password input. Posted
text is parsed by :func:`attune.executions.param_arguments.parse_cli_value`, as ``attune run``
parses ``name=value``, and the values are then checked by the same ``resolve`` when the
execution is scheduled; every problem is reported under the field it is about.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from attune.errors import ParameterError
from attune.executions.param_arguments import parse_cli_value
from attune.store.models import MASK

FORM_LEVEL = ""
"""The key of problems that are about no single field."""

_HTML_ATTRIBUTES = {
    "pattern": "pattern",
    "minLength": "minlength",
    "maxLength": "maxlength",
    "minimum": "min",
    "maximum": "max",
}


class PostedForm(Protocol):
    """What a posted form offers: every value sent under a name (Starlette's FormData)."""

    def getlist(self, key: str) -> list[Any]:
        """Every value posted under ``key``, in order."""
        ...


@dataclass(frozen=True)
class Field:
    """One input of a run form."""

    name: str
    widget: str  # text, integer, number, checkbox, select, json, password
    description: str
    required: bool
    choices: tuple[tuple[str, str], ...] = ()  # (posted JSON text, label) of a select
    attributes: dict[str, str] = field(default_factory=dict)


def _types(spec: Mapping[str, Any]) -> list[str]:
    declared = spec.get("type")
    return [declared] if isinstance(declared, str) else list(declared or ())


def _widget(spec: Mapping[str, Any]) -> str:
    types = _types(spec)
    if spec.get("secret") is True:
        return "password"
    if isinstance(spec.get("enum"), list):
        return "select"
    if types == ["boolean"]:
        return "checkbox"
    if types in (["integer"], ["number"]):
        return types[0]
    if types == ["string"]:
        return "text"
    return "json"


def fields(parameters: Mapping[str, Any]) -> list[Field]:
    """The fields of the run form of an action with ``parameters``, in declaration order."""
    made = []
    for name, spec in parameters.items():
        widget = _widget(spec)
        attributes = {
            html: str(spec[key])
            for key, html in _HTML_ATTRIBUTES.items()
            if key in spec and widget in ("text", "password", "integer", "number")
        }
        if widget in ("integer", "number"):
            attributes["step"] = "1" if widget == "integer" else "any"
        choices = tuple((json.dumps(choice), str(choice)) for choice in spec.get("enum", ()) or ())
        description = str(spec.get("description", ""))
        made.append(
            Field(name, widget, description, spec.get("required") is True, choices, attributes)
        )
    return made


def shown(parameters: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, str]:
    """The text each field starts with: ``values`` (else defaults); never a secret's value."""
    texts = {}
    for item in fields(parameters):
        spec = parameters[item.name]
        value = values.get(item.name, spec.get("default"))
        if value is None or item.widget == "password" or value == MASK:
            continue
        if item.widget == "select":
            texts[item.name] = json.dumps(value)
        elif item.widget == "checkbox":
            texts[item.name] = "true" if value is True else "false"
        elif item.widget == "json" or not isinstance(value, str):
            texts[item.name] = value if isinstance(value, str) else json.dumps(value)
        else:
            texts[item.name] = value
    return texts


def texts_of(form: PostedForm, parameters: Mapping[str, Any]) -> dict[str, str]:
    """What was typed into each field (secrets left out), to re-render a refused form."""
    typed = {}
    for item in fields(parameters):
        posted = [value for value in form.getlist(item.name) if isinstance(value, str)]
        if posted and item.widget != "password":
            typed[item.name] = posted[-1]
    return typed


def parse(
    ref: str, parameters: Mapping[str, Any], form: PostedForm
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The values a run form posted, and the problems per field name (both may be partial).

    An empty field is left out, so the parameter takes its default (or, for a re-run, the
    original's value; for a secret, the original's sealed value).
    """
    values: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for item in fields(parameters):
        posted = [value for value in form.getlist(item.name) if isinstance(value, str)]
        if not posted or (posted[-1] == "" and item.widget != "checkbox"):
            continue
        raw = posted[-1]  # a checked box comes after its hidden "false"
        try:
            if item.widget == "select":
                values[item.name] = _choice(ref, item, raw)
            else:
                values[item.name] = parse_cli_value(ref, parameters, item.name, raw)
        except ParameterError as error:
            problems.setdefault(item.name, []).extend(error.problems)
    return values, problems


def _choice(ref: str, item: Field, raw: str) -> Any:
    if raw not in {posted for posted, _ in item.choices}:
        raise ParameterError(ref, [f"{item.name}: not one of the offered choices"])
    return json.loads(raw)


def by_field(problems: Sequence[str], parameters: Mapping[str, Any]) -> dict[str, list[str]]:
    """Problems of a :class:`ParameterError` grouped under the parameter each one names."""
    grouped: dict[str, list[str]] = {}
    for problem in problems:
        name = problem.partition(":")[0].partition(".")[0]
        grouped.setdefault(name if name in parameters else FORM_LEVEL, []).append(problem)
    return grouped
