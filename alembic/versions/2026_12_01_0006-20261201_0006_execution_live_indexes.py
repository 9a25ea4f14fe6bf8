"""execution indexes that cover only live rows: held by worker, and not yet finished by status

The sweep finds a dead worker's executions by ``worker`` among those ``running`` or
``canceling``, and the scheduled-timeout check finds ``scheduled`` ones by ``status``: both
look only at executions still going. Indexing only those rows keeps both indexes as small as the
work in flight, however much history the table holds, and an UPDATE that finishes an execution
(the result stored, the sweep's abandon) adds no entry to either (fewer index writes on every
execution). A listing by a terminal status walks the primary key newest first instead.

Revision ID: 20261201_0006
Revises: 20261201_0009
Create Date: 2026-12-01 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_0006"
down_revision: str | None = "20261201_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in attune.store.models (a migration never imports the models: they move on).
HELD = sa.text("status IN ('canceling', 'running')")
LIVE = sa.text("status IN ('canceling', 'requested', 'running', 'scheduled')")


def upgrade() -> None:
    op.drop_index("ix_execution_worker_status", table_name="execution")
    op.drop_index("ix_execution_status_id", table_name="execution")
    op.create_index(
        "ix_execution_held_worker",
        "execution",
        ["worker"],
        postgresql_where=HELD,
        sqlite_where=HELD,
    )
    op.create_index(
        "ix_execution_live_status_id",
        "execution",
        ["status", "id"],
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )


def downgrade() -> None:
    op.drop_index("ix_execution_live_status_id", table_name="execution")
    op.drop_index("ix_execution_held_worker", table_name="execution")
    op.create_index("ix_execution_status_id", "execution", ["status", "id"])
    op.create_index("ix_execution_worker_status", "execution", ["worker", "status"])
