"""execution policies: retries as linked attempts, concurrency gates

The action keeps its validated policy (``policy``); each execution snapshots it with its
attempt number, its chain (``first_attempt_id``, ``retry_of_id`` unique: one successor at
most), ``eligible_at`` (not before), ``spawned_at``, and its gate (``gate_key``,
``gate_limit``). ``concurrency_gate`` holds the rows gated claims lock on PostgreSQL. A trigger
sets ``first_attempt_id`` to the row's own id when an insert leaves it NULL, and the
completion notification carries the new fields.

Revision ID: 20261201_0004
Revises: 20261201_0006
Create Date: 2026-12-01 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from attune.store.sqltypes import JSONType, UTCDateTime, db_now

revision: str = "20261201_0004"
down_revision: str | None = "20261201_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EXECUTION_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_FIRST_ATTEMPT_PG = """
CREATE FUNCTION attune_first_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.first_attempt_id := COALESCE(NEW.first_attempt_id, NEW.id);
    RETURN NEW;
END
$$
"""
_FIRST_ATTEMPT_PG_TRIGGER = """
CREATE TRIGGER execution_first_attempt BEFORE INSERT ON execution
FOR EACH ROW EXECUTE FUNCTION attune_first_attempt()
"""
_FIRST_ATTEMPT_SQLITE = """
CREATE TRIGGER execution_first_attempt AFTER INSERT ON execution
FOR EACH ROW WHEN NEW.first_attempt_id IS NULL
BEGIN
    UPDATE execution SET first_attempt_id = NEW.id WHERE id = NEW.id;
END
"""

# A gated claim in one round trip: lock the gate's row, then admit the execution if fewer than
# its limit hold a slot and none eligible waits ahead of it (strict FIFO); its action's columns
# come along (NULL when the action is gone), and, as the statement saw them before, how many
# held a slot and how many wait behind it. Each statement of a VOLATILE
# function takes a fresh snapshot, so the admission sees every claim the lock waited for.
_CLAIM_GATED = """
CREATE FUNCTION attune_claim_gated(p_id bigint, p_worker text)
RETURNS TABLE (action_ref varchar, parameters jsonb, secrets text, timeout_s double precision,
               policy jsonb, gate_key varchar, gate_limit integer, runner_type varchar,
               entry_point text, parameter_delivery varchar, parameter_format varchar,
               output_format varchar, action_timeout_s integer, busy_before integer,
               waiting_behind integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    g_ref varchar;
    g_key varchar;
BEGIN
    SELECT e.action_ref, e.gate_key INTO g_ref, g_key FROM execution e
    WHERE e.id = p_id AND e.status = 'scheduled' AND e.gate_key IS NOT NULL
      AND e.eligible_at <= now();
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO concurrency_gate AS g (action_ref, gate_key) VALUES (g_ref, g_key)
    ON CONFLICT (action_ref, gate_key) DO UPDATE SET gate_key = EXCLUDED.gate_key;
    RETURN QUERY
    UPDATE execution AS me SET status = 'running', worker = p_worker, started_at = now()
    FROM (SELECT 1) AS one LEFT JOIN action a ON a.ref = g_ref
    WHERE me.id = p_id AND me.status = 'scheduled'
      AND (SELECT count(*) FROM execution b
           WHERE b.action_ref = g_ref AND b.gate_key = g_key
             AND b.status IN ('running', 'canceling')) < me.gate_limit
      AND NOT EXISTS (
           SELECT 1 FROM execution w
           WHERE w.action_ref = g_ref AND w.gate_key = g_key AND w.status = 'scheduled'
             AND w.eligible_at <= now()
             AND (w.eligible_at < me.eligible_at
                  OR (w.eligible_at = me.eligible_at AND w.id < me.id)))
    RETURNING me.action_ref, me.parameters, me.secrets, me.timeout_s, me.policy, me.gate_key,
              me.gate_limit, a.runner_type, a.entry_point, a.parameter_delivery,
              a.parameter_format, a.output_format, a.timeout_s,
              (SELECT count(*) FROM execution b
               WHERE b.action_ref = g_ref AND b.gate_key = g_key
                 AND b.status IN ('running', 'canceling'))::integer,
              (SELECT count(*) FROM execution w
               WHERE w.action_ref = g_ref AND w.gate_key = g_key AND w.status = 'scheduled'
                 AND w.eligible_at <= now())::integer - 1;
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
        'finished_at', NEW.finished_at, 'duration_ms', NEW.duration_ms{fields}
    )::text;
    PERFORM pg_notify(
        'attune_execution_done',
        CASE WHEN octet_length(record) < 7900 THEN record ELSE NEW.id::text END
    );
    RETURN NULL;
