"""alembic environment: the URL comes from attune's Settings unless the caller passed one."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate the database at the given connection, the -x url, or ATTUNE_DATABASE_URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    database = Database.from_url(url) if url else Database.from_settings(Settings.from_env())
    try:
        with database.engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        database.dispose()


if context.is_offline_mode():
    raise SystemExit("attune migrations run online only: set ATTUNE_DATABASE_URL and migrate")
run_migrations_online()
