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
from tests.brokers import BROKERS, Broker, rabbitmqctl
from tests.processes import Processes

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("ATTUNE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that uses ``broker`` (through ``processes`` or a deployment) runs on each broker
    of :data:`~tests.brokers.BROKERS`, or on those its ``@pytest.mark.brokers(...)`` names."""
    if "broker" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("brokers")
        kinds = marker.args if marker else BROKERS
        metafunc.parametrize("broker", kinds, indirect=True, scope="session")


def server_available(host: str, port: int) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (under CI=true) when a server the test needs is down."""
    if not server_available(host, port):
        missing(f"{name} is not reachable at {host}:{port}")


def missing(reason: str) -> None:
    """Skip (locally) or fail (under CI=true): something the test needs is not there."""
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
    # event_relay is the live API servers' (module-scoped servers outlive a test's rows).
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name != "event_relay"]
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


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A RabbitMQ virtual host of this run's own (guest may use it), deleted afterwards."""
    require_server("RabbitMQ", RABBITMQ_HOST, RABBITMQ_PORT)
    vhost = f"attune-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        rabbitmqctl("add_vhost", vhost)
    except (OSError, RuntimeError) as exc:
        missing(f"cannot create a RabbitMQ vhost with rabbitmqctl: {exc}")
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> Broker:
    """The broker a test runs on (parametrized by ``pytest_generate_tests``)."""
    kind: str = request.param
    url_fixture = "redis_url" if kind == "redis" else "rabbitmq_url"
    return Broker(kind, request.getfixturevalue(url_fixture))


@pytest.fixture
def processes(
    pg_database: Database, postgres_url: str, broker: Broker, tmp_path: Path
) -> Iterator[Processes]:
    """Real celery worker/beat processes on the run's PostgreSQL and broker, killed afterwards.

    The broker is emptied first and afterwards, so no message of another test reaches them.
    """
    broker.reset()
    fleet = Processes(database_url=postgres_url, broker_url=broker.url, log_dir=tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()
        broker.reset(fleet.queues())
