"""The rule tester: what a rule would do with a payload, creating nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from attune.errors import ParameterError
from attune.executions.params import mask, resolve
from attune.rules.catalog import find_rule
from attune.rules.criteria import Check
from attune.rules.events import Event
from attune.rules.selection import rules_by_id
from attune.rules.verdicts import judge
from attune.store.models import Action, EnforcementStatus


@dataclass(frozen=True)
class Trial:
    """The tester's verdict: each criterion's check, the rendered parameters (masked), and the
    status the rule would be enforced with, with its reason."""

    status: EnforcementStatus
    reason: str
    checks: tuple[Check, ...]
    parameters: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "status": self.status.value,
            "reason": self.reason,
            "criteria": [check.to_json() for check in self.checks],
            "parameters": dict(self.parameters),
        }


def trial(session: Session, ref: str, payload: Mapping[str, Any]) -> Trial:
    """Judge ``payload`` as rule ``ref``'s trigger would deliver it; nothing is written."""
    rule = rules_by_id(session, [find_rule(session, ref).rule.id]).popitem()[1]
    event = Event(id=0, type=rule.trigger_type, payload=payload, source="test")
    verdict, values = judge(rule, event)
    if values is None:
        return Trial(verdict.status, verdict.reason, verdict.trace, {})
    schema = session.scalar(select(Action.parameters).where(Action.ref == rule.action_ref))
    if schema is None:
        reason = f"action {rule.action_ref!r}: no such action is loaded"
        return Trial(EnforcementStatus.ACTION_MISSING, reason, verdict.trace, values)
    try:
        resolved = resolve(rule.action_ref, schema, values)
    except ParameterError as error:
        reason = "; ".join(error.problems)
        return Trial(EnforcementStatus.PARAMS_INVALID, reason, verdict.trace, mask(schema, values))
    return Trial(EnforcementStatus.SCHEDULED, "", verdict.trace, mask(schema, resolved))
