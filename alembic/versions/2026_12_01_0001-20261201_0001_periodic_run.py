"""periodic_run: when the sweep (and later other watched periodic passes) last ran

One row per pass name, its ``last_run_at`` on the database clock, so the monitor is monitored:
``attune workers sweeper`` and ``attune_last_sweep_timestamp_seconds`` read it.

Revision ID: 20261201_0001
Revises: 20261128_0004
Create Date: 2026-12-01 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from attune.store.sqltypes import UTCDateTime

revision: str = "20261201_0001"
down_revision: str | None = "20261128_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "periodic_run",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("last_run_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_periodic_run")),
    )


def downgrade() -> None:
    op.drop_table("periodic_run")
