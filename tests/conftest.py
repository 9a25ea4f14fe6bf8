"""Shared fixtures: real PostgreSQL, Redis and SQLite databases built through the migrations.

Locally a test that needs a missing server is skipped with the reason; under ``CI=true`` the
missing server fails the run instead.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from attune.store.db import Database
from attune.store.models import Base
from tests.processes import Processes

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("ATTUNE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def server_available(host: str, port: int) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (under CI=true) when a server the test needs is down."""
    if server_available(host, port):
        return
    reason = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}, and CI=true requires it", pytrace=False)
    pytest.skip(reason)


def alembic_config() -> Config:
    """The project's alembic configuration."""
    return Config(str(ROOT / "alembic.ini"))


def migrate(url: str) -> None:
    """Build the schema at ``url`` through the alembic migrations."""
    database = Database.from_url(url)
    try:
        with database.engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        database.dispose()


def clear(database: Database) -> None:
    """Delete every row, leaving the migrated schema."""
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    with database.engine.begin() as connection:
        if database.is_sqlite:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))
        else:
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test run's own, migrated to head, dropped afterwards."""
    require_server("PostgreSQL", "127.0.0.1", 5432)
    name = f"attune_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{PG_ADMIN_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{PG_ADMIN_URL}/{name}"
    try:
        migrate(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file database migrated to head."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'attune.db'}"
    migrate(url)
    return url


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[Database]:
    """The run's PostgreSQL database, emptied after the test."""
    database = Database.from_url(postgres_url)
    try:
        yield database
    finally:
        clear(database)
        database.dispose()


@pytest.fixture
def sqlite_database(sqlite_url: str) -> Iterator[Database]:
    """The run's SQLite database, emptied after the test."""
    database = Database.from_url(sqlite_url)
    try:
        yield database
    finally:
        clear(database)
        database.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Database:
    """Each test using it runs twice: on SQLite and on PostgreSQL."""
    fixture = "sqlite_database" if request.param == "sqlite" else "pg_database"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database number (1..15) leased to this run alone, flushed before use.

    Test runs of several checkouts may share the server: each run claims a free number with
    ``SET NX`` on database 0 and gives it back at the end (the lease expires after a day).
    """
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    leases = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    number = next(
        (
            n
            for n in range(1, 16)
            if leases.set(f"attune-test:redis-db:{n}", owner, nx=True, ex=86400)
        ),
        None,
    )
    if number is None:
        leases.close()
        pytest.fail("every Redis database 1..15 is leased to another test run", pytrace=False)
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{number}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    try:
        yield url
    finally:
        leases.delete(f"attune-test:redis-db:{number}")
        leases.close()


@pytest.fixture
def processes(
    pg_database: Database, postgres_url: str, redis_url: str, tmp_path: Path
) -> Iterator[Processes]:
    """Real celery worker/beat processes on the run's PostgreSQL and Redis, killed afterwards.

    Redis is flushed first, so no message of an earlier test reaches these workers.
    """
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    fleet = Processes(database_url=postgres_url, broker_url=redis_url, log_dir=tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()
