"""Enforcement: for one event, each selected rule's verdict, recorded with its reason and trace.

Whoever records an event enforces it in the same transaction: the event, its enforcements and
their executions commit together; the caller sends the routed executions' tasks after the
commit. A rule's verdict is reached before anything of it is written (criteria, templates and
parameter validation raise nothing into the transaction), so one rule cannot spoil another's.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from attune.errors import ActionNotFoundError, ExpressionError, ParameterError
from attune.executions.batch import Prepared, prepare, record_many
from attune.executions.routing import Routed, Unroutable
from attune.expressions import Template
from attune.liveness.freshness import serving
from attune.rules import triggers
from attune.rules.criteria import Check, Criterion, evaluate
from attune.rules.events import Event
from attune.rules.spec import compile_parameters
from attune.settings import Settings
from attune.store.models import ACTION_TABLE, ENFORCEMENT_TABLE, RULE_TABLE, EnforcementStatus

_R = RULE_TABLE.c
_E = ENFORCEMENT_TABLE.c
_A = ACTION_TABLE.c


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

    @functools.cached_property
    def watch(self) -> triggers.Watch:
        """What its trigger params select of finished executions (execution-finished rules)."""
        return triggers.watch_of(self.trigger_params)

    def selects(self, event: Event) -> bool:
        """True when the rule's trigger params pick this event (its timer, its action, …)."""
        if self.trigger_type in triggers.TIMER_TYPES:
            return event.rule_id == self.id
        payload = event.payload
        if self.trigger_type == triggers.EXECUTION_FINISHED:
            return self.watch.selects(
                str(payload.get("action_ref", "")), str(payload.get("status", ""))
            )
        if self.trigger_type == triggers.WEBHOOK and "path" in payload:
            return bool(payload["path"] == self.trigger_params.get("path"))
        return True


RULE_COLUMNS = (
    _R.id,
    _R.ref,
    _R.trigger_type,
    _R.trigger_params,
    _R.criteria,
    _R.action_ref,
    _R.action_parameters,
)
"""The rule columns a :class:`RuleRow` is built from (:func:`rule_row`)."""


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


class _Action(NamedTuple):
    """An action as :func:`attune.executions.batch.prepare` reads it."""

    runner_type: str
    parameters: dict[str, Any]
    enabled: bool
    available: bool
    policy: dict[str, Any] | None
    updated_at: datetime


def selected_rules(
    session: Session, settings: Settings, trigger_type: str, actions: dict[str, Any]
) -> list[RuleRow]:
    """The enabled rules of a trigger type, each with its action as ``prepare`` reads it (put
    in ``actions`` by ref; None when it is not loaded), in one query."""
    available = serving(settings.staleness_threshold_s, _A.runner_type)
    query = (
        select(
            *RULE_COLUMNS,
            _A.ref.label("loaded_ref"),
            _A.runner_type,
            _A.parameters.label("action_schema"),
            _A.enabled.label("action_enabled"),
            available.label("available"),
            _A.policy.label("action_policy"),
            _A.updated_at.label("action_updated_at"),
        )
        .outerjoin(ACTION_TABLE, _A.ref == _R.action_ref)
        .where(_R.trigger_type == trigger_type, _R.enabled.is_(True))
    )
    rules = []
    for row in session.execute(query):
        loaded = row.loaded_ref is not None
        actions[row.action_ref] = (
            _Action(
                row.runner_type,
                row.action_schema,
                row.action_enabled,
                row.available,
                row.action_policy,
                row.action_updated_at,
            )
            if loaded
            else None
        )
        rules.append(rule_row(row))
    return rules


