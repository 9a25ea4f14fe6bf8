"""Firing in one statement: an emitted event, its enforcements and their executions.

On PostgreSQL, when this process knows the enabled rules of the event's type as they are in
SQL (their ids and ``updated_at``) and the actions they run, one statement of data-modifying
CTEs records the event, every enforcement and every execution, guarded: nothing is written
when a rule or an action changed since, or when the dedup key was seen, and the caller then
takes the general path (:mod:`attune.rules.emission`), which reads them again. Verdicts are
reached as on the general path (the same criteria, templates and parameter validation); a
rule whose templates name ``event`` (whose id and arrival exist only once it is stored), a
gated action, or parameters its cached schema refuses take the general path.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    null,
    select,
    true,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from attune.executions import batch, routing
from attune.executions.batch import KnownRequest
from attune.executions.queues import runtime_queue
from attune.executions.routing import Routed, Unroutable
from attune.liveness.freshness import no_worker_reason
from attune.rules import finished
from attune.rules.enforcement import Enforced, enforced_of, enforcement_row
from attune.rules.events import Event
from attune.rules.selection import RuleRow
from attune.rules.verdicts import Verdict, chain_limited, judge
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import (
    ACTION_TABLE,
    ENFORCEMENT_TABLE,
    EXECUTION_TABLE,
    RULE_TABLE,
    TRIGGER_EVENT_TABLE,
    EventStatus,
    ExecutionStatus,
)

_R = RULE_TABLE.c
_T = TRIGGER_EVENT_TABLE.c
_X = EXECUTION_TABLE.c
_SIGNED = sql_cast(_R.id, String()) + literal_column("'@'") + sql_cast(_R.updated_at, String())
SIGNATURE = (
    select(
        func.array_to_string(
            func.array_agg(postgresql.aggregate_order_by(_SIGNED, _R.id)), literal_column("','")
        )
    )
    .where(_R.trigger_type == bindparam("trigger_type"), _R.enabled.is_(True))
    .scalar_subquery()
)
"""The enabled rules of a trigger type, as ``id@updated_at`` by id: changes with any of them."""
SIGNATURE_NOW = select(func.coalesce(SIGNATURE, literal_column("''")))
"""The current signature, read before the rules it describes."""


@dataclass(frozen=True)
class KnownRules:
    """The enabled rules of one trigger type as last read here, with their signature.

    ``general`` is True when one of them names ``event`` in its templates: an event of the
    type takes the general path.
    """

    signature: str
    rules: tuple[RuleRow, ...]
    general: bool


_RULES: dict[tuple[str, str], KnownRules] = {}


def remember(
    database: Database, trigger_type: str, signature: str, rules: Sequence[RuleRow]
) -> None:
    """Keep the rules read after ``signature`` for the next firings of ``trigger_type``."""
    general = any("event" in json.dumps(rule.action_parameters) for rule in rules)
    _RULES[(database.key, trigger_type)] = KnownRules(signature, tuple(rules), general)


def read_signature(session: Session, trigger_type: str) -> str | None:
    """The signature of the type's rules now (PostgreSQL; None on SQLite, which never fires
    in one statement)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    return str(session.scalar(SIGNATURE_NOW, {"trigger_type": trigger_type}))


@dataclass(frozen=True)
class Fired:
    """What one statement recorded: the event and its enforcements."""

    event_id: int
    enforcements: tuple[Enforced, ...]


_Decided = list[tuple[RuleRow, Verdict, KnownRequest | None]]


def fire(
    database: Database,
    settings: Settings,
    trigger_type: str,
    payload: Mapping[str, Any],
    *,
    dedup_key: str | None,
    source: str,
    depth: int,
) -> Fired | None:
    """Record the event, its enforcements and executions in one statement; None when this
    process cannot (SQLite, rules or actions unknown here) or the guard wrote nothing."""
    known = _RULES.get((database.key, trigger_type))
    if known is None or known.general or database.is_sqlite:
        return None
    event = Event(id=0, type=trigger_type, payload=payload, source=source, dedup_key=dedup_key)
    decided = _decide(database, settings, known, event, depth)
    if decided is None:
        return None
    shape = tuple(request is not None for _, _, request in decided)
    params: dict[str, Any] = {
        "trigger_type": trigger_type,
        "signature": known.signature,
        "source": source,
        "dedup_key": dedup_key,
        "payload": dict(payload),
        "depth": max(depth + 1, 0),
    }
    for n, (rule, verdict, request) in enumerate(decided):
        row = enforcement_row(rule, verdict, None if request is None else request.row)
        params.update({f"e{n}_{key}": value for key, value in row.items()})
        if request is not None:
            reason = no_worker_reason(request.runner_type)
            execution = {**request.row, "updated_at": request.updated_at, "no_worker": reason}
            params.update({f"x{n}_{key}": value for key, value in execution.items()})
    statement = _statement(shape, settings.staleness_threshold_s, dedup_key is not None)
    rows = database.run(statement, params)
    if not rows:
        return None
    return Fired(rows[0].event_id, tuple(_stored(rows[0], decided)))


def _decide(
    database: Database, settings: Settings, known: KnownRules, event: Event, depth: int
) -> _Decided | None:
    """Each selecting rule's verdict and, when it runs, its request; None when a request
    needs a fresh read of its action, or when a rule watches that action failing: with no live
    worker its execution fails at once, and the general path records that ending's event."""
    decided: _Decided = []
    for rule in known.rules:
        if not rule.selects(event):
            continue
        verdict, values = judge(rule, event)
        request = None
        if values is not None and (limited := chain_limited(settings, verdict, depth)):
            verdict = limited
        elif values is not None:
            if finished.watched(database, rule.action_ref, ExecutionStatus.FAILED.value):
                return None
            request = batch.known_request(database, settings, rule.action_ref, values)
            if request is None:
                return None
        decided.append((rule, verdict, request))
    return decided


