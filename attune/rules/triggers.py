"""The built-in trigger types: their parameter schemas, payload schemas and extra checks."""

from __future__ import annotations

import fnmatch
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft7Validator

from attune.errors import TriggerError
from attune.executions import endings
from attune.rules import schedules
from attune.store.models import TERMINAL_STATUSES

INTERVAL = "core.intervaltimer"
CRON = "core.crontimer"
DATETIME = "core.datetimetimer"
EXECUTION_FINISHED = endings.EXECUTION_FINISHED
WEBHOOK = "core.webhook"

TIMER_TYPES = frozenset({INTERVAL, CRON, DATETIME})
"""The trigger types beat fires from a cursor row."""

DEFAULT_WEBHOOK_MAX_BYTES = 1_048_576
"""A webhook body's default size limit (1 MiB)."""


@dataclass(frozen=True)
class Watch:
    """What one enabled execution-finished rule's trigger params select."""

    action: str
    """The ``action`` glob (``*``: every action)."""
    statuses: frozenset[str] | None
    """The ``status`` list; None: every terminal status."""

    def selects(self, action_ref: str | None, status: str | None) -> bool:
        """True when an execution of ``action_ref`` ending ``status`` is selected (None:
        not known yet, so either may match)."""
        return (action_ref is None or fnmatch.fnmatchcase(action_ref, self.action)) and (
            status is None or self.statuses is None or status in self.statuses
        )


def watch_of(params: Any) -> Watch:
    """The :class:`Watch` of an execution-finished rule's trigger params."""
    if not isinstance(params, Mapping):
        return Watch("*", None)
    statuses = params.get("status")
    return Watch(
        str(params.get("action", "*")), None if statuses is None else frozenset(map(str, statuses))
    )


_TIMEZONE = {"type": "string", "minLength": 1}
_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class TriggerType:
    """A kind of event: what a rule's ``trigger.params`` may hold, and what its payload is."""

    ref: str
    description: str
    params_schema: Mapping[str, Any]
    payload_schema: Mapping[str, Any] = field(default_factory=lambda: dict(_OBJECT))
    check: Callable[[Mapping[str, Any]], list[str]] = lambda _params: []

    @property
    def is_timer(self) -> bool:
        """True for the types fired by beat from a schedule."""
        return self.ref in TIMER_TYPES

    def param_problems(self, params: Mapping[str, Any]) -> list[str]:
        """Every problem of ``params`` (``field: what``), schema first, then the type's checks."""
        problems = schema_problems(self.params_schema, params)
        return problems or self.check(params)

    def validate_payload(self, payload: Any) -> None:
        """Raise :class:`TriggerError` unless ``payload`` satisfies this type's payload schema."""
        problems = _problems(self._payload_validator, payload)
        if problems:
            raise TriggerError(self.ref, "payload: " + "; ".join(problems))

    @functools.cached_property
    def _payload_validator(self) -> Draft7Validator:
        """The payload schema's validator, looked up once (every emit validates a payload)."""
        return _validator(_frozen(self.payload_schema))


def schema_problems(schema: Mapping[str, Any], value: Any) -> list[str]:
    """Every way ``value`` fails the JSON Schema (Draft 7) ``schema``: ``where: what``."""
    return _problems(_validator(_frozen(schema)), value)


def _problems(validator: Draft7Validator, value: Any) -> list[str]:
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(part) for part in error.absolute_path)
        problems.append(f"{where}: {error.message}" if where else error.message)
    return problems


def _frozen(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True)


@functools.cache
def _validator(schema: str) -> Draft7Validator:
    return Draft7Validator(json.loads(schema))


def _closed(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _cron_check(params: Mapping[str, Any]) -> list[str]:
    return schedules.cron_problems(params["expression"], params.get("timezone", "UTC"))


def _finished_check(params: Mapping[str, Any]) -> list[str]:
    # The sweep's SQL matches the glob as LIKE / GLOB, which read [ ] differently.
    if set(str(params.get("action", ""))) & {"[", "]"}:
        return [f"action: {params['action']!r}: a glob of * and ? only ([ ] are not supported)"]
    return []


def _datetime_check(params: Mapping[str, Any]) -> list[str]:
    return schedules.fire_at_problems(params["fire_at"], params.get("timezone", "UTC"))


_TERMINAL = sorted(status.value for status in TERMINAL_STATUSES)

TRIGGER_TYPES: dict[str, TriggerType] = {
    kind.ref: kind
    for kind in (
        TriggerType(
            INTERVAL,
            "Fires at every multiple of the interval since the Unix epoch.",
            _closed(
                {
                    "interval": {"type": "integer", "minimum": 1},
                    "unit": {"enum": list(schedules.UNIT_SECONDS)},
                },
                ["interval"],
            ),
        ),
        TriggerType(
            CRON,
            "Fires on a 5-field cron expression in the wall-clock time of an IANA timezone.",
            _closed({"expression": {"type": "string"}, "timezone": _TIMEZONE}, ["expression"]),
            check=_cron_check,
        ),
        TriggerType(
            DATETIME,
            "Fires once, at an ISO 8601 instant (naive: in its timezone).",
            _closed({"fire_at": {"type": "string"}, "timezone": _TIMEZONE}, ["fire_at"]),
            check=_datetime_check,
        ),
        TriggerType(
            EXECUTION_FINISHED,
            "An execution became terminal (written in the same transaction).",
            _closed(
                {
                    "action": {"type": "string", "minLength": 1},
                    "status": {
                        "type": "array",
                        "items": {"enum": _TERMINAL},
                        "uniqueItems": True,
                        "minItems": 1,
                    },
                },
                [],
            ),
            check=_finished_check,
            payload_schema=_closed(
                {
                    "execution_id": {"type": "integer"},
                    "action_ref": {"type": "string"},
                    "status": {"enum": _TERMINAL},
                    "exit_code": {"type": ["integer", "null"]},
                    "parameters": _OBJECT,
                    "result": {},
                    "depth": {"type": "integer", "minimum": 0},
                },
                ["execution_id", "action_ref", "status"],
            ),
        ),
        TriggerType(
            WEBHOOK,
            "An HTTP POST to /api/v1/webhooks/<path> (the endpoint comes with the HTTP API).",
            _closed(
                {
                    "path": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._/-]*$"},
                    "secret_env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                    "payload_schema": _OBJECT,
                    "dedup_header": {"type": "string", "minLength": 1},
                    "max_bytes": {"type": "integer", "minimum": 1},
                },
                ["path"],
            ),
            payload_schema=_closed(
                {"body": {}, "headers": _OBJECT, "path": {"type": "string"}, "delivery_id": {}},
                ["body"],
            ),
            check=lambda params: webhook_schema_problems(params.get("payload_schema")),
        ),
    )
}
"""Every trigger type attune knows, by ref."""


def webhook_schema_problems(schema: Any) -> list[str]:
    """Why a webhook's ``payload_schema`` is not a valid JSON Schema (Draft 7), if it is not."""
    if schema is None:
        return []
    meta = Draft7Validator(Draft7Validator.META_SCHEMA)
    return [f"payload_schema: {error.message}" for error in meta.iter_errors(schema)]


def trigger_type(ref: str) -> TriggerType:
    """The trigger type ``ref``; raises :class:`TriggerError` naming the known ones."""
    kind = TRIGGER_TYPES.get(ref)
    if kind is None:
        raise TriggerError(ref, f"unknown trigger type; known: {', '.join(sorted(TRIGGER_TYPES))}")
    return kind
