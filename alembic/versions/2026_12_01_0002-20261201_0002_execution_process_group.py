"""execution: the process group of its action (pgid, leader's start time, host and boot)

A worker records the process group its action runs in, so that a later process of the same
worker name (a restart), or the same process once it runs again after a freeze, can kill a
group its execution left behind. The start time defeats pid reuse; the host identity (host name
and boot id) keeps one host's pids from meaning anything on another. The columns are cleared
when the worker stores the result; the partial index holds only the rows that still have one.

Revision ID: 20261201_0002
Revises: 20261201_0007
Create Date: 2026-12-01 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_0002"
down_revision: str | None = "20261201_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("execution") as batch:
        batch.add_column(sa.Column("pgid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("pgid_start_ticks", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("pgid_host", sa.Text(), nullable=True))
    op.create_index(
        "ix_execution_worker_pgid",
        "execution",
        ["worker"],
        postgresql_where=sa.text("pgid IS NOT NULL"),
        sqlite_where=sa.text("pgid IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_execution_worker_pgid", table_name="execution")
    with op.batch_alter_table("execution") as batch:
        batch.drop_column("pgid_host")
        batch.drop_column("pgid_start_ticks")
        batch.drop_column("pgid")
