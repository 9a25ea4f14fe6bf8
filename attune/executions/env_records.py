"""Environment records: one ``pack_environment`` row per host, pack and key, and the backoff.

A failed build is recorded with its error; the host then fails fast with that error until
``retry_at`` (60 s after the first failure, doubling up to 15 min), so every process of the
host sees it, until the key changes or ``attune packs prepare --force``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from attune.environments.builder import Built
from attune.environments.spec import EnvironmentSpec
from attune.errors import PackEnvironmentError
from attune.store.db import Database
from attune.store.models import (
    EnvironmentStatus,
    ExecutionEnvironment,
    PackEnvironment,
)
from attune.store.sqltypes import db_now

FIRST_BACKOFF_S = 60.0
"""How long a host fails fast after a pack's environment failed to build the first time."""

MAX_BACKOFF_S = 900.0
"""The longest a host fails fast before it tries a failed build again."""


def backoff_s(failures: int) -> float:
    """Fail-fast time after ``failures`` failed builds in a row: 60 s doubling to 15 min."""
    return min(FIRST_BACKOFF_S * 2.0 ** max(failures - 1, 0), MAX_BACKOFF_S)


@dataclass(frozen=True)
class EnvironmentRow:
    """One environment on one host, as ``attune packs envs`` shows it."""

    host: str
    pack: str
    key: str
    status: str
    error: str | None
    python: str
    installer: str
    path: str
    failures: int
    retry_at: datetime | None
    duration_ms: int | None
    size_bytes: int | None
    built_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-ready values (timestamps in ISO 8601)."""
        values = dict(self.__dict__)
        for name in ("retry_at", "built_at"):
            moment = values[name]
            values[name] = None if moment is None else moment.isoformat()
        return values


def check_backoff(database: Database, host: str, spec: EnvironmentSpec, *, force: bool) -> None:
    """Raise the recorded error while this host backs off from a failed build of ``spec``
    (unless ``force``); otherwise record that a build starts."""
    where = _where(host, spec)
    with database.session_scope() as session:
        row = session.execute(
            select(
                PackEnvironment.status,
                PackEnvironment.error,
                PackEnvironment.failures,
                PackEnvironment.retry_at,
                (PackEnvironment.retry_at > db_now()).label("backing_off"),
            ).where(*where)
        ).one_or_none()
        if (
            row is not None
            and row.status == EnvironmentStatus.FAILED
            and row.backing_off
            and not force
        ):
            raise PackEnvironmentError(
                f"{row.error}\n(failing fast after {row.failures} failed build(s) on this "
                f"host until {row.retry_at:%Y-%m-%d %H:%M:%S} UTC; once fixed, run "
                f"`attune packs prepare --force {spec.pack}`)"
            )
        _upsert(session, host, spec, status=EnvironmentStatus.BUILDING, error=None)


def record_failure(database: Database, host: str, spec: EnvironmentSpec, error: str) -> None:
    """Record a failed build; the host fails fast for :func:`backoff_s` of the failures so far."""
    with database.session_scope() as session:
        previous = session.execute(
            select(PackEnvironment.status, PackEnvironment.failures).where(*_where(host, spec))
        ).one_or_none()
        failures = 1 + (previous.failures if previous is not None else 0)
        now = session.scalar(select(db_now()))  # the database's clock, as every host reads it
        assert now is not None
        _upsert(
            session,
            host,
            spec,
            status=EnvironmentStatus.FAILED,
            error=error,
            failures=failures,
            retry_at=now + timedelta(seconds=backoff_s(failures)),
        )


def record_canceled(database: Database, host: str, spec: EnvironmentSpec) -> None:
    """Forget a build that was canceled (it has no outcome to show)."""
    with database.session_scope() as session:
        session.execute(
            delete(PackEnvironment).where(
                *_where(host, spec), PackEnvironment.status == EnvironmentStatus.BUILDING
            )
        )


def record_ready(database: Database, host: str, spec: EnvironmentSpec, built: Built) -> None:
    """Record a finished build: ready, no error, the backoff cleared."""
    with database.session_scope() as session:
        _upsert(
            session,
            host,
            spec,
            status=EnvironmentStatus.READY,
            error=None,
            failures=0,
            retry_at=None,
            duration_ms=built.duration_ms,
            size_bytes=built.size_bytes,
            built_at=db_now(),
        )


_USE_COLUMNS = ("execution_id", "host", "key", "waited", "built")
_USE = insert(ExecutionEnvironment).values({name: bindparam(name) for name in _USE_COLUMNS})
# On PostgreSQL the record commits without waiting for its WAL flush (a few ms on a busy disk,
# on the path of every run): a server crash may lose the last such records, never an
# execution's own row.
_USE_ASYNC = insert(ExecutionEnvironment).from_select(
    list(_USE_COLUMNS),
    select(
        *(bindparam(name, type_=getattr(ExecutionEnvironment, name).type) for name in _USE_COLUMNS)
    ).where(func.set_config("synchronous_commit", "off", True).is_not(None)),
)


def record_use(
    database: Database, execution_id: int, host: str, key: str, *, waited: bool, built: bool
) -> None:
    """Record the environment an execution got (or failed to get), and whether it waited."""
    values = {"execution_id": execution_id, "host": host, "key": key}
    statement = _USE if database.is_sqlite else _USE_ASYNC
    database.run(statement, {**values, "waited": waited, "built": built})


def execution_use(session: Session, execution_id: int) -> ExecutionEnvironment | None:
    """The environment recorded for an execution, if it needed one."""
    return session.get(ExecutionEnvironment, execution_id)


def use_json(use: ExecutionEnvironment) -> dict[str, Any]:
    """An execution's environment as JSON: key, host, and whether it waited for or built it."""
    return {"key": use.key, "host": use.host, "waited": use.waited, "built": use.built}


def environments(session: Session, pack: str | None = None) -> list[EnvironmentRow]:
    """Every recorded environment (of ``pack`` only, when given), by pack, host, newest first."""
    query = select(PackEnvironment).order_by(
        PackEnvironment.pack, PackEnvironment.host, PackEnvironment.updated_at.desc()
    )
    if pack is not None:
        query = query.where(PackEnvironment.pack == pack)
    return [
        EnvironmentRow(**{name: getattr(row, name) for name in EnvironmentRow.__dataclass_fields__})
        for row in session.scalars(query)
    ]


def forget(session: Session, host: str, paths: list[str]) -> None:
    """Delete this host's rows of the environments at ``paths`` (pruned)."""
    if paths:
        session.execute(
            delete(PackEnvironment).where(
                PackEnvironment.host == host, PackEnvironment.path.in_(paths)
            )
        )


def _where(host: str, spec: EnvironmentSpec) -> tuple[Any, ...]:
    return (
        PackEnvironment.host == host,
        PackEnvironment.pack == spec.pack,
        PackEnvironment.key == spec.key,
    )


def _upsert(session: Session, host: str, spec: EnvironmentSpec, **changes: Any) -> None:
    """Insert the row of (host, pack, key) or update it with ``changes``, in one statement."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    values = {
        "host": host,
        "pack": spec.pack,
        "key": spec.key,
        "python": spec.interpreter.version,
        "installer": spec.installer.label(),
        "path": str(spec.path),
        "failures": 0,
        **changes,
    }
    statement = dialect.insert(PackEnvironment).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["host", "pack", "key"],
        set_={**{name: values[name] for name in changes}, "updated_at": db_now()},
    )
    session.execute(statement)
