"""the execution_done notification carries the finished record (PostgreSQL)

A waiting caller woken by the notification then needs no SELECT of the record. A record too
big for a notification payload (PostgreSQL's limit is 8000 bytes) is sent as its id alone,
as before, and the caller reads it; so is an execution the sweep abandons (it abandons them in
bulk). The secrets column is never sent.

Revision ID: 20261128_0004
Revises: 20261128_0003
Create Date: 2026-11-28 12:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261128_0004"
down_revision: str | None = "20261128_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID_ONLY = """
CREATE OR REPLACE FUNCTION attune_execution_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('attune_execution_done', NEW.id::text);
    RETURN NULL;
END
$$
"""

_RECORD = """
CREATE OR REPLACE FUNCTION attune_execution_done() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    record text;
BEGIN
    -- The sweep abandons executions by the thousand: those go as ids, read on demand.
    IF NEW.status = 'abandoned' THEN
        PERFORM pg_notify('attune_execution_done', NEW.id::text);
        RETURN NULL;
    END IF;
    record := json_build_object(
        'id', NEW.id, 'action_ref', NEW.action_ref, 'status', NEW.status,
        'parameters', NEW.parameters, 'worker', NEW.worker, 'exit_code', NEW.exit_code,
        'stdout', NEW.stdout, 'stderr', NEW.stderr, 'result', NEW.result, 'error', NEW.error,
        'stdout_truncated', NEW.stdout_truncated, 'stderr_truncated', NEW.stderr_truncated,
        'requested_at', NEW.requested_at, 'started_at', NEW.started_at,
        'finished_at', NEW.finished_at, 'duration_ms', NEW.duration_ms
    )::text;
    PERFORM pg_notify(
        'attune_execution_done',
        CASE WHEN octet_length(record) < 7900 THEN record ELSE NEW.id::text END
    );
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_RECORD)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_ID_ONLY)
