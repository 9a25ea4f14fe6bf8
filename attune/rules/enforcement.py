"""Enforcement: for one event, each selected rule's verdict, recorded with its reason and trace.

Whoever records an event enforces it in the same transaction: the event, its enforcements and
their executions commit together; the caller sends the routed executions' tasks after the
commit. A rule's verdict is reached before anything of it is written (criteria, templates and
parameter validation raise nothing into the transaction), so one rule cannot spoil another's.
Which rules an event concerns is :mod:`attune.rules.selection`; a verdict on criteria and
templates alone is :mod:`attune.rules.verdicts`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from attune import metrics
from attune.errors import ActionNotFoundError, ParameterError
from attune.executions import endings
from attune.executions.batch import Prepared, prepare, record_many
from attune.executions.routing import Routed, Unroutable
from attune.rules import triggers
from attune.rules.events import Event
from attune.rules.selection import RuleRow, selected_rules
from attune.rules.verdicts import Verdict, chain_limited, judge
from attune.settings import Settings
from attune.store.bulk import insert_rows, update_rows
from attune.store.models import (
    ENFORCEMENT_TABLE,
    TRIGGER_EVENT_TABLE,
    EnforcementStatus,
    EventStatus,
)

_E = ENFORCEMENT_TABLE.c
_T = TRIGGER_EVENT_TABLE.c
_IDS_PER_STATEMENT = 500  # well under SQLite's bound-parameter limit
_RECORDED = select(TRIGGER_EVENT_TABLE)


@dataclass(frozen=True)
class Enforced:
    """One stored enforcement: its status and, when scheduled, its execution."""

    enforcement_id: int
    rule_ref: str
    status: EnforcementStatus
    reason: str
    execution_id: int | None = None
    queue: str | None = None
    follow_ups: tuple[Enforced, ...] = field(default=())
    """When its execution was recorded ``failed`` at once (no live worker serves it): the
    enforcements of that execution's execution-finished event, in the same transaction."""

    def routed(self) -> list[tuple[str, int, str]]:
        """The rule, execution and queue of this enforcement and, depth first, of each
        follow-up under it, that scheduled an execution to send after the commit."""
        own = (
            []
            if self.execution_id is None or self.queue is None
            else [(self.rule_ref, self.execution_id, self.queue)]
        )
        return own + [item for up in self.follow_ups for item in up.routed()]


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
    ids = [row.id for row in insert_rows(session, ENFORCEMENT_TABLE, rows, (_E.id,), ordered=True)]
    runs = [(n, prepared) for n, (_, prepared) in enumerate(decided) if prepared is not None]
    extra = {"trigger_depth": max(depth + 1, 0)}
    requests = [(prepared, {**extra, "enforcement_id": ids[n]}) for n, prepared in runs]
    recorded = record_many(session, requests)
    if recorded:
        links = [
            {"b_id": ids[n], "b_execution_id": r.execution_id}
            for (n, _), r in zip(runs, recorded, strict=True)
        ]
        update_rows(session, ENFORCEMENT_TABLE, links, {"id": "b_id"}, _LINK)
    executions = {n: r for (n, _), r in zip(runs, recorded, strict=True)}
    return [
        _followed(session, settings, enforced_of(ids[n], rule.ref, verdict, executions.get(n)))
        for n, ((_, rule), (verdict, _)) in enumerate(zip(pairs, decided, strict=True))
    ]


def _followed(session: Session, settings: Settings, enforced: Enforced) -> Enforced:
    """``enforced`` with the follow-ups of its execution when it was recorded failed at once."""
    if enforced.execution_id is None or enforced.queue is not None:
        return enforced
    return replace(enforced, follow_ups=follow_ups(session, settings, enforced.execution_id))


def follow_ups(session: Session, settings: Settings, execution_id: int) -> tuple[Enforced, ...]:
    """The enforcements of the execution-finished event of ``execution_id``, recorded ``failed``
    at once in ``session`` (no live worker serves it: a rare path): that ending records its
    event as any other does, enforced here; the trigger depth bounds the chain."""
    event_ids = endings.record_for(session, [execution_id])
    return tuple(enforce_recorded(session, settings, event_ids)) if event_ids else ()


def enforce_recorded(
    session: Session, settings: Settings, event_ids: Sequence[int]
) -> list[Enforced]:
    """Enforce the execution-finished events SQL recorded (the sweep's, by the set) in the
    caller's transaction: the rules read once, one batch of writes per trigger depth."""
    actions: dict[str, Any] = {}
    rules = selected_rules(session, settings, triggers.EXECUTION_FINISHED, actions)
    by_depth: dict[int, list[tuple[Event, RuleRow]]] = defaultdict(list)
    fired = 0
    for start in range(0, len(event_ids), _IDS_PER_STATEMENT):
        chunk = event_ids[start : start + _IDS_PER_STATEMENT]
        for row in session.execute(_RECORDED.where(_T.id.in_(chunk))):
            event = Event(**row._asdict())
            fired += 1
            depth = int(event.payload.get("depth") or 0)
            by_depth[depth].extend((event, rule) for rule in rules if rule.selects(event))
    enforced = [
        item
        for depth, pairs in sorted(by_depth.items())
        for item in enforce_all(session, settings, pairs, depth=depth, actions=actions)
    ]
    statuses = [item.status for item in enforced]
    for n in range(fired):  # each event counted once, each enforcement once
        metrics.record_event(triggers.EXECUTION_FINISHED, EventStatus.FIRED, () if n else statuses)
    return enforced


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


_LINK = {"execution_id": "b_execution_id"}


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
