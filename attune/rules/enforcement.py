"""Enforcement: for one event, each selected rule's verdict, recorded with its reason and trace.

Whoever records an event enforces it in the same transaction: the event, its enforcements and
their executions commit together; the caller sends the routed executions' tasks after the
commit. A rule's verdict is reached before anything of it is written (criteria, templates and
parameter validation raise nothing into the transaction), so one rule cannot spoil another's.
"""

from __future__ import annotations

import fnmatch
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from attune.errors import ActionNotFoundError, ExpressionError, ParameterError
from attune.executions.scheduler import Routed, prepare, record
from attune.expressions import Template
from attune.rules import triggers
from attune.rules.criteria import Check, Criterion, evaluate
from attune.rules.events import Event
from attune.rules.spec import compile_parameters
from attune.settings import Settings
from attune.store.models import ENFORCEMENT_TABLE, RULE_TABLE, EnforcementStatus

_R = RULE_TABLE.c
_E = ENFORCEMENT_TABLE.c


@dataclass(frozen=True)
class RuleRow:
    """A loaded rule as enforcement needs it."""

    id: int
    ref: str
    trigger_type: str
    trigger_params: Mapping[str, Any]
    criteria: tuple[Criterion, ...]
    action_ref: str
    action_parameters: Mapping[str, Any]

    def selects(self, event: Event) -> bool:
        """True when the rule's trigger params pick this event (its timer, its action, …)."""
        if self.trigger_type in triggers.TIMER_TYPES:
            return event.rule_id == self.id
        payload = event.payload
        if self.trigger_type == triggers.EXECUTION_FINISHED:
            pattern = str(self.trigger_params.get("action", "*"))
            statuses = self.trigger_params.get("status")
            return fnmatch.fnmatchcase(str(payload.get("action_ref", "")), pattern) and (
                statuses is None or payload.get("status") in statuses
            )
        if self.trigger_type == triggers.WEBHOOK and "path" in payload:
            return bool(payload["path"] == self.trigger_params.get("path"))
        return True


_RULE_COLUMNS = (
    _R.id,
    _R.ref,
    _R.trigger_type,
    _R.trigger_params,
    _R.criteria,
    _R.action_ref,
    _R.action_parameters,
)


def rule_row(row: Any) -> RuleRow:
    """A :class:`RuleRow` from a row of the rule columns."""
    criteria = tuple(Criterion(c["key"], c["op"], c.get("value")) for c in row.criteria)
    return RuleRow(
        id=row.id,
        ref=row.ref,
        trigger_type=row.trigger_type,
        trigger_params=row.trigger_params,
        criteria=criteria,
        action_ref=row.action_ref,
        action_parameters=row.action_parameters,
    )


def enabled_rules(session: Session, trigger_type: str) -> list[RuleRow]:
    """The enabled rules of a trigger type (one indexed query)."""
    query = select(*_RULE_COLUMNS).where(_R.trigger_type == trigger_type, _R.enabled.is_(True))
    return [rule_row(row) for row in session.execute(query)]


def rules_by_id(session: Session, ids: Sequence[int]) -> dict[int, RuleRow]:
    """The rules with these ids."""
    query = select(*_RULE_COLUMNS).where(_R.id.in_(ids))
    return {row.id: rule_row(row) for row in session.execute(query)}


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


@dataclass(frozen=True)
class Enforced:
    """One stored enforcement: its status and, when scheduled, its execution."""

    enforcement_id: int
    rule_ref: str
    status: EnforcementStatus
    reason: str
    execution_id: int | None = None
    queue: str | None = None


def enforce(
    session: Session,
    settings: Settings,
    event: Event,
    rules: Sequence[RuleRow],
    *,
    depth: int = -1,
    actions: dict[str, Any] | None = None,
) -> list[Enforced]:
    """Record the verdict of each rule that selects ``event`` (an execution per match).

    ``depth`` is the trigger depth of the execution that finished (execution-finished events):
    a follow-up gets ``depth + 1`` and past ``settings.max_trigger_depth`` it is ``chain_limit``.
    ``actions`` keeps the actions read in this transaction (a timer pass reads each once).
    """
    actions = {} if actions is None else actions
    return [
        _enforce_one(session, settings, event, rule, depth, actions)
        for rule in rules
        if rule.selects(event)
    ]


def _enforce_one(
    session: Session,
    settings: Settings,
    event: Event,
    rule: RuleRow,
    depth: int,
    actions: dict[str, Any],
) -> Enforced:
    verdict, values = judge(rule, event)
    prepared = None
    if values is not None and depth + 1 > settings.max_trigger_depth:
        reason = (
            f"trigger depth {depth + 1} exceeds ATTUNE_MAX_TRIGGER_DEPTH"
            f" ({settings.max_trigger_depth})"
        )
        verdict = Verdict(EnforcementStatus.CHAIN_LIMIT, reason, verdict.trace, {})
    elif values is not None:
        try:
            prepared = prepare(session, settings, rule.action_ref, values, actions)
        except ActionNotFoundError as error:
            verdict = Verdict(EnforcementStatus.ACTION_MISSING, str(error), verdict.trace, {})
        except ParameterError as error:
            reason = "; ".join(error.problems)
            verdict = Verdict(EnforcementStatus.PARAMS_INVALID, reason, verdict.trace, {})
    enforcement_id = session.execute(
        ENFORCEMENT_TABLE.insert()
        .values(
            event_id=event.id,
            rule_id=rule.id,
            rule_ref=rule.ref,
            status=verdict.status.value,
            reason=verdict.reason,
            criteria_trace=[check.to_json() for check in verdict.trace],
            parameters=prepared.row["parameters"] if prepared else {},
        )
        .returning(_E.id)
    ).scalar_one()
    if prepared is None:
        return Enforced(enforcement_id, rule.ref, verdict.status, verdict.reason)
    recorded = record(
        session, prepared, enforcement_id=enforcement_id, trigger_depth=max(depth + 1, 0)
    )
    session.execute(
        update(ENFORCEMENT_TABLE)
        .where(_E.id == enforcement_id)
        .values(execution_id=recorded.execution_id)
    )
    queue = recorded.queue if isinstance(recorded, Routed) else None
    return Enforced(
        enforcement_id, rule.ref, verdict.status, verdict.reason, recorded.execution_id, queue
    )
