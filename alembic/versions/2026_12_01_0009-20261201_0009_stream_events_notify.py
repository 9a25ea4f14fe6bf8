"""notify attune_execution_event and attune_worker_event on every transition (PostgreSQL)

Feeds the HTTP API's ``/stream``: one LISTEN connection per API process relays them. An
execution's event carries its list-row summary (``error`` cut to 1000 characters, so the
payload stays well under NOTIFY's 8000 bytes); a worker's carries its name, status and last
heartbeat, for a registration, a deactivation or a reactivation only (heartbeats do not
touch ``status``). The notifications go out at commit: a rolled-back change sends none.
SQLite has no notifications: there the API process installs temporary triggers of its own
(``attune/api/eventfeed.py``).

Revision ID: 20261201_0009
Revises: 20261201_0003
Create Date: 2026-12-01 10:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261201_0009"
down_revision: str | None = "20261201_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EXECUTION_FUNCTION = """
CREATE FUNCTION attune_execution_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('attune_execution_event', json_build_object(
        'id', NEW.id, 'action_ref', NEW.action_ref, 'status', NEW.status,
        'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
        'worker', NEW.worker, 'exit_code', NEW.exit_code, 'error', left(NEW.error, 1000),
        'requested_by', NEW.requested_by, 'requested_at', NEW.requested_at,
        'started_at', NEW.started_at, 'finished_at', NEW.finished_at,
        'duration_ms', NEW.duration_ms
    )::text);
    RETURN NULL;
END
$$
"""

_WORKER_FUNCTION = """
CREATE FUNCTION attune_worker_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('attune_worker_event', json_build_object(
        'name', NEW.name, 'status', NEW.status, 'last_heartbeat', NEW.last_heartbeat,
        'change', CASE
            WHEN TG_OP = 'INSERT' OR OLD.pid IS DISTINCT FROM NEW.pid THEN 'register'
            WHEN NEW.status = 'inactive' THEN 'deactivate'
            ELSE 'reactivate' END
    )::text);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_EXECUTION_FUNCTION)
    op.execute(
        "CREATE TRIGGER execution_event AFTER INSERT OR UPDATE OF status ON execution"
        " FOR EACH ROW EXECUTE FUNCTION attune_execution_event()"
    )
    op.execute(_WORKER_FUNCTION)
    op.execute(
        "CREATE TRIGGER worker_event_insert AFTER INSERT ON worker"
        " FOR EACH ROW EXECUTE FUNCTION attune_worker_event()"
    )
    op.execute(
        "CREATE TRIGGER worker_event_update AFTER UPDATE OF status, pid ON worker FOR EACH ROW"
        " WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.pid IS DISTINCT FROM NEW.pid)"
        " EXECUTE FUNCTION attune_worker_event()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER worker_event_update ON worker")
    op.execute("DROP TRIGGER worker_event_insert ON worker")
    op.execute("DROP FUNCTION attune_worker_event()")
    op.execute("DROP TRIGGER execution_event ON execution")
    op.execute("DROP FUNCTION attune_execution_event()")