END
$$
"""
_NEW_FIELDS = """,
        'attempt', NEW.attempt, 'max_attempts', NEW.max_attempts,
        'first_attempt_id', NEW.first_attempt_id, 'retry_of_id', NEW.retry_of_id,
        'eligible_at', NEW.eligible_at"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "concurrency_gate",
        sa.Column("action_ref", sa.String(255), nullable=False),
        sa.Column("gate_key", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("action_ref", "gate_key", name=op.f("pk_concurrency_gate")),
    )
    with op.batch_alter_table("action") as batch:
        batch.add_column(sa.Column("policy", JSONType, nullable=True))
    with op.batch_alter_table("execution", recreate="always" if not postgres else "auto") as batch:
        batch.add_column(sa.Column("policy", JSONType, nullable=True))
        batch.add_column(sa.Column("attempt", sa.Integer(), server_default="1", nullable=False))
        batch.add_column(
            sa.Column("max_attempts", sa.Integer(), server_default="1", nullable=False)
        )
        batch.add_column(sa.Column("first_attempt_id", _EXECUTION_ID, nullable=True))
        batch.add_column(sa.Column("retry_of_id", _EXECUTION_ID, nullable=True))
        batch.add_column(
            sa.Column("eligible_at", UTCDateTime(), server_default=db_now(), nullable=False)
        )
        batch.add_column(sa.Column("spawned_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("dispatched_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("gate_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("gate_limit", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_execution_first_attempt_id_execution"),
            "execution",
            ["first_attempt_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            op.f("fk_execution_retry_of_id_execution"),
            "execution",
            ["retry_of_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_unique_constraint(op.f("uq_execution_retry_of_id"), ["retry_of_id"])
    op.execute("UPDATE execution SET eligible_at = requested_at, first_attempt_id = id")
    op.create_index(
        "ix_execution_gate",
        "execution",
        ["action_ref", "gate_key", "status", "eligible_at", "id"],
        postgresql_where=sa.text("gate_key IS NOT NULL"),
        sqlite_where=sa.text("gate_key IS NOT NULL"),
    )
    op.create_index(
        "ix_execution_retry_owed",
        "execution",
        ["status", "finished_at"],
        postgresql_where=sa.text("max_attempts > 1"),
        sqlite_where=sa.text("max_attempts > 1"),
    )
    op.create_index("ix_execution_first_attempt_id", "execution", ["first_attempt_id"])
    if postgres:
        op.execute(_FIRST_ATTEMPT_PG)
        op.execute(_FIRST_ATTEMPT_PG_TRIGGER)
        op.execute(_RECORD.format(fields=_NEW_FIELDS))
        op.execute(_CLAIM_GATED)
    else:
        op.execute(_FIRST_ATTEMPT_SQLITE)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.execute(
        "DROP TRIGGER IF EXISTS execution_first_attempt" + (" ON execution" if postgres else "")
    )
    if postgres:
        op.execute("DROP FUNCTION attune_first_attempt()")
        op.execute("DROP FUNCTION attune_claim_gated(bigint, text)")
    op.drop_index("ix_execution_first_attempt_id", "execution")
    op.drop_index("ix_execution_retry_owed", "execution")
    op.drop_index("ix_execution_gate", "execution")
    with op.batch_alter_table("execution") as batch:
        batch.drop_constraint(op.f("uq_execution_retry_of_id"), type_="unique")
        batch.drop_constraint(op.f("fk_execution_retry_of_id_execution"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_execution_first_attempt_id_execution"), type_="foreignkey")
        for column in (
            "gate_limit",
            "gate_key",
            "dispatched_at",
            "spawned_at",
            "eligible_at",
            "retry_of_id",
            "first_attempt_id",
            "max_attempts",
            "attempt",
            "policy",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("action") as batch:
        batch.drop_column("policy")
    op.drop_table("concurrency_gate")
    if postgres:
        op.execute(_RECORD.format(fields=""))  # as revision 20261128_0004 left it
