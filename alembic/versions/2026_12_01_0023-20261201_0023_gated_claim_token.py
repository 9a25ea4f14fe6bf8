"""attune_claim_gated(id, worker, token): a gated claim repeated after a lost reply finds its own

Revision 0019 gave the plain claim its token; the gated claim on PostgreSQL is one function
call, so it gets a three-argument version: it writes the token with the claim, and when the
execution is already ``running`` under the same token (the first call committed, its answer
was lost) it returns that claim again instead of nothing. The two-argument version stays for
workers of the previous release until they are restarted. SQLite: nothing (its claims are
local and cannot lose their answer).

Revision ID: 20261201_0023
Revises: 20261201_0019
Create Date: 2026-12-01 19:35:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261201_0023"
down_revision: str | None = "20261201_0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As 0004's two-argument function (lock the gate's row, admit in strict FIFO while fewer than
# the limit hold a slot), plus the token: written with the claim, and recognised first.
_CLAIM_GATED = """
CREATE FUNCTION attune_claim_gated(p_id bigint, p_worker text, p_token bigint)
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
    RETURN QUERY
    SELECT me.action_ref, me.parameters, me.secrets, me.timeout_s, me.policy, me.gate_key,
           me.gate_limit, a.runner_type, a.entry_point, a.parameter_delivery,
           a.parameter_format, a.output_format, a.timeout_s,
           (SELECT count(*) FROM execution b
            WHERE b.action_ref = me.action_ref AND b.gate_key = me.gate_key
              AND b.status IN ('running', 'canceling'))::integer - 1,
           (SELECT count(*) FROM execution w
            WHERE w.action_ref = me.action_ref AND w.gate_key = me.gate_key
              AND w.status = 'scheduled' AND w.eligible_at <= now())::integer
    FROM execution me LEFT JOIN action a ON a.ref = me.action_ref
    WHERE me.id = p_id AND me.status = 'running' AND me.claim_token = p_token;
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT e.action_ref, e.gate_key INTO g_ref, g_key FROM execution e
    WHERE e.id = p_id AND e.status = 'scheduled' AND e.gate_key IS NOT NULL
      AND e.eligible_at <= now();
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO concurrency_gate AS g (action_ref, gate_key) VALUES (g_ref, g_key)
    ON CONFLICT (action_ref, gate_key) DO UPDATE SET gate_key = EXCLUDED.gate_key;
    RETURN QUERY
    UPDATE execution AS me
    SET status = 'running', worker = p_worker, started_at = now(), claim_token = p_token
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


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CLAIM_GATED)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION attune_claim_gated(bigint, text, bigint)")
