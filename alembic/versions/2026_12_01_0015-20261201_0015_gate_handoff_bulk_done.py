"""gate hand-off claim, one completion notification per sweep (PostgreSQL)

``attune_claim_head(action_ref, gate_key, worker, transfer)`` admits the gate's head (its
oldest eligible execution, the row locked, skipping one another claim holds) for the worker if
a slot is free and it is not another worker's, in one round trip. With ``transfer`` it runs in
the transaction that ends one of the gate's executions: that slot passes to the head, so the
number holding one cannot grow and the gate's row is not locked (a lock held until the commit,
with its WAL flush, would serialize every hand-off of the gate). Without, it locks the gate's
row first, as ``attune_claim_gated`` does.

``execution_done`` stays silent while the transaction's setting ``attune.bulk_done`` is
``on``: the sweep sets it around its statement and sends the ids it abandoned in a few
notifications (a JSON array each) instead of one per row. The stream's ``execution_event``
trigger still fires per row.

Revision ID: 20261201_0015
Revises: 20261201_0011
Create Date: 2026-12-01 12:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261201_0015"
down_revision: str | None = "20261201_0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CLAIM_HEAD = """
CREATE FUNCTION attune_claim_head(p_ref varchar, p_key varchar, p_worker text,
                                  p_transfer boolean)
RETURNS TABLE (id bigint, action_ref varchar, parameters jsonb, secrets text,
               timeout_s double precision, policy jsonb, gate_key varchar, gate_limit integer,
               runner_type varchar, entry_point text, parameter_delivery varchar,
               parameter_format varchar, output_format varchar, action_timeout_s integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    h record;
    h_at timestamptz;
BEGIN
    IF NOT p_transfer THEN
        INSERT INTO concurrency_gate AS g (action_ref, gate_key) VALUES (p_ref, p_key)
        ON CONFLICT (action_ref, gate_key) DO UPDATE SET gate_key = EXCLUDED.gate_key;
    END IF;
    SELECT e.id, e.target_worker INTO h FROM execution e
    WHERE e.action_ref = p_ref AND e.gate_key = p_key AND e.status = 'scheduled'
      AND e.eligible_at <= now()
    ORDER BY e.eligible_at, e.id LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND OR COALESCE(h.target_worker, p_worker) <> p_worker THEN
        RETURN;
    END IF;
    -- Started when its row was taken, not when the transaction began: two heads taken in
    -- turn by two transactions start in that order.
    h_at := clock_timestamp();
    RETURN QUERY
    UPDATE execution AS me SET status = 'running', worker = p_worker, started_at = h_at
    FROM (SELECT 1) AS one LEFT JOIN action a ON a.ref = p_ref
    WHERE me.id = h.id AND me.status = 'scheduled'
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
    op.execute("DROP FUNCTION attune_claim_head(varchar, varchar, text, boolean)")