def rules_by_id(session: Session, ids: Sequence[int]) -> dict[int, RuleRow]:
    """The rules with these ids."""
    query = select(*RULE_COLUMNS).where(_R.id.in_(ids))
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
    """
    pairs = [(event, rule) for rule in rules if rule.selects(event)]
    return enforce_all(session, settings, pairs, depth=depth, actions=actions)


def enforce_all(
    session: Session,
    settings: Settings,
    pairs: Sequence[tuple[Event, RuleRow]],
    *,
    depth: int = -1,
    actions: dict[str, Any] | None = None,
) -> list[Enforced]:
    """Record the verdict of each (event, rule) pair in a few statements, whatever their number.

    Each verdict is reached before anything is written (criteria, templates and parameter
    validation raise nothing into the transaction), so one rule cannot spoil another's.
    ``actions`` keeps the actions read in this transaction (a timer pass reads each once).
    """
    if not pairs:
        return []
    actions = {} if actions is None else actions
    decided = [_decide(session, settings, rule, event, depth, actions) for event, rule in pairs]
    rows = [
        {"event_id": event.id, **enforcement_row(rule, verdict, prepared.row if prepared else None)}
        for (event, rule), (verdict, prepared) in zip(pairs, decided, strict=True)
    ]
    ids = session.execute(_INSERT_MANY, rows).scalars().all()
    runs = [(n, prepared) for n, (_, prepared) in enumerate(decided) if prepared is not None]
    extra = {"trigger_depth": max(depth + 1, 0)}
    requests = [(prepared, {**extra, "enforcement_id": ids[n]}) for n, prepared in runs]
    recorded = record_many(session, requests)
    if recorded:
        links = [
            {"b_id": ids[n], "b_execution_id": r.execution_id}
            for (n, _), r in zip(runs, recorded, strict=True)
        ]
        session.execute(_LINK, links)
    executions = {n: r for (n, _), r in zip(runs, recorded, strict=True)}
    return [
        enforced_of(ids[n], rule.ref, verdict, executions.get(n))
        for n, ((_, rule), (verdict, _)) in enumerate(zip(pairs, decided, strict=True))
    ]


def enforcement_row(
    rule: RuleRow, verdict: Verdict, execution: Mapping[str, Any] | None
) -> dict[str, Any]:
    """An enforcement's columns but its event's id (``execution``: the execution's row)."""
    return {
        "rule_id": rule.id,
        "rule_ref": rule.ref,
        "status": verdict.status.value,
        "reason": verdict.reason,
        "criteria_trace": [check.to_json() for check in verdict.trace],
        "parameters": execution["parameters"] if execution else {},
    }


_INSERT_MANY = insert(ENFORCEMENT_TABLE).returning(_E.id, sort_by_parameter_order=True)
_LINK = (
    update(ENFORCEMENT_TABLE)
    .where(_E.id == bindparam("b_id"))
    .values(execution_id=bindparam("b_execution_id"))
)


def enforced_of(
    enforcement_id: int, rule_ref: str, verdict: Verdict, recorded: Routed | Unroutable | None
) -> Enforced:
    """The stored enforcement, with its recorded execution if any."""
    if recorded is None:
        return Enforced(enforcement_id, rule_ref, verdict.status, verdict.reason)
    queue = recorded.queue if isinstance(recorded, Routed) else None
    execution_id = recorded.execution_id
    return Enforced(enforcement_id, rule_ref, verdict.status, verdict.reason, execution_id, queue)


def _decide(
    session: Session,
    settings: Settings,
    rule: RuleRow,
    event: Event,
    depth: int,
    actions: dict[str, Any],
) -> tuple[Verdict, Prepared | None]:
    """A rule's verdict on an event, and the validated execution when it is to run."""
    verdict, values = judge(rule, event)
    if values is None:
        return verdict, None
    if (limited := chain_limited(settings, verdict, depth)) is not None:
        return limited, None
    try:
        return verdict, prepare(session, settings, rule.action_ref, values, actions)
    except ActionNotFoundError as error:
        return Verdict(EnforcementStatus.ACTION_MISSING, str(error), verdict.trace, {}), None
    except ParameterError as error:
        reason = "; ".join(error.problems)
        return Verdict(EnforcementStatus.PARAMS_INVALID, reason, verdict.trace, {}), None


def chain_limited(settings: Settings, verdict: Verdict, depth: int) -> Verdict | None:
    """The ``chain_limit`` verdict when a follow-up of trigger depth ``depth`` goes too deep."""
    if depth + 1 <= settings.max_trigger_depth:
        return None
    limit = settings.max_trigger_depth
    reason = f"trigger depth {depth + 1} exceeds ATTUNE_MAX_TRIGGER_DEPTH ({limit})"
    return Verdict(EnforcementStatus.CHAIN_LIMIT, reason, verdict.trace, {})
