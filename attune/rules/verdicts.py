"""Verdicts: what a rule makes of an event from its criteria and templates alone (no database),
before anything of it is written; and the ``chain_limit`` verdict of a follow-up too deep."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attune.errors import ExpressionError
from attune.expressions import Template
from attune.rules.criteria import Check, evaluate
from attune.rules.events import Event
from attune.rules.selection import RuleRow
from attune.rules.spec import compile_parameters
from attune.settings import Settings
from attune.store.models import EnforcementStatus


@functools.lru_cache(maxsize=4096)
def _templates(parameters_json: str) -> dict[str, Template]:
    """A rule's compiled parameters, once per process for each version of them."""
    return compile_parameters(json.loads(parameters_json))


@dataclass(frozen=True)
class Verdict:
    """What a rule made of an event, before anything is stored."""

    status: EnforcementStatus
    reason: str
    trace: tuple[Check, ...]
    parameters: Mapping[str, Any]


def judge(rule: RuleRow, event: Event) -> tuple[Verdict, dict[str, Any] | None]:
    """Criteria and templates alone (no database): the verdict and the rendered values."""
    checks = tuple(evaluate(rule.criteria, {"trigger": dict(event.payload)}))
    failed = [check for check in checks if not check.ok]
    if failed:
        reason = "; ".join(f"{c.key} {c.op}: {c.why}" for c in failed)
        return Verdict(EnforcementStatus.NO_MATCH, reason, checks, {}), None
    context = {"trigger": dict(event.payload), "event": event.context(), "rule": {"ref": rule.ref}}
    templates = _templates(json.dumps(rule.action_parameters, sort_keys=True))
    try:
        values = {
            name: template.render(context, f"action.parameters.{name}")
            for name, template in templates.items()
        }
    except ExpressionError as error:
        return Verdict(EnforcementStatus.RENDER_FAILED, str(error), checks, {}), None
    return Verdict(EnforcementStatus.SCHEDULED, "", checks, {}), values


def chain_limited(settings: Settings, verdict: Verdict, depth: int) -> Verdict | None:
    """The ``chain_limit`` verdict when a follow-up of trigger depth ``depth`` goes too deep."""
    if depth + 1 <= settings.max_trigger_depth:
        return None
    limit = settings.max_trigger_depth
    reason = f"trigger depth {depth + 1} exceeds ATTUNE_MAX_TRIGGER_DEPTH ({limit})"
    return Verdict(EnforcementStatus.CHAIN_LIMIT, reason, verdict.trace, {})
