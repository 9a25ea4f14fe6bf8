"""Execution-finished events written by SQL, for executions ended by the set.

The sweep ends executions in one statement (the dead workers' abandoned, the unpicked timed
out), a worker shutting down or restarting abandons what it held; their events are inserted
from the rows ended (``INSERT … SELECT``), not one by one, and only for the rows an enabled
execution-finished rule's trigger params select (its ``action`` glob, its ``status`` list), as
the runner's own terminal transition records them (:mod:`attune.rules.finished`); the rules
enforce them in the same transaction
(:meth:`~attune.executions.records.Finishing.enforce`). The unique (type, dedup key
``exec:<id>:<status>``) keeps it one event per execution, whoever ends it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    String,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from attune.executions.records import Finishing
from attune.store.models import (
    EXECUTION_TABLE,
    RULE_TABLE,
    TRIGGER_EVENT_TABLE,
    EventStatus,
)

EXECUTION_FINISHED = "core.execution_finished"
"""The trigger type of the event every terminal transition records."""
EVENT_SOURCE = "execution"
"""The ``source`` of an execution-finished event."""
MAX_RESULT_CHARS = 16_384
"""A finished execution's ``result`` goes into the event payload only up to this size (JSON)."""

_IDS_PER_STATEMENT = 500  # well under SQLite's bound-parameter limit
_X = EXECUTION_TABLE.c
_R = RULE_TABLE.c
ENDED_COLUMNS = (
    _X.id,
    _X.action_ref,
    _X.status,
    _X.exit_code,
    _X.parameters,
    _X.result,
    _X.trigger_depth,
)
"""What an event's payload is built from (a terminal UPDATE returns them)."""


def _selecting(dialect: str, action_ref: Any, status: Any) -> ColumnElement[bool]:
    """True when an enabled execution-finished rule's trigger params select the ended row of
    ``action_ref`` and ``status``: the ``action`` glob (``*`` and ``?``; default ``*``) and the
    ``status`` list (default: every terminal status), as
    :meth:`attune.rules.selection.RuleRow.selects` reads them."""
    params = _R.trigger_params
    if dialect == "postgresql":  # the glob as a LIKE pattern, its own % and _ escaped
        glob: ColumnElement[Any] = func.coalesce(params.op("->>")("action"), "*")
        for plain, escaped in (("\\", "\\\\"), ("%", "\\%"), ("_", "\\_"), ("*", "%"), ("?", "_")):
            glob = func.replace(glob, plain, escaped)
        action = action_ref.like(glob)
        statuses = params.op("->")("status")
        status_ok = or_(statuses.is_(None), statuses.op("?")(status))
    else:  # SQLite's GLOB is the same case-sensitive glob
        action = action_ref.op("GLOB")(func.coalesce(func.json_extract(params, "$.action"), "*"))
        listed = func.json_each(params, "$.status").table_valued("value")
        status_ok = or_(
            func.json_extract(params, "$.status").is_(None),
            status.in_(select(listed.c.value)),
        )
    return exists().where(
        _R.trigger_type == EXECUTION_FINISHED, _R.enabled.is_(True), action, status_ok
    )


def dedup_key(execution_id: int, status: str) -> str:
    """The dedup key of the event of an execution that ended ``status``."""
    return f"exec:{execution_id}:{status}"


def insert_events(dialect: str, ended: Any) -> Insert:
    """``INSERT INTO trigger_event … SELECT`` the events of the rows of ``ended`` (a CTE or
    subquery with :data:`ENDED_COLUMNS`) that a rule selects; RETURNING their ids."""
    c = ended.c
    postgres = dialect == "postgresql"
    text = sql_cast(c.result, String()) if postgres else c.result
    whole = c.result if postgres else func.json(c.result)
    cut = func.substr(text, 1, MAX_RESULT_CHARS)
    short = func.to_jsonb(cut) if postgres else func.json_quote(cut)
    result = case((func.length(text) > MAX_RESULT_CHARS, short), else_=whole)
    fields: dict[str, ColumnElement[Any]] = {
        "execution_id": c.id,
        "action_ref": c.action_ref,
        "status": c.status,
        "exit_code": c.exit_code,
        "parameters": c.parameters if postgres else func.json(c.parameters),
        "result": result,
        "depth": c.trigger_depth,
    }
    pairs = [part for key, value in fields.items() for part in (literal_column(f"'{key}'"), value)]
    payload = (func.jsonb_build_object if postgres else func.json_object)(*pairs)
    key = literal_column("'exec:'") + sql_cast(c.id, String()) + literal_column("':'") + c.status
    source = select(
        literal_column(f"'{EXECUTION_FINISHED}'"),
        literal_column(f"'{EVENT_SOURCE}'"),
        payload,
        literal_column(f"'{EventStatus.FIRED.value}'"),
        key,
    ).where(_selecting(dialect, c.action_ref, c.status))
    construct = postgresql.insert if postgres else sqlite.insert
    return (
        construct(TRIGGER_EVENT_TABLE)
        .from_select(["type", "source", "payload", "status", "dedup_key"], source)
        .on_conflict_do_nothing()
        .returning(TRIGGER_EVENT_TABLE.c.id)
    )


def recorded_ids(ended: Sequence[Any]) -> ColumnElement[Any]:
    """PostgreSQL, inside one statement: the array of the ids of the events inserted for the
    rows of the data-modifying CTEs ``ended`` (each returning :data:`ENDED_COLUMNS`)."""
    rows = union_all(*(select(*(cte.c[c.name] for c in ENDED_COLUMNS)) for cte in ended))
    recorded = insert_events("postgresql", rows.subquery("ended")).cte("events")
    return func.array(select(recorded.c.id).scalar_subquery())


def record_for(session: Session, execution_ids: Sequence[int]) -> list[int]:
    """Insert the events of these (terminal) executions from their rows, a batch at a time;
    the ids of the events inserted."""
    dialect = session.get_bind().dialect.name
    inserted: list[int] = []
    for start in range(0, len(execution_ids), _IDS_PER_STATEMENT):
        chunk = execution_ids[start : start + _IDS_PER_STATEMENT]
        ended = select(*ENDED_COLUMNS).where(_X.id.in_(chunk)).subquery("ended")
        inserted.extend(session.execute(insert_events(dialect, ended)).scalars())
    return inserted


def enforce_ended(
    session: Session, finishing: Finishing | None, execution_ids: Sequence[int]
) -> Callable[[], object] | None:
    """Record the events of these executions just ended in ``session`` and enforce them there
    (nothing without ``finishing``); what to do after the commit, if anything."""
    if finishing is None or not execution_ids:
        return None
    event_ids = record_for(session, execution_ids)
    return finishing.enforce(session, event_ids) if event_ids else None
