"""notify attune_execution_done when an execution reaches a terminal state (PostgreSQL)

Waiting callers listen on the channel instead of polling. SQLite has no notifications:
there the embedded worker wakes callers in-process.

Revision ID: 20261128_0002
Revises: 20261128_0001
Create Date: 2026-11-28 11:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261128_0002"
down_revision: str | None = "20261128_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION attune_execution_done() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('attune_execution_done', NEW.id::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER execution_done AFTER UPDATE OF status ON execution
        FOR EACH ROW
        WHEN (NEW.status IN ('succeeded', 'failed', 'timeout', 'canceled', 'abandoned')
              AND OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION attune_execution_done()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER execution_done ON execution")
    op.execute("DROP FUNCTION attune_execution_done()")
