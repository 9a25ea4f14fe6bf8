"""worker table fillfactor 50 (PostgreSQL): room on every page for HOT heartbeat updates

A heartbeat changes only unindexed columns, so PostgreSQL can update the row in place (a HOT
update) when its page has room for the new version. Half-empty pages keep that room even while
dead versions wait to be pruned. The table has one row per worker, so the space is cheap.

Revision ID: 20261128_0003
Revises: 20261128_0002
Create Date: 2026-11-28 13:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261128_0003"
down_revision: str | None = "20261128_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE worker SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE worker RESET (fillfactor)")
