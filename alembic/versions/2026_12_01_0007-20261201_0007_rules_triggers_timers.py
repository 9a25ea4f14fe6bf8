"""rules, triggers and timers: rule, rule_timer, trigger_event, enforcement; execution links

Revision ID: 20261201_0007
Revises: 20261201_0005
Create Date: 2026-12-01 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from attune.store.sqltypes import JSONType, UTCDateTime, db_now, one_of

revision: str = "20261201_0007"
down_revision: str | None = "20261201_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENT_STATUSES = ("fired", "missed", "duplicate")
ENFORCEMENT_STATUSES = (
    "scheduled",
    "no_match",
    "render_failed",
    "params_invalid",
    "action_missing",
    "chain_limit",
)


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pack_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("trigger_type", sa.String(255), nullable=False),
        sa.Column("trigger_params", JSONType, nullable=False),
        sa.Column("params_hash", sa.String(64), nullable=False),
        sa.Column("misfire_policy", sa.String(16), nullable=False),
        sa.Column("misfire_grace_s", sa.Double(), nullable=False),
        sa.Column("criteria", JSONType, nullable=False),
        sa.Column("action_ref", sa.String(255), nullable=False),
        sa.Column("action_parameters", JSONType, nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pack_id"], ["pack.id"], name="fk_rule_pack_id_pack", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rule"),
        sa.UniqueConstraint("ref", name="uq_rule_ref"),
    )
    op.create_index("ix_rule_pack_id", "rule", ["pack_id"])
    op.create_index("ix_rule_trigger_type_enabled", "rule", ["trigger_type", "enabled"])
    op.create_table(
        "rule_timer",
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("params_hash", sa.String(64), nullable=False),
        sa.Column("last_fire_time", UTCDateTime(), nullable=False),
        sa.Column("next_fire_time", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["rule_id"], ["rule.id"], name="fk_rule_timer_rule_id_rule", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("rule_id", name="pk_rule_timer"),
    )
    op.create_index("ix_rule_timer_next_fire_time", "rule_timer", ["next_fire_time"])
    op.create_table(
        "trigger_event",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("fire_time", UTCDateTime(), nullable=True),
        sa.Column("dedup_key", sa.String(255), nullable=True),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.CheckConstraint(one_of("status", EVENT_STATUSES), name="ck_trigger_event_status"),
        sa.PrimaryKeyConstraint("id", name="pk_trigger_event"),
        sa.UniqueConstraint("rule_id", "fire_time", name="uq_trigger_event_rule_id_fire_time"),
        sa.UniqueConstraint("type", "dedup_key", name="uq_trigger_event_type_dedup_key"),
    )
    op.create_index("ix_trigger_event_received_at", "trigger_event", ["received_at"])
    op.create_table(
        "enforcement",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("event_id", _big_id(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("rule_ref", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("criteria_trace", JSONType, nullable=False),
        sa.Column("parameters", JSONType, nullable=False),
        sa.Column("execution_id", _big_id(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.CheckConstraint(
            one_of("status", ENFORCEMENT_STATUSES), name="ck_enforcement_status"
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["trigger_event.id"],
            name="fk_enforcement_event_id_trigger_event",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_enforcement"),
        sa.UniqueConstraint("event_id", "rule_id", name="uq_enforcement_event_id_rule_id"),
    )
    op.create_index("ix_enforcement_rule_ref_id", "enforcement", ["rule_ref", "id"])
    with op.batch_alter_table("execution") as batch:
        batch.add_column(sa.Column("enforcement_id", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("trigger_depth", sa.Integer(), server_default="0", nullable=False)
        )
        batch.create_unique_constraint("uq_execution_enforcement_id", ["enforcement_id"])


def downgrade() -> None:
    with op.batch_alter_table("execution") as batch:
        batch.drop_constraint("uq_execution_enforcement_id", type_="unique")
        batch.drop_column("trigger_depth")
        batch.drop_column("enforcement_id")
    op.drop_table("enforcement")
    op.drop_table("trigger_event")
    op.drop_table("rule_timer")
    op.drop_table("rule")
