"""Database: the engine and session factory built from Settings (after fork, never at import)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from attune.errors import DatabaseError
from attune.settings import Settings
from attune.store.models import Base
from attune.store.prebuilt import Compiled, Prebuilt, compile_prebuilt, with_results

_T = TypeVar("_T")

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
    autocommit_sessions: sessionmaker[Session]
    # Autocommit DBAPI connections held for run(), outside the pool, each with its cursor
    # (None until made), and the compiled statements it has seen. list.pop/append are atomic:
    # each thread takes its own.
    _held: list[tuple[Any, Any]] = field(default_factory=list, repr=False)
    _compiled: dict[Prebuilt, Compiled] = field(default_factory=dict, repr=False)

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
            # No pre-ping: it costs a round trip per checkout on the hot path. A connection
            # that died is detected on use, invalidated, and the callers that must not lose
            # work (runner, heartbeat, waiter) retry. No hstore column exists: looking its type
            # up is a round trip on every process's first connection (a pack reload's too).
            engine = create_engine(url, use_native_hstore=False)
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        return cls(
            engine=engine,
            sessions=sessionmaker(engine, expire_on_commit=False),
            autocommit_sessions=sessionmaker(autocommit, expire_on_commit=False),
        )

    @functools.cached_property
    def key(self) -> str:
        """The database's URL as a string, rendered once: the key of this process's caches of
        what it last read there (actions, rules)."""
        return str(self.engine.url)

    @property
    def is_sqlite(self) -> bool:
        """True on the embedded SQLite database."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session_scope(self, *, autocommit: bool = False) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back when it raises.

        With ``autocommit`` every statement commits on its own and no BEGIN/COMMIT round
        trips are spent: for the hot path, where each statement stands alone.
        """
        session = self.autocommit_sessions() if autocommit else self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def reconnecting(self, work: Callable[[], _T]) -> _T:
        """Run ``work``; when it failed on a pooled connection that had died, run it again.

        A dead connection fails before the statement reaches the server, so repeating
        ``work`` once on a fresh connection is safe.
        """
        try:
            return work()
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            return work()

    def run(self, statement: Prebuilt, values: Mapping[str, Any]) -> list[Any]:
        """Run a prebuilt Core statement at the driver's own cost; the rows it returned.

        For the hot path: no Session, no pool checkout, no compilation per call. Each call
        commits on its own (autocommit). Values go through the columns' SQLAlchemy types as
        with ``execute``; database errors are raised as SQLAlchemy's, and a connection found
        dead is dropped and the error marked ``connection_invalidated``.
        """
        compiled, args = self._bound(statement, values)
        # A held connection keeps its cursor: a new one per call costs more than the call.
        connection, cursor = self._held.pop() if self._held else (self._hold(), None)
        try:
            if cursor is None:
                cursor = connection.cursor()
            cursor.execute(compiled.sql, args)
            rows = cursor.fetchall() if compiled.columns else []
            # The driver builds its description anew on each look: only the first run needs it.
            description = cursor.description if compiled.row is None else None
        except self.engine.dialect.loaded_dbapi.Error as exc:
            dead = self.engine.dialect.is_disconnect(exc, connection, cursor)
            if dead:  # the server went away: every connection opened before is suspect
                self._close(connection)
                self._close_held()
                self.engine.dispose()
            else:
                self._held.append((connection, None))  # its cursor may hold the failure
            raise DBAPIError.instance(
                compiled.sql,
                args,
                exc,
                self.engine.dialect.loaded_dbapi.Error,
                connection_invalidated=dead,
                dialect=self.engine.dialect,
            ) from exc
        self._held.append((connection, cursor))
        return self.shaped(statement, description, rows)

    def shaped(self, statement: Prebuilt, description: Any, rows: list[Any]) -> list[Any]:
        """The driver's ``rows`` of a prebuilt statement as :meth:`run` returns them: named
        tuples, each value through its column's SQLAlchemy type (``description``: the
        cursor's); for another runner of it."""
        compiled = self._compiled.get(statement) or self._compile(statement)
        if not compiled.columns:
            return []
        if compiled.row is None:
            compiled = with_results(self.engine.dialect, compiled, description)
            self._compiled[statement] = compiled
        assert compiled.row is not None
        results = compiled.results
        return [
            compiled.row(
                *[
                    value if process is None else process(value)
                    for value, process in zip(found, results, strict=True)
                ]
            )
            for found in rows
        ]

    def bound(self, statement: Prebuilt, values: Mapping[str, Any]) -> tuple[str, Any]:
        """The SQL of a prebuilt statement and its arguments for ``values``, as the driver takes
        them (compiled once, values through the columns' types): for another runner of it."""
        compiled, args = self._bound(statement, values)
        return compiled.sql, args

    def _bound(self, statement: Prebuilt, values: Mapping[str, Any]) -> tuple[Compiled, Any]:
        compiled = self._compiled.get(statement) or self._compile(statement)
        params = {**compiled.defaults, **values}
        for name, process in compiled.processors:
            params[name] = process(params[name])
        args = params if compiled.positions is None else [params[n] for n in compiled.positions]
        return compiled, args

    def _hold(self) -> Any:
        """A new autocommit DBAPI connection, detached from the pool (run() keeps it).

        A failure to connect is raised as SQLAlchemy's error (an ``OperationalError`` when the
        server is down or restarting), as every other database error of :meth:`run` is.
        """
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        try:
            proxied = self.engine.raw_connection()
        except dbapi_error as exc:
            raise DBAPIError.instance(
                None, None, exc, dbapi_error, dialect=self.engine.dialect
            ) from exc
        proxied.detach()
        connection = proxied.dbapi_connection
        assert connection is not None  # a fresh checkout always has one
        self.engine.dialect.set_isolation_level(connection, "AUTOCOMMIT")
        return connection

    @staticmethod
    def _close(connection: Any) -> None:
        with suppress(Exception):  # closing a connection that already died may fail too
            connection.close()

    def _compile(self, statement: Prebuilt) -> Compiled:
        compiled = compile_prebuilt(self.engine.dialect, statement)
        self._compiled[statement] = compiled
        return compiled

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
        """Close every pooled and held connection (at exit, or to start over)."""
        self._close_held()
        self.engine.dispose()

    def _close_held(self) -> None:
        while self._held:
            with suppress(IndexError):  # another thread took the last one meanwhile
                self._close(self._held.pop()[0])


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
