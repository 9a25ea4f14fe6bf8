"""gate hand-off claim, one completion notification per sweep (PostgreSQL)

``attune_claim_head(action_ref, gate_key, worker)``: in the transaction that ends a gated
execution, lock its gate's row, pick the gate's head (its oldest eligible execution) and admit
it for the worker if a slot is free and it is not another worker's: one round trip, and the head
is chosen under the lock, so two executions ending together hand their slots to two heads.

``execution_done`` stays silent while the transaction's setting ``attune.bulk_done`` is
``on``: the sweep sets it around its statement and sends the ids it abandoned in a few
notifications (a JSON array each) instead of one per row. The stream's ``execution_event``
trigger still fires per row.

Revision ID: 20261201_0015
Revises: 20261201_0010
Create Date: 2026-12-01 12:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261201_0015"
down_revision: str | None = "20261201_0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CLAIM_HEAD = """
CREATE FUNCTION attune_claim_head(p_ref varchar, p_key varchar, p_worker text)
RETURNS TABLE (id bigint, action_ref varchar, parameters jsonb, secrets text,
               timeout_s double precision, policy jsonb, gate_key varchar, gate_limit integer,
               runner_type varchar, entry_point text, parameter_delivery varchar,
               parameter_format varchar, output_format varchar, action_timeout_s integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    h_id bigint;
BEGIN
    INSERT INTO concurrency_gate AS g (action_ref, gate_key) VALUES (p_ref, p_key)
    ON CONFLICT (action_ref, gate_key) DO UPDATE SET gate_key = EXCLUDED.gate_key;
    SELECT e.id INTO h_id FROM execution e
    WHERE e.action_ref = p_ref AND e.gate_key = p_key AND e.status = 'scheduled'
      AND e.eligible_at <= now()
    ORDER BY e.eligible_at, e.id LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE execution AS me SET status = 'running', worker = p_worker, started_at = now()
    FROM (SELECT 1) AS one LEFT JOIN action a ON a.ref = p_ref
    WHERE me.id = h_id AND me.status = 'scheduled'
      AND (me.target_worker IS NULL OR me.target_worker = p_worker)
      AND (SELECT count(*) FROM execution b
           WHERE b.action_ref = p_ref AND b.gate_key = p_key
             AND b.status IN ('running', 'canceling')) < me.gate_limit
    RETURNING me.id, me.action_ref, me.parameters, me.secrets, me.timeout_s, me.policy,
              me.gate_key, me.gate_limit, a.runner_type, a.entry_point, a.parameter_delivery,
              a.parameter_format, a.output_format, a.timeout_s;
END
$$
"""

_DONE_TRIGGER = """
CREATE TRIGGER execution_done AFTER UPDATE OF status ON execution
FOR EACH ROW
WHEN (NEW.status IN ('succeeded', 'failed', 'timeout', 'canceled', 'abandoned')
      AND OLD.status IS DISTINCT FROM NEW.status{quiet})
EXECUTE FUNCTION attune_execution_done()
"""
_QUIET = "\n      AND current_setting('attune.bulk_done', true) IS DISTINCT FROM 'on'"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_CLAIM_HEAD)
    op.execute("DROP TRIGGER execution_done ON execution")
    op.execute(_DONE_TRIGGER.format(quiet=_QUIET))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER execution_done ON execution")
    op.execute(_DONE_TRIGGER.format(quiet=""))
    op.execute("DROP FUNCTION attune_claim_head(varchar, varchar, text)")
