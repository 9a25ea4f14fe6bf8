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

from alembic import context, op

revision: str = "20261201_0023"
down_revision: str | None = "20261201_0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The claim as it was, found first when the execution runs under this very token.
_OWN_CLAIM = """    RETURN QUERY
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
"""
# 0004's function (lock the gate's row, admit in strict FIFO while fewer than the limit hold a
# slot), edited: the token in its signature, recognised first, written with the claim.
_EDITS = (
    ("attune_claim_gated(p_id bigint, p_worker text)", "attune_claim_gated(p_id bigint, p_worker text, p_token bigint)"),
    ("BEGIN\n    SELECT e.action_ref", "BEGIN\n" + _OWN_CLAIM + "    SELECT e.action_ref"),
    ("worker = p_worker, started_at = now()", "worker = p_worker, started_at = now(), claim_token = p_token"),
)


def _claim_gated() -> str:
    """The three-argument function's SQL, made from 0004's two-argument one."""
    sql: str = context.script.get_revision("20261201_0004").module._CLAIM_GATED
    for old, new in _EDITS:
        if sql.count(old) != 1:
            raise RuntimeError(f"attune_claim_gated of 0004 has no single {old!r}")
        sql = sql.replace(old, new)
    return sql


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_claim_gated())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION attune_claim_gated(bigint, text, bigint)")
