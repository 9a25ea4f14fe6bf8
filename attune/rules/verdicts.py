"""Verdicts: what a rule makes of an event from its criteria and templates alone (no database),
before anything of it is written; and the ``chain_limit`` verdict of a follow-up too deep."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attune.errors import ExpressionError
from attune.rules.criteria import Check, evaluate
from attune.rules.events import Event
from attune.rules.selection import RuleRow
from attune.settings import Settings
from attune.store.models import EnforcementStatus


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
    try:
        values = {
            name: template.render(context, f"action.parameters.{name}")
            for name, template in rule.templates.items()
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
