"""Database: the engine and session factory built from Settings (after fork, never at import)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from attune.errors import DatabaseError
from attune.models import Base
from attune.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite connection waits for another process's write lock before failing."""


def database_url(raw: str) -> URL:
    """The SQLAlchemy URL for ``raw``; a bare ``postgresql://`` gets the psycopg 3 driver."""
    url = make_url(raw)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


@dataclass(frozen=True)
class Database:
    """An engine and its session factory; create one per process, after any fork."""

    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """Connect lazily to ``settings.database_url`` (no connection is opened here)."""
        return cls.from_url(settings.database_url)

    @classmethod
    def from_url(cls, raw_url: str) -> Database:
        """Connect lazily to ``raw_url``."""
        url = database_url(raw_url)
        if url.get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        return cls(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))

    @property
    def is_sqlite(self) -> bool:
        """True on the embedded SQLite database."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back when it raises."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def require_schema(self) -> None:
        """Raise DatabaseError unless the database answers and has every table of the models."""
        where = self.engine.url.render_as_string(hide_password=True)
        try:
            with self.engine.connect() as connection:
                tables = set(inspect(connection).get_table_names())
        except SQLAlchemyError as error:
            reason = getattr(error, "orig", None) or error
            raise DatabaseError(f"cannot reach the database {where}: {reason}") from error
        missing = sorted({"alembic_version", *Base.metadata.tables} - tables)
        if missing:
            raise DatabaseError(
                f"the database {where} is not migrated (no table {', '.join(missing)}): "
                "run `make migrate` (alembic upgrade head) first"
            )

    def dispose(self) -> None:
        """Close every pooled connection (call it in a child after fork, or at exit)."""
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL lets readers (callers waiting on results) run while a worker writes.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
