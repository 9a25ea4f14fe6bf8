"""Rule files (``rules/<name>.yaml`` of a pack) read and validated into :class:`RuleSpec` values.

Everything that can be checked without the database is checked here, each problem naming its
file and field: closed keys, the trigger type and its params, cron expression, timezone,
operators, regexes, templates and their names. The action's existence and its static
parameters are checked when the pack is written (:mod:`attune.rules.upsert`).
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attune.errors import DocumentError, ExpressionError
from attune.expressions import Template, compile_value
from attune.packs.documents import kind_of, read_mapping
from attune.packs.fields import Fields
from attune.rules.criteria import Criterion, criterion_problems
from attune.rules.triggers import TRIGGER_TYPES
from attune.store.models import ACTION_REF_REGEX

RULE_KEYS = frozenset({"ref", "description", "enabled", "trigger", "misfire", "criteria", "action"})
"""The keys a rule file may have."""

TEMPLATE_ROOTS = ("trigger", "event", "rule")
"""The names a rule's parameter templates may use."""

DEFAULT_GRACE_S = 60.0
"""A tick at most this late is on time (the default ``misfire.grace_s``)."""

MAX_CATCHUP = 100
"""At most this many ticks fire (``all``) or are recorded missed in one pass for one rule."""

_REF = re.compile(ACTION_REF_REGEX)
_SUFFIXES = (".yaml", ".yml")


class MisfirePolicy(enum.StrEnum):
    """What a timer does with ticks it was too late for (more than ``grace_s``)."""

    ONCE = "once"
    SKIP = "skip"
    ALL = "all"


