"""execution_event: a transaction looks for a listening relay once, not once per row

The execution event trigger looked ``event_relay`` up for every execution row it saw: the
sweep abandoning a thousand executions ran a thousand lookups (about a tenth of its time, with
no API server listening). The first row a transaction changes now looks the relay up and keeps
the answer in the transaction's setting ``attune.relay_live`` (``on`` | ``off``, gone at its
end); the trigger's WHEN skips the function for every row while it is ``off``, and while it is
``on`` the function notifies without looking again. The sweep sets it before its one statement
(``attune.liveness.sweep``). Within a transaction ``now()`` does not move, so the answer only
changes if a relay registers meanwhile, which it follows with a reset of its streams anyway.
The payload is unchanged. SQLite: nothing (it has no such trigger).

Revision ID: 20261201_0024
Revises: 20261201_0023
Create Date: 2026-12-01 19:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261201_0024"
down_revision: str | None = "20261201_0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOTIFY = """sent := pg_notify('attune_execution_event', json_build_object(
        'id', NEW.id, 'action_ref', NEW.action_ref, 'status', NEW.status,
        'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
        'worker', NEW.worker, 'exit_code', NEW.exit_code, 'error', left(NEW.error, 1000),
        'requested_by', NEW.requested_by, 'requested_at', NEW.requested_at,
        'started_at', NEW.started_at, 'finished_at', NEW.finished_at,
        'duration_ms', NEW.duration_ms
    )::text) IS NULL;"""

_ONCE = f"""
CREATE OR REPLACE FUNCTION attune_execution_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sent boolean;
    live text := current_setting('attune.relay_live', true);
BEGIN
    IF live IS NULL OR live = '' THEN
        live := CASE WHEN EXISTS (
            SELECT 1 FROM event_relay WHERE seen_at > now() - interval '60 seconds'
        ) THEN 'on' ELSE 'off' END;
        PERFORM set_config('attune.relay_live', live, true);
    END IF;
    IF live = 'off' THEN
        RETURN NULL;
    END IF;
    {_NOTIFY}
    RETURN NULL;
END
$$
"""

_EACH_ROW = f"""
CREATE OR REPLACE FUNCTION attune_execution_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sent boolean;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM event_relay WHERE seen_at > now() - interval '60 seconds'
    ) THEN
        RETURN NULL;
    END IF;
    {_NOTIFY}
    RETURN NULL;
END
$$
"""

_TRIGGER = (
    "CREATE TRIGGER execution_event AFTER INSERT OR UPDATE OF status ON execution"
    " FOR EACH ROW{when} EXECUTE FUNCTION attune_execution_event()"
)
_WHEN = " WHEN (current_setting('attune.relay_live', true) IS DISTINCT FROM 'off')"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_ONCE)
    op.execute("DROP TRIGGER execution_event ON execution")
    op.execute(_TRIGGER.format(when=_WHEN))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER execution_event ON execution")
    op.execute(_TRIGGER.format(when=""))
    op.execute(_EACH_ROW)
