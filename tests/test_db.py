"""Database.run: prebuilt Core statements on held autocommit connections, on both databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, create_engine, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from attune.store.db import Database
from attune.store.models import ACTION_TABLE, EXECUTION_TABLE, Action, Execution, Pack
from tests.conftest import migrate

_EXECUTIONS = EXECUTION_TABLE
_E = _EXECUTIONS.c
_A = ACTION_TABLE.c

# Bare bindparams, as attune/executions.py builds them: their types come from the columns.
_INSERT = (
    insert(_EXECUTIONS)
    .values(
        action_ref=bindparam("action_ref"),
        parameters=bindparam("parameters"),
        result=bindparam("result"),
        status=bindparam("status"),
    )
    .returning(_E.id)
)
_SET_STDOUT = (
    update(_EXECUTIONS).where(_E.id == bindparam("execution_id")).values(stdout=bindparam("stdout"))
)
_SET_STATUS = (
    update(_EXECUTIONS).where(_E.id == bindparam("execution_id")).values(status=bindparam("status"))
)
_FINISH = (
    update(_EXECUTIONS)
    .where(_E.id == bindparam("execution_id"), _E.status == "running")
    .values(status="succeeded", result=bindparam("result"))
    .returning(_E.id, _E.result)
)
_EXECUTIONS_OF = (
    select(
        _E.id,
        _E.parameters,
        _E.result,
        _E.stdout_truncated,
        _E.requested_at,
        (_E.status == "running").label("is_running"),
    )
    .where(_E.action_ref == bindparam("ref"))
    .order_by(_E.id)
)
_ACTION = select(
    _A.ref,
    _A.enabled,
    _A.tags,
    _A.parameters,
    _A.timeout_s.label("action_timeout_s"),
    (_A.runner_type == "shell").label("is_shell"),
).where(_A.ref == bindparam("ref"))
_BACKEND_PID = select(func.pg_backend_pid().label("pid"))
_COUNT = select(func.count().label("n")).select_from(_EXECUTIONS)


def insert_execution(database: Database, action_ref: str = "core.echo", **values: Any) -> int:
    """Insert an execution through run(); its id."""
    row: dict[str, Any] = {
        "action_ref": action_ref,
        "parameters": {},
        "result": None,
        "status": "requested",
    }
    execution_id: int = database.run(_INSERT, {**row, **values})[0].id
    return execution_id


def stored(database: Database, execution_id: int) -> Execution:
    """The execution as a normal Session reads it."""
    with database.session_scope() as session:
        return session.scalars(select(Execution).where(Execution.id == execution_id)).one()


def result_is_sql_null(database: Database, execution_id: int) -> bool:
    """True when ``result`` holds SQL NULL (not the JSON value ``null``)."""
    with database.session_scope() as session:
        return bool(session.scalar(select(_E.result.is_(None)).where(_E.id == execution_id)))


def add_with_session(database: Database, *executions: Execution) -> list[int]:
    """Insert executions through a Session; their ids."""
    with database.session_scope() as session:
        session.add_all(executions)
        session.flush()
        return [execution.id for execution in executions]


def add_action(database: Database) -> None:
    """A pack ``demo`` with the shell action ``demo.echo``, through a Session."""
    with database.session_scope() as session:
        pack = Pack(ref="demo", label="Demo", version="1.0")
        session.add(pack)
        session.add(
            Action(
                pack=pack,
                ref="demo.echo",
                runner_type="shell",
                entry_point="echo.sh",
                tags=["x", "y"],
                parameters={"message": {"type": "string", "required": True}},
            )
        )


def count_executions(database: Database) -> int:
    """How many executions another pooled connection sees."""
    with database.engine.connect() as connection:
        return int(connection.scalar(_COUNT) or 0)


@pytest.fixture
def admin(postgres_url: str) -> Iterator[Engine]:
    """An autocommit engine on the test database, outside the Database under test."""
    engine = create_engine(postgres_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()


def terminate_other_backends(admin: Engine) -> int:
    """End every other backend of the test database, waiting until each has exited."""
    with admin.connect() as connection:
        ended = connection.scalars(
            text(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).all()
    assert all(ended), "a backend did not exit within 10 s"
    return len(ended)


# 1. INSERT … RETURNING


def test_an_insert_stores_what_a_session_reads_back(database: Database) -> None:
    # Given a nested parameter document, a list result and no result at all
    parameters = {"message": "hi", "nested": {"list": [1, 2.5, None, "x"], "flag": True}}
    before = datetime.now(UTC) - timedelta(minutes=5)

    # When both executions are inserted through run()
    without_result = insert_execution(database, parameters=parameters, result=None)
    with_list = insert_execution(database, result=[1, "two", {"three": 3}])

    # Then a Session reads back the JSON values, the scalar and the server defaults
    row = stored(database, without_result)
    assert row.parameters == parameters
    assert row.result is None
    assert result_is_sql_null(database, without_result)
    assert (row.stdout, row.stderr, row.stdout_truncated, row.stderr_truncated) == (
        "",
        "",
        False,
        False,
    )
    assert row.requested_at is not None
    assert row.requested_at.tzinfo is not None
    assert before < row.requested_at < datetime.now(UTC) + timedelta(minutes=5)
    assert stored(database, with_list).result == [1, "two", {"three": 3}]
    assert not result_is_sql_null(database, with_list)


def test_an_insert_returns_a_new_id_per_call(database: Database) -> None:
    # When the same prebuilt INSERT runs three times
    ids = [insert_execution(database) for _ in range(3)]

    # Then each call returned the id of its own row
    assert len(set(ids)) == 3
    assert [stored(database, execution_id).id for execution_id in ids] == ids


# 2. SELECT


def test_a_select_returns_named_rows_with_json_and_booleans_decoded(database: Database) -> None:
    # Given two executions of one action, one running, and one of another action
    running, requested = add_with_session(
        database,
        Execution(action_ref="core.echo", status="running", parameters={"a": {"b": [1, 2]}}),
        Execution(action_ref="core.echo", result=["r"], stdout_truncated=True),
    )
    add_with_session(database, Execution(action_ref="core.other"))

    # When they are selected through run()
    rows = database.run(_EXECUTIONS_OF, {"ref": "core.echo"})

    # Then each row has its values under the column keys and labels, decoded
    assert [row.id for row in rows] == [running, requested]
    assert rows[0].parameters == {"a": {"b": [1, 2]}}
    assert (rows[0].result, rows[1].result) == (None, ["r"])
    assert [row.is_running for row in rows] == [True, False]
    assert [row.stdout_truncated for row in rows] == [False, True]
    assert all(type(row.is_running) is bool for row in rows)
    assert all(type(row.stdout_truncated) is bool for row in rows)
    assert rows[0].requested_at == stored(database, running).requested_at
    assert rows[0].requested_at.tzinfo is not None


def test_a_select_of_an_action_decodes_its_columns(database: Database) -> None:
    # Given an action stored through a Session
    add_action(database)

    # When the runner's kind of action select runs (nothing matching first, then the action)
    missing = database.run(_ACTION, {"ref": "demo.missing"})
    rows = database.run(_ACTION, {"ref": "demo.echo"})

    # Then nothing matching is an empty list, and the action's row is decoded
    assert missing == []
    assert len(rows) == 1
    action = rows[0]
    assert action.ref == "demo.echo"
    assert action.enabled is True
    assert action.is_shell is True
    assert action.tags == ["x", "y"]
    assert action.parameters == {"message": {"type": "string", "required": True}}
    assert action.action_timeout_s is None


def test_a_select_matching_nothing_returns_an_empty_list(database: Database) -> None:
    # Given one execution
    insert_execution(database, action_ref="core.echo")

    # When a select matches no row
    rows = database.run(_EXECUTIONS_OF, {"ref": "core.nothing"})

    # Then run() returns an empty list
    assert rows == []


def test_an_unlabeled_function_column_is_named_as_sqlalchemy_names_it(database: Database) -> None:
    # Given a select of an unlabeled aggregate, which SQLAlchemy labels itself
    statement = select(func.count()).select_from(_EXECUTIONS)
    insert_execution(database)
    with database.engine.connect() as connection:
        expected = connection.execute(statement).one()

    # When it runs through run()
    rows = database.run(statement, {})

    # Then its row is named as a Session's row would be
    assert rows[0]._fields == tuple(expected._fields)
    assert rows[0] == (1,)


# 3. UPDATE


def test_an_update_without_returning_returns_nothing_and_is_committed(
    database: Database,
) -> None:
    # Given an execution
    execution_id = insert_execution(database)

    # When its stdout is updated through run(), with no commit anywhere
    rows = database.run(_SET_STDOUT, {"execution_id": execution_id, "stdout": "out\n"})

    # Then run() returns no rows, and a new session sees the change at once
    assert rows == []
    assert stored(database, execution_id).stdout == "out\n"


def test_an_update_returning_matches_nothing_then_a_row(database: Database) -> None:
    # Given an execution that is not running yet
    execution_id = insert_execution(database)

    # When the conditional update runs before and after it is running
    before = database.run(_FINISH, {"execution_id": execution_id, "result": {"ok": True}})
    database.run(_SET_STATUS, {"execution_id": execution_id, "status": "running"})
    after = database.run(_FINISH, {"execution_id": execution_id, "result": {"ok": True}})

    # Then the first matched nothing, and the second returned the row it changed
    assert before == []
    assert [(row.id, row.result) for row in after] == [(execution_id, {"ok": True})]
    assert stored(database, execution_id).status == "succeeded"


# 4. Autocommit


def test_each_call_commits_on_its_own(database: Database) -> None:
    # Given no execution
    assert count_executions(database) == 0

    # When one is inserted through run(), which keeps its connection
    execution_id = insert_execution(database)

    # Then another connection sees it at once
    with database.engine.connect() as connection:
        found = connection.scalars(select(_E.id)).all()
    assert found == [execution_id]


# 5. Expanding parameters


def test_a_statement_with_an_expanding_in_list_is_refused(database: Database) -> None:
    # Given a select with a plain-list IN, which SQLAlchemy expands per call
    statement = select(_E.id).where(_E.status.in_(["requested", "running"]))
    insert_execution(database)

    # When it is run, twice
    # Then it is refused at first use each time, and run() still works after
    for _ in range(2):
        with pytest.raises(ValueError, match="expanding"):
            database.run(statement, {})
    assert len(database.run(_EXECUTIONS_OF, {"ref": "core.echo"})) == 1


# 6. Database errors


@pytest.mark.parametrize(
    "violation",
    [{"status": "no-such-status"}, {"action_ref": None}],
    ids=["check", "not-null"],
)
def test_a_constraint_violation_raises_integrity_error_and_run_goes_on(
    database: Database, violation: dict[str, Any]
) -> None:
    # Given a database that run() has used
    first = insert_execution(database)

    # When an insert violates a constraint
    with pytest.raises(IntegrityError) as raised:
        insert_execution(database, **violation)

    # Then the error is SQLAlchemy's, on a live connection, and nothing was stored
    assert isinstance(raised.value, DBAPIError)
    assert not raised.value.connection_invalidated
    assert count_executions(database) == 1

    # And the next run() on the same Database works
    second = insert_execution(database)
    assert second != first
    assert count_executions(database) == 2


# 7. A connection the server ended (PostgreSQL)


@pytest.mark.postgres
def test_a_terminated_connection_is_reported_invalidated_then_replaced(
    pg_database: Database, admin: Engine
) -> None:
    # Given a held connection, which the server then ends
    held_pid = pg_database.run(_BACKEND_PID, {})[0].pid
    assert terminate_other_backends(admin) >= 1

    # When run() is called on it
    with pytest.raises(DBAPIError) as raised:
        pg_database.run(_BACKEND_PID, {})

    # Then the error says the connection was invalidated, and the next call gets a new one
    assert raised.value.connection_invalidated
    assert pg_database.run(_BACKEND_PID, {})[0].pid != held_pid


@pytest.mark.postgres
def test_reconnecting_succeeds_in_one_go_after_a_termination(
    pg_database: Database, admin: Engine
) -> None:
    # Given a held connection, which the server then ends
    held_pid = pg_database.run(_BACKEND_PID, {})[0].pid
    terminate_other_backends(admin)

    # When run() is called through reconnecting()
    rows = pg_database.reconnecting(lambda: pg_database.run(_BACKEND_PID, {}))

    # Then it succeeds on a fresh connection
    assert rows[0].pid != held_pid


@pytest.mark.postgres
def test_reconnecting_succeeds_when_the_pooled_connections_died_too(
    pg_database: Database, admin: Engine
) -> None:
    # Given a held connection and a Session's connection idle in the pool, which all end
    # (as when the server restarts)
    held_pid = pg_database.run(_BACKEND_PID, {})[0].pid
    with pg_database.session_scope() as session:
        session.execute(select(1))
    assert terminate_other_backends(admin) == 2

    # When run() is called through reconnecting()
    rows = pg_database.reconnecting(lambda: pg_database.run(_BACKEND_PID, {}))

    # Then it succeeds on a fresh connection
    assert rows[0].pid != held_pid


@pytest.mark.postgres
def test_a_server_that_refuses_connections_raises_operational_error() -> None:
    # Given a database whose server is down (nothing listens on its port)
    from tests.processes import free_port

    down = Database.from_url(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")

    # When run() needs a new connection, Then it raises SQLAlchemy's OperationalError, which
    # the runner retries through (not the driver's own error, which it would not)
    try:
        with pytest.raises(OperationalError):
            down.run(_BACKEND_PID, {})
    finally:
        down.dispose()


# 8. Threads


def insert_many(database: Database, start: threading.Barrier, count: int) -> list[int]:
    """Wait for the other threads, then insert ``count`` executions through run()."""
    start.wait()
    return [insert_execution(database, parameters={"i": i}) for i in range(count)]


def test_run_from_four_threads_at_once(database: Database) -> None:
    # Given four threads released together
    threads, per_thread = 4, 50
    start = threading.Barrier(threads)

    # When each inserts 50 executions through the same Database
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(insert_many, database, start, per_thread) for _ in range(threads)]
        ids = [execution_id for future in futures for execution_id in future.result()]

    # Then every call succeeded with its own row, and every row is there
    assert len(set(ids)) == threads * per_thread
    with database.session_scope() as session:
        assert set(session.scalars(select(_E.id))) == set(ids)


# 9. dispose()


@pytest.mark.postgres
def test_dispose_closes_the_held_connection_on_postgresql(
    pg_database: Database, admin: Engine
) -> None:
    # Given a held connection that holds a session-level advisory lock
    pg_database.run(select(func.pg_advisory_lock(4242).label("locked")), {})

    # When the Database is disposed
    pg_database.dispose()

    # Then the lock is released (its connection ended), and run() works on a new one
    with admin.connect() as connection:
        connection.execute(text("SET statement_timeout = '10s'"))
        connection.execute(text("SELECT pg_advisory_lock(4242)"))
    assert pg_database.run(_COUNT, {})[0].n == 0


def test_dispose_closes_the_held_connection_on_sqlite(tmp_path: Path) -> None:
    # Given a held connection on a SQLite file of its own (no other connection), in WAL mode
    database_file = tmp_path / "own.db"
    migrate(f"sqlite:///{database_file}")
    database = Database.from_url(f"sqlite:///{database_file}")
    wal = database_file.with_name(database_file.name + "-wal")
    insert_execution(database)
    assert wal.exists()

    # When the Database is disposed
    database.dispose()

    # Then the last connection to the file closed (SQLite removes the WAL file then),
    # and run() works on a new one
    assert not wal.exists()
    assert database.run(_COUNT, {})[0].n == 1
    database.dispose()