def _stored(found: Any, decided: _Decided) -> list[Enforced]:
    """The enforcements the statement returned (``found``), in the order decided."""
    enforced = []
    for n, (rule, verdict, request) in enumerate(decided):
        recorded: Routed | Unroutable | None = None
        if request is not None:
            execution_id, status = getattr(found, f"x{n}"), getattr(found, f"s{n}")
            if status == ExecutionStatus.SCHEDULED:
                recorded = Routed(execution_id, runtime_queue(request.runner_type))
            else:
                recorded = Unroutable(execution_id, no_worker_reason(request.runner_type))
        enforced.append(enforced_of(getattr(found, f"e{n}"), rule.ref, verdict, recorded))
    return enforced


def _bound(prefix: str, table: Any, names: Sequence[str]) -> list[Any]:
    return [bindparam(f"{prefix}{name}", type_=table.c[name].type) for name in names]


_DEFAULTS = {
    column.name: literal(column.default.arg, column.type)
    for column in EXECUTION_TABLE.c
    if isinstance(column.default, ScalarElementColumnDefault)
    and column.name not in {"id", "trigger_depth", *routing.ROUTED_COLUMNS}
}
"""The execution columns with a Python-side default, as constants of the statement."""
_ENFORCEMENT_COLUMNS = ("rule_id", "rule_ref", "status", "reason", "criteria_trace", "parameters")


@functools.cache
def _statement(shape: tuple[bool, ...], threshold_s: float, deduplicated: bool) -> Select[Any]:
    """The one statement for enforcements shaped ``shape`` (True: with an execution), built
    once per shape: the guard, the event, then per enforcement its row and its execution.

    Only an event with a dedup key can meet an earlier one (no timer's: no rule, no fire
    time), so only then does its insert check for a conflict.
    """
    names = [(lambda column, n=n: f"x{n}_{column}") for n, with_execution in enumerate(shape)]
    # Each action is read once, here: the executions take its columns from the guard.
    actions = {n: ACTION_TABLE.alias(f"action{n}") for n, ran in enumerate(shape) if ran}
    read = [
        column
        for n, action in actions.items()
        for column in (action.c.ref.label(f"ref{n}"), action.c.runner_type.label(f"runtime{n}"))
    ]
    guards: list[ColumnElement[bool]] = [
        func.coalesce(SIGNATURE, literal_column("''")) == bindparam("signature", type_=String()),
        *(routing.unchanged(names[n], action) for n, action in actions.items()),
    ]
    guard = select(literal_column("1").label("ok"), *read).where(*guards).cte("guard")
    recorded = postgresql.insert(TRIGGER_EVENT_TABLE).from_select(
        ["type", "source", "dedup_key", "payload", "status"],
        select(
            bindparam("trigger_type", type_=String()),
            *_bound("", TRIGGER_EVENT_TABLE, ["source", "dedup_key", "payload"]),
            literal_column(f"'{EventStatus.FIRED.value}'"),
        ).select_from(guard),
    )
    if deduplicated:
        recorded = recorded.on_conflict_do_nothing()
    event = recorded.returning(_T.id, _T.received_at).cte("event")
    outputs: list[Any] = [event.c.id.label("event_id")]
    for n, with_execution in enumerate(shape):
        ids = None
        if with_execution:
            sequence = func.pg_get_serial_sequence(
                literal_column("'execution'"), literal_column("'id'")
            )
            ids = select(func.nextval(sequence).label("id")).select_from(event).cte(f"id{n}")
        linked = ids.c.id if ids is not None else null()
        enforcement = (
            insert(ENFORCEMENT_TABLE)
            .from_select(
                ["event_id", *_ENFORCEMENT_COLUMNS, "execution_id"],
                select(
                    event.c.id, *_bound(f"e{n}_", ENFORCEMENT_TABLE, _ENFORCEMENT_COLUMNS), linked
                ).select_from(event if ids is None else event.join(ids, true())),
            )
            .returning(ENFORCEMENT_TABLE.c.id)
            .cte(f"enforcement{n}")
        )
        outputs.append(select(enforcement.c.id).scalar_subquery().label(f"e{n}"))
        if ids is None:
            continue
        values = routing.routed_values(
            threshold_s, names[n], ref=guard.c[f"ref{n}"], runner_type=guard.c[f"runtime{n}"]
        )
        execution = (
            insert(EXECUTION_TABLE)
            .from_select(
                ["id", "enforcement_id", "trigger_depth", *routing.ROUTED_COLUMNS, *_DEFAULTS],
                select(ids.c.id, enforcement.c.id, bindparam("depth"), *values)
                .add_columns(*_DEFAULTS.values())
                .select_from(ids.join(enforcement, true()).join(guard, true())),
                include_defaults=False,  # SQLAlchemy fills them for one INSERT CTE only
            )
            .returning(_X.id, _X.status)
            .cte(f"execution{n}")
        )
        outputs.append(select(execution.c.id).scalar_subquery().label(f"x{n}"))
        outputs.append(select(execution.c.status).scalar_subquery().label(f"s{n}"))
    return select(*outputs).select_from(event)
