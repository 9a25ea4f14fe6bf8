"""per-pack Python environments: pack.requirements_digest and pack.python, pack_environment
(one row per host, pack and key: building | ready | failed, with the failure backoff) and
execution_environment (the environment an execution ran in, and whether it waited for a build)

Revision ID: 20261201_0005
Revises: 20261201_0008
Create Date: 2026-12-01 09:19:34
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from attune.store.sqltypes import UTCDateTime, db_now, one_of

revision: str = "20261201_0005"
down_revision: str | None = "20261201_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pack") as batch_op:
        batch_op.add_column(sa.Column("requirements_digest", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("python", sa.String(255), nullable=True))
    op.create_table(
        "pack_environment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pack", sa.String(255), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("python", sa.String(64), nullable=False),
        sa.Column("installer", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("retry_at", UTCDateTime(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("built_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.CheckConstraint(
            one_of("status", ("building", "ready", "failed")),
            name=op.f("ck_pack_environment_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pack_environment")),
    )
    op.create_index(
        "uq_pack_environment_host_pack_key", "pack_environment", ["host", "pack", "key"], unique=True
    )
    op.create_table(
        "execution_environment",
        sa.Column(
            "execution_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("waited", sa.Boolean(), nullable=False),
        sa.Column("built", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["execution.id"],
            name=op.f("fk_execution_environment_execution_id_execution"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_execution_environment")),
    )


def downgrade() -> None:
    op.drop_table("execution_environment")
    op.drop_index("uq_pack_environment_host_pack_key", table_name="pack_environment")
    op.drop_table("pack_environment")
    with op.batch_alter_table("pack") as batch_op:
        batch_op.drop_column("python")
        batch_op.drop_column("requirements_digest")
