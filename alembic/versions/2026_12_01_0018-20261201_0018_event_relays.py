"""event_relay: the execution event trigger notifies only while an API process listens

Every execution transition notified ``attune_execution_event`` for the API's streams, listened
to or not, and a notifying transaction's commit takes PostgreSQL's notification queue lock:
each claim and store of every worker waited for the others'. An API process relaying the
events now keeps a row in ``event_relay`` (``seen_at`` refreshed while it listens, the row
deleted when it stops), and the trigger sends only while a row was seen within 60 s
(``attune.store.models.relays.RELAY_TTL_S``). The payload is unchanged. SQLite: the table
only (its events come from the API process's own connections).

Revision ID: 20261201_0018
Revises: 20261201_0016
Create Date: 2026-12-01 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from attune.store.sqltypes import UTCDateTime, db_now

revision: str = "20261201_0018"
down_revision: str | None = "20261201_0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOTIFY = """pg_notify('attune_execution_event', json_build_object(
        'id', NEW.id, 'action_ref', NEW.action_ref, 'status', NEW.status,
        'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
        'worker', NEW.worker, 'exit_code', NEW.exit_code, 'error', left(NEW.error, 1000),
        'requested_by', NEW.requested_by, 'requested_at', NEW.requested_at,
        'started_at', NEW.started_at, 'finished_at', NEW.finished_at,
        'duration_ms', NEW.duration_ms
    )::text)"""

_FUNCTION = """
CREATE OR REPLACE FUNCTION attune_execution_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sent boolean;
BEGIN
    {check}sent := {notify} IS NULL;
    RETURN NULL;
END
$$
"""
_CHECK = """IF NOT EXISTS (
        SELECT 1 FROM event_relay WHERE seen_at > now() - interval '60 seconds'
    ) THEN
        RETURN NULL;
    END IF;
    """


def upgrade() -> None:
    op.create_table(
        "event_relay",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("seen_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_event_relay")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION.format(check=_CHECK, notify=_NOTIFY))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION.format(check="", notify=_NOTIFY))
    op.drop_table("event_relay")
