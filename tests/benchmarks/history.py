"""A long execution history for the benchmarks, and the query plans of the hot path over it.

:func:`fill` writes a million finished executions in one ``INSERT … SELECT generate_series``
(PostgreSQL): mostly ``succeeded``, some ``failed``, ``timeout``, ``canceled`` and
``abandoned``, over the shipped actions, by 40 workers long gone (their rows ``inactive``), a
quarter of a second apart. :func:`seq_scans` explains every statement an execution meets on its
way (insert, lookup, claim, cancel watch, store, wait's reads, the worker check, the sweep, a
cancel) and names those that read the whole execution table. (The small tables, worker and
action, are read whole where PostgreSQL finds that cheaper than an index.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from attune.executions import claims, records, routing, scheduler, supervision
from attune.liveness import freshness, registry, sweep
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import TRANSITIONS, ExecutionStatus

HISTORY_WORKERS = 40
ACTIONS = (
    "core.echo",
    "core.local",
    "core.noop",
    "core.sleep",
    "examples.list_example",
    "examples.text_stats",
)

_FILL_WORKERS = text(
    "INSERT INTO worker (name, worker_role, runtimes, queues, host, pid, status, capabilities,"
    " last_heartbeat)"
    " SELECT 'history-' || i, 'action', '[\"shell\", \"python\"]', '[\"attune.shell\"]',"
    " 'old-host', i, 'inactive', '{}', now() - interval '30 days'"
    " FROM generate_series(1, :workers) AS i"
)
_FILL_EXECUTIONS = text(
    "INSERT INTO execution (action_ref, parameters, status, worker, exit_code, stdout, stderr,"
    " error, stdout_truncated, stderr_truncated, requested_at, started_at, finished_at,"
    " duration_ms)"
    " SELECT (CAST(:actions AS text[]))[1 + i % cardinality(CAST(:actions AS text[]))],"
    " jsonb_build_object('message', 'm' || i),"
    " s.status, 'history-' || (1 + i % CAST(:workers AS integer)),"
    " CASE s.status WHEN 'succeeded' THEN 0 WHEN 'failed' THEN 1 END,"
    " CASE WHEN s.status = 'succeeded' THEN 'line ' || i || E'\\n' ELSE '' END,"
    " CASE WHEN s.status = 'failed' THEN 'error on line 3' ELSE '' END,"
    " CASE s.status WHEN 'failed' THEN 'exit code 1' WHEN 'timeout' THEN 'timed out after 60 s'"
    " WHEN 'canceled' THEN 'canceled' WHEN 'abandoned' THEN 'worker history stopped' END,"
    " false, false, at, at + interval '5 ms', at + interval '25 ms', 20"
    " FROM generate_series(1, CAST(:count AS integer)) AS i,"
    " LATERAL (SELECT now() - make_interval(secs => (CAST(:count AS integer) - i) * 0.25 + 60)"
    " AS at) AS t,"
    " LATERAL (SELECT CASE WHEN i % 100 < 88 THEN 'succeeded' WHEN i % 100 < 95 THEN 'failed'"
    " WHEN i % 100 < 97 THEN 'timeout' WHEN i % 100 < 99 THEN 'canceled' ELSE 'abandoned' END"
    " AS status) AS s"
)


def fill(database: Database, count: int) -> None:
    """Add ``count`` finished executions and the workers that ran them, then VACUUM ANALYZE."""
    with database.engine.begin() as connection:
        connection.execute(_FILL_WORKERS, {"workers": HISTORY_WORKERS})
        connection.execute(
            _FILL_EXECUTIONS,
            {"actions": list(ACTIONS), "workers": HISTORY_WORKERS, "count": count},
        )
    vacuum(database)


def vacuum(database: Database) -> None:
    """VACUUM ANALYZE the worker and execution tables (fresh statistics, no autovacuum pending)."""
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE worker"))
        connection.execute(text("VACUUM ANALYZE execution"))


class _Explained(Exception):  # noqa: N818 - a signal, not an error
    """Raised from the cursor hook once a statement is explained, so that it never runs."""


def explain(database: Database, call: Callable[[Session], object]) -> list[str]:
    """PostgreSQL's plan of the first statement ``call`` sends, exactly as SQLAlchemy sends it.

    Prebuilt statements that :meth:`Database.run` sends through the driver compile to the same
    SQL through a Session, so they are explained that way too. Nothing is executed.
    """
    plan: list[str] = []

    def hook(_conn: object, cursor: Any, sql: str, parameters: object, *_rest: object) -> None:
        cursor.execute("EXPLAIN " + sql, parameters)
        plan.extend(row[0] for row in cursor.fetchall())
        raise _Explained

    with Session(database.engine) as session:
        connection = session.connection()
        event.listen(connection, "before_cursor_execute", hook)
        try:
            call(session)
        except _Explained:
            pass
        finally:
            event.remove(connection, "before_cursor_execute", hook)
            session.rollback()
    return plan


def hot_path(settings: Settings, execution_id: int) -> dict[str, Callable[[Session], object]]:
    """Every statement an execution meets on its way, by name, as a call sending it first."""
    threshold_s = settings.staleness_threshold_s
    request = {
        "action_ref": "core.echo",
        "parameters": {},
        "secrets": None,
        "target_worker": None,
        "timeout_s": None,
        "requested_by": None,
        "policy": None,
        "max_attempts": 1,
        "gate_key": None,
        "gate_limit": None,
    }
    by_id = {"execution_id": execution_id}
    store = records._transition_statement(
        ExecutionStatus.SUCCEEDED,
        frozenset(TRANSITIONS[ExecutionStatus.SUCCEEDED]),
        ("exit_code", "stdout"),
        held=False,
    )
    cancel = records._transition_statement(
        ExecutionStatus.CANCELING, frozenset(TRANSITIONS[ExecutionStatus.CANCELING]), (), held=False
    )

    def run(statement: Any, values: dict[str, Any]) -> Callable[[Session], object]:
        return lambda session: session.execute(statement, values)

    return {
        "lookup (action, live worker)": run(routing.lookup(threshold_s), {"ref": "core.echo"}),
        "insert (action known)": run(
            scheduler._insertion(threshold_s, True),
            {**request, "updated_at": datetime.now(UTC), "no_worker": "none"},
        ),
        "insert (after a lookup)": run(scheduler._SCHEDULED, request),
        "named worker check": lambda session: freshness.unavailable_reason(
            session, settings, "shell", "bench-attune"
        ),
        "claim": run(claims._CLAIM_JOINED, {**by_id, "worker": "bench-attune", "token": 1}),
        "cancel watcher": lambda session: session.execute(
            supervision._WATCHED.where(
                supervision._EXECUTION.id.in_([execution_id, execution_id - 1])
            )
        ),
        "store": run(store, {**by_id, "held_by": None, "exit_code": 0, "stdout": "hi\n"}),
        "wait: status": run(records._STATUS, by_id),
        "wait: record": run(records._GET, by_id),
        "cancel": run(cancel, {**by_id, "held_by": None}),
        "sweep (stale, held, unpicked)": lambda session: sweep.sweep(session, settings),
        "workers list (running count)": lambda session: registry.list_workers(session, settings),
    }


def seq_scans(database: Database, settings: Settings) -> dict[str, list[str]]:
    """Explain each hot-path statement over the table as it is; the plans with a Seq Scan."""
    with database.engine.connect() as connection:
        last = connection.scalar(text("SELECT max(id) FROM execution")) or 1
    plans = {name: explain(database, call) for name, call in hot_path(settings, last).items()}
    return {
        name: plan
        for name, plan in plans.items()
        if any("Seq Scan on execution" in line for line in plan)
    }
