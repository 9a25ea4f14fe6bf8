"""The alembic migrations: round trip and no drift from the models, on both databases."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import inspect, update
from sqlalchemy.exc import IntegrityError

from attune.store.db import Database
from attune.store.models import EXECUTION_TABLE, Base
from tests.conftest import ROOT, alembic_config
from tests.rows import add_execution


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """An empty database of its own (not the shared migrated one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/fresh.db"
        return
    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL, require_server

    require_server("PostgreSQL", "127.0.0.1", 5432)
    name = f"attune_mig_{os.getpid()}"
    admin = create_engine(f"{PG_ADMIN_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN_URL}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def alembic(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the alembic command line as a user would, against ATTUNE_DATABASE_URL=url."""
    env = {**os.environ, "ATTUNE_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def tables(url: str) -> set[str]:
    database = Database.from_url(url)
    try:
        return set(inspect(database.engine).get_table_names()) - {"alembic_version"}
    finally:
        database.dispose()


def test_upgrade_downgrade_upgrade_round_trips_and_check_is_clean(fresh_url: str) -> None:
    for step in (("upgrade", "head"), ("check",), ("downgrade", "base")):
        result = alembic(fresh_url, *step)
        assert result.returncode == 0, result.stderr
    assert tables(fresh_url) == set()

    for step in (("upgrade", "head"), ("check",)):
        result = alembic(fresh_url, *step)
        assert result.returncode == 0, result.stderr
    assert tables(fresh_url) == set(Base.metadata.tables)
    assert {
        "pack",
        "action",
        "worker",
        "execution",
        "api_key",
        "periodic_run",
        "concurrency_gate",
    } <= tables(fresh_url)


def test_check_reports_drift_when_the_schema_lags(fresh_url: str) -> None:
    database = Database.from_url(fresh_url)
    try:
        with database.engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.exec_driver_sql("DROP INDEX ix_execution_live_status_id")
    finally:
        database.dispose()

    result = alembic(fresh_url, "check")

    assert result.returncode != 0
    assert "ix_execution_live_status_id" in result.stderr + result.stdout


def test_worker_last_heartbeat_has_no_index(postgres_url: str) -> None:
    database = Database.from_url(postgres_url)
    try:
        indexes = inspect(database.engine).get_indexes("worker")
    finally:
        database.dispose()
    assert all("last_heartbeat" not in index["column_names"] for index in indexes)


@pytest.mark.parametrize("column", ["retry_of_id", "enforcement_id"])
def test_retry_and_enforcement_links_are_unique_where_set_and_index_no_other_row(
    database: Database, column: str
) -> None:
    # Given executions without the link and two that share one
    unlinked = [add_execution(database, None) for _ in range(3)]
    first = add_execution(database, None)
    with database.session_scope() as session:
        session.execute(
            update(EXECUTION_TABLE)
            .where(EXECUTION_TABLE.c.id == first)
            .values({column: unlinked[0]})
        )

    # When a second execution takes the same link, it is refused
    second = add_execution(database, None)
    with pytest.raises(IntegrityError), database.session_scope() as session:
        session.execute(
            update(EXECUTION_TABLE)
            .where(EXECUTION_TABLE.c.id == second)
            .values({column: unlinked[0]})
        )

    # Then the unique index holds the linked rows only (a status change of the others,
    # never HOT, writes no entry into it)
    index = next(
        found
        for found in inspect(database.engine).get_indexes("execution")
        if found["name"] == f"uq_execution_{column}"
    )
    dialect = database.engine.dialect.name
    where = index.get("dialect_options", {}).get(f"{dialect}_where")
    assert index["unique"]
    assert where is not None
    assert f"{column} IS NOT NULL" in str(where)
