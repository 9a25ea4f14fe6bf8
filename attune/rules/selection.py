"""Rule selection: the enabled rules of a trigger type, read with their actions in one query
(:func:`selected_rules`), and which of them an event selects (:meth:`RuleRow.selects`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from attune.expressions import Template
from attune.liveness.freshness import serving
from attune.rules import triggers
from attune.rules.criteria import Criterion
from attune.rules.events import Event
from attune.rules.spec import compile_parameters
from attune.settings import Settings
from attune.store.models import ACTION_TABLE, RULE_TABLE

_R = RULE_TABLE.c
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

    @functools.cached_property
    def templates(self) -> dict[str, Template]:
        """Its action parameters compiled (kept with the rule: a rule this process keeps
        between firings renders without looking its templates up again)."""
        return _compiled(json.dumps(self.action_parameters, sort_keys=True))

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


@functools.lru_cache(maxsize=4096)
def _compiled(parameters_json: str) -> dict[str, Template]:
    """A rule's compiled parameters, once per process for each version of them."""
    return compile_parameters(json.loads(parameters_json))


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
