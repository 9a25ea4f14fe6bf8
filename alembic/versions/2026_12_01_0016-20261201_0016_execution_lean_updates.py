"""lean execution transitions: unique indexes without NULLs, the stream trigger's fast path

Every status change of an execution is a non-HOT update (``status`` is indexed), so each
writes an entry into every full index of the table. ``retry_of_id`` and ``enforcement_id`` are
NULL on most rows (a first attempt, a caller's execution), yet their unique constraints indexed
every row: they become unique indexes of the rows that have one (same names, same guarantee),
two index entries fewer per transition. SQLite rebuilds the table for it, so the table's
triggers are read before and created again after.

``attune_execution_event`` sends the same payload, by assignment instead of ``PERFORM``:
PL/pgSQL evaluates a plain expression without starting an executor, which was most of the
trigger's cost per row (the sweep settles a thousand rows in one statement).

Revision ID: 20261201_0016
Revises: 20261201_0015
Create Date: 2026-12-01 15:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_0016"
down_revision: str | None = "20261201_0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNIQUE = ("retry_of_id", "enforcement_id")

_NOTIFY = """pg_notify('attune_execution_event', json_build_object(
        'id', NEW.id, 'action_ref', NEW.action_ref, 'status', NEW.status,
        'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
        'worker', NEW.worker, 'exit_code', NEW.exit_code, 'error', left(NEW.error, 1000),
        'requested_by', NEW.requested_by, 'requested_at', NEW.requested_at,
        'started_at', NEW.started_at, 'finished_at', NEW.finished_at,
        'duration_ms', NEW.duration_ms
    )::text)"""

_EVENT_FUNCTION = """
CREATE OR REPLACE FUNCTION attune_execution_event() RETURNS trigger LANGUAGE plpgsql AS $$
{declare}BEGIN
    {send};
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    _unique_where_set(partial=True)
    if postgres:
        # pg_notify returns void; testing it makes a plain expression that can be assigned.
        send = f"sent := {_NOTIFY} IS NULL"
        op.execute(_EVENT_FUNCTION.format(declare="DECLARE\n    sent boolean;\n", send=send))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_EVENT_FUNCTION.format(declare="", send=f"PERFORM {_NOTIFY}"))
    _unique_where_set(partial=False)


def _unique_where_set(*, partial: bool) -> None:
    """Make ``retry_of_id`` and ``enforcement_id`` unique where set (``partial``), or unique
    constraints over every row as before."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    triggers: list[str] = []
    if sqlite:  # the batch rebuilds the table, which drops its triggers
        found = sa.text(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'execution'"
        )
        triggers = list(op.get_bind().scalars(found))
    with op.batch_alter_table("execution") as batch:
        for column in _UNIQUE:
            name = f"uq_execution_{column}"
            if partial:
                batch.drop_constraint(name, type_="unique")
            else:
                batch.drop_index(name)
                batch.create_unique_constraint(name, [column])
    if partial:
        for column in _UNIQUE:
            where = sa.text(f"{column} IS NOT NULL")
            op.create_index(
                f"uq_execution_{column}",
                "execution",
                [column],
                unique=True,
                postgresql_where=where,
                sqlite_where=where,
            )
    for trigger in triggers:
        op.execute(trigger)