@dataclass(frozen=True)
class RuleSpec:
    """A validated rule file: the values of one ``rule`` row."""

    ref: str
    trigger_type: str
    action_ref: str
    source: Path
    description: str = ""
    enabled: bool = True
    trigger_params: Mapping[str, Any] = field(default_factory=dict)
    misfire_policy: str = MisfirePolicy.ONCE
    misfire_grace_s: float = DEFAULT_GRACE_S
    criteria: tuple[Criterion, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def params_hash(self) -> str:
        """A digest of the trigger (type and params): a timer's cursor survives while it holds."""
        return trigger_hash(self.trigger_type, self.trigger_params)

    def templates(self) -> dict[str, Template]:
        """The action parameters, compiled (they were checked when the file was read)."""
        return compile_parameters(self.parameters)

    def columns(self) -> dict[str, Any]:
        """The ``rule`` columns this spec sets (all but ids, pack_id and timestamps)."""
        return {
            "ref": self.ref,
            "description": self.description,
            "enabled": self.enabled,
            "trigger_type": self.trigger_type,
            "trigger_params": dict(self.trigger_params),
            "params_hash": self.params_hash,
            "misfire_policy": self.misfire_policy,
            "misfire_grace_s": self.misfire_grace_s,
            "criteria": [criterion.to_json() for criterion in self.criteria],
            "action_ref": self.action_ref,
            "action_parameters": dict(self.parameters),
            "file": str(self.source),
        }


def compile_parameters(parameters: Mapping[str, Any]) -> dict[str, Template]:
    """A rule's action parameters compiled, each named ``action.parameters.<name>``; raises
    :class:`~attune.errors.ExpressionError` for the first that does not compile."""
    return {
        name: compile_value(value, TEMPLATE_ROOTS, f"action.parameters.{name}")
        for name, value in parameters.items()
    }


def trigger_hash(trigger_type: str, params: Mapping[str, Any]) -> str:
    """A digest of a trigger's type and params (a timer's cursor is kept while it is equal)."""
    text = json.dumps([trigger_type, params], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


RULE_COLUMNS = tuple(RuleSpec("", "", "", source=Path()).columns())
"""The ``rule`` columns a spec sets."""


def read_rules(pack_dir: Path, problems: list[str]) -> tuple[RuleSpec, ...]:
    """The rules of the pack in ``pack_dir`` (``rules/*.yaml``); each bad one adds problems."""
    rules_dir = pack_dir / "rules"
    if not rules_dir.exists():
        return ()
    if not rules_dir.is_dir():
        problems.append(f"{rules_dir}: must be a directory")
        return ()
    specs: list[RuleSpec] = []
    first_file: dict[str, Path] = {}
    for name in sorted(name for name in os.listdir(rules_dir) if name.endswith(_SUFFIXES)):
        path = rules_dir / name
        spec = read_rule(path, pack_dir.name, problems)
        if spec is None:
            continue
        if spec.ref in first_file:
            first = first_file[spec.ref]
            problems.append(f"{path}: ref: {spec.ref!r} is already defined in {first}")
            continue
        first_file[spec.ref] = path
        specs.append(spec)
    return tuple(specs)


def read_rule(path: Path, pack: str, problems: list[str]) -> RuleSpec | None:
    """The rule in file ``path`` of pack ``pack``, or None after adding its problems."""
    try:
        document = read_mapping(path)
    except DocumentError as error:
        problems.append(str(error))
        return None
    fields = Fields(path, document, RULE_KEYS, problems)
    ref = fields.text("ref", required=True)
    if ref and not _REF.fullmatch(ref):
        fields.problem("ref", f"{ref!r} is not <pack>.<name> in lowercase ({ACTION_REF_REGEX})")
    elif ref and ref.partition(".")[0] != pack:
        fields.problem("ref", f"{ref!r} must start with the pack's ref: {pack}.<name>")
    trigger_type, trigger_params = _trigger(fields, document.get("trigger"))
    is_timer = trigger_type in TRIGGER_TYPES and TRIGGER_TYPES[trigger_type].is_timer
    policy, grace_s = _misfire(fields, document.get("misfire"), is_timer)
    criteria = _criteria(fields, document.get("criteria"))
    action_ref, parameters = _action(fields, document.get("action"))
    spec = RuleSpec(
        ref=ref,
        trigger_type=trigger_type,
        action_ref=action_ref,
        source=path,
        description=fields.text("description"),
        enabled=fields.flag("enabled", default=True),
        trigger_params=trigger_params,
        misfire_policy=policy,
        misfire_grace_s=grace_s,
        criteria=criteria,
        parameters=parameters,
    )
    return None if fields.failed else spec


def _closed(fields: Fields, where: str, value: Any, allowed: set[str], required: set[str]) -> bool:
    if not isinstance(value, Mapping):
        fields.problem(where, f"must be a mapping, got {kind_of(value)}")
        return False
    ok = True
    for key in sorted(set(value) - allowed):
        fields.problem(f"{where}.{key}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
        ok = False
    for key in sorted(required - set(value)):
        fields.problem(f"{where}.{key}", "missing (required)")
        ok = False
    return ok


def _trigger(fields: Fields, value: Any) -> tuple[str, dict[str, Any]]:
    if value is None:
        fields.problem("trigger", "missing (required)")
        return "", {}
    if not _closed(fields, "trigger", value, {"type", "params"}, {"type"}):
        return "", {}
    kind, params = value["type"], value.get("params") or {}
    if kind not in TRIGGER_TYPES:
        known = ", ".join(sorted(TRIGGER_TYPES))
        fields.problem("trigger.type", f"{kind!r} is not a trigger type; known: {known}")
        return "", {}
    if not isinstance(params, Mapping):
        fields.problem("trigger.params", f"must be a mapping, got {kind_of(params)}")
        return kind, {}
    for problem in TRIGGER_TYPES[kind].param_problems(params):
        fields.problem("trigger.params", problem)
    return kind, dict(params)


def _misfire(fields: Fields, value: Any, is_timer: bool) -> tuple[str, float]:
    if value is None:
        return MisfirePolicy.ONCE, DEFAULT_GRACE_S
    if not is_timer:
        fields.problem("misfire", "only timer triggers have a misfire policy")
        return MisfirePolicy.ONCE, DEFAULT_GRACE_S
    if not _closed(fields, "misfire", value, {"policy", "grace_s"}, set()):
        return MisfirePolicy.ONCE, DEFAULT_GRACE_S
    policy = value.get("policy", MisfirePolicy.ONCE)
    if policy not in set(MisfirePolicy):
        allowed = ", ".join(MisfirePolicy)
        fields.problem("misfire.policy", f"{policy!r} is not one of {allowed}")
    grace_s = value.get("grace_s", DEFAULT_GRACE_S)
    if isinstance(grace_s, bool) or not isinstance(grace_s, int | float) or grace_s < 0:
        fields.problem("misfire.grace_s", f"must be a number of seconds ≥ 0, got {grace_s!r}")
        grace_s = DEFAULT_GRACE_S
    return str(policy), float(grace_s)


def _criteria(fields: Fields, value: Any) -> tuple[Criterion, ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        got = kind_of(value)
        fields.problem("criteria", f"must be a mapping of trigger.<path> → check, got {got}")
        return ()
    criteria = []
    for key, spec in value.items():
        problems = criterion_problems(str(key), spec)
        fields.extend(problems)
        if not problems:
            criteria.append(Criterion(str(key), spec["op"], spec.get("value")))
    return tuple(criteria)


def _action(fields: Fields, value: Any) -> tuple[str, dict[str, Any]]:
    if value is None:
        fields.problem("action", "missing (required)")
        return "", {}
    if not _closed(fields, "action", value, {"ref", "parameters"}, {"ref"}):
        return "", {}
    ref, parameters = value["ref"], value.get("parameters") or {}
    if not isinstance(ref, str) or not _REF.fullmatch(ref):
        fields.problem("action.ref", f"{ref!r} is not an action ref (<pack>.<name>)")
    if not isinstance(parameters, Mapping):
        fields.problem("action.parameters", f"must be a mapping, got {kind_of(parameters)}")
        return str(ref), {}
    for name, item in parameters.items():
        try:
            compile_value(item, TEMPLATE_ROOTS, f"action.parameters.{name}")
        except ExpressionError as error:
            fields.extend([str(error)])
    return str(ref), dict(parameters)
