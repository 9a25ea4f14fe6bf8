"""initial schema: pack, action, worker, execution

Revision ID: 20261128_0001
Revises:
Create Date: 2026-11-28 10:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from attune.store.sqltypes import JSONType, UTCDateTime, db_now, matches, one_of

revision: str = "20261128_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXECUTION_STATUSES = (
    "requested",
    "scheduled",
    "running",
    "canceling",
    "succeeded",
    "failed",
    "timeout",
    "canceled",
    "abandoned",
)


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=db_now(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "pack",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("tags", JSONType, nullable=False),
        *_timestamps(),
        sa.CheckConstraint(
            matches("ref", "^[a-z][a-z0-9_-]+$", ((False, "[a-z]*"), (True, "*[^a-z0-9_-]*")), 2),
            name=op.f("ck_pack_ref_format"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pack")),
        sa.UniqueConstraint("ref", name=op.f("uq_pack_ref")),
    )
    op.create_table(
        "action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pack_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("tags", JSONType, nullable=False),
        sa.Column("runner_type", sa.String(length=16), nullable=False),
        sa.Column("entry_point", sa.Text(), nullable=False),
        sa.Column("parameters", JSONType, nullable=False),
        sa.Column("parameter_delivery", sa.String(length=16), nullable=False),
        sa.Column("parameter_format", sa.String(length=16), nullable=False),
        sa.Column("output_format", sa.String(length=16), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            matches(
                "ref",
                "^[a-z][a-z0-9_-]+[.][a-z0-9][a-z0-9_-]*$",
                (
                    (False, "[a-z][a-z0-9_-]*.[a-z0-9]*"),
                    (True, "*[^a-z0-9_.-]*"),
                    (True, "*.*.*"),
                    (True, "?.*"),
                ),
                4,
            ),
            name=op.f("ck_action_ref_format"),
        ),
        sa.CheckConstraint(
            one_of("output_format", ("text", "json", "yaml", "jsonl")),
            name=op.f("ck_action_output_format"),
        ),
        sa.CheckConstraint(
            one_of("parameter_delivery", ("stdin", "file")),
            name=op.f("ck_action_parameter_delivery"),
        ),
        sa.CheckConstraint(
            one_of("parameter_format", ("json", "yaml", "dotenv")),
            name=op.f("ck_action_parameter_format"),
        ),
        sa.CheckConstraint(
            one_of("runner_type", ("shell", "python", "native")),
            name=op.f("ck_action_runner_type"),
        ),
        sa.CheckConstraint(
            "timeout_s IS NULL OR timeout_s > 0", name=op.f("ck_action_timeout_positive")
        ),
        sa.ForeignKeyConstraint(
            ["pack_id"], ["pack.id"], name=op.f("fk_action_pack_id_pack"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action")),
        sa.UniqueConstraint("ref", name=op.f("uq_action_ref")),
    )
    op.create_index(op.f("ix_action_pack_id"), "action", ["pack_id"])
    op.create_table(
        "worker",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("worker_role", sa.String(length=32), nullable=False),
        sa.Column("runtimes", JSONType, nullable=False),
        sa.Column("queues", JSONType, nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("capabilities", JSONType, nullable=False),
        # No index on last_heartbeat: it would make every heartbeat UPDATE a non-HOT one.
        sa.Column("last_heartbeat", UTCDateTime(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(one_of("status", ("active", "inactive")), name=op.f("ck_worker_status")),
        sa.CheckConstraint(one_of("worker_role", ("action",)), name=op.f("ck_worker_worker_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker")),
        sa.UniqueConstraint("name", name=op.f("uq_worker_name")),
    )
    op.create_table(
        "execution",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("action_ref", sa.String(length=255), nullable=False),
        sa.Column("parameters", JSONType, nullable=False),
        sa.Column("secrets", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("target_worker", sa.String(length=255), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("timeout_s", sa.Double(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("stdout", sa.Text(), nullable=False),
        sa.Column("stderr", sa.Text(), nullable=False),
        sa.Column("result", JSONType, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("stdout_truncated", sa.Boolean(), nullable=False),
        sa.Column("stderr_truncated", sa.Boolean(), nullable=False),
        sa.Column("requested_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.CheckConstraint(one_of("status", EXECUTION_STATUSES), name=op.f("ck_execution_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution")),
    )
    op.create_index("ix_execution_action_ref_id", "execution", ["action_ref", "id"])
    op.create_index("ix_execution_status_id", "execution", ["status", "id"])
    op.create_index("ix_execution_worker_status", "execution", ["worker", "status"])


def downgrade() -> None:
    op.drop_table("execution")
    op.drop_table("worker")
    op.drop_index(op.f("ix_action_pack_id"), table_name="action")
    op.drop_table("action")
    op.drop_table("pack")
