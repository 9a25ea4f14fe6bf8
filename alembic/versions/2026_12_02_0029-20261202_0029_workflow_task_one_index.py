"""workflow_task: drop the index that repeats its unique constraint

``ix_workflow_task_workflow_id_task`` indexed (workflow_id, task, occurrence), the very columns
of the unique constraint ``uq_workflow_task_workflow_id_task_occurrence``, whose index serves
every lookup the other did. Each task activation inserted into both. Both databases.

Revision ID: 20261202_0029
Revises: 20261202_0028
Create Date: 2026-12-02 01:25:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261202_0029"
down_revision: str | None = "20261202_0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_workflow_task_workflow_id_task", table_name="workflow_task")


def downgrade() -> None:
    op.create_index(
        "ix_workflow_task_workflow_id_task", "workflow_task", ["workflow_id", "task", "occurrence"]
    )
