"""source hashes: pack.source_hash and action.source_hash, cleared by any other edit

The loader stores the content hash of each ``pack.yaml`` and action file it loaded; a reload
whose files hash the same parses none of them. A row changed by anything but the loader (an
UPDATE that leaves ``source_hash`` as it was) gets its hash cleared by a trigger, so the next
load parses the pack again and puts the row back as its files say. (A SQLite table rebuilt by
``batch_alter_table`` loses its triggers: such a migration must create them again.)

Revision ID: 20261201_0003
Revises: 20261201_0002
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_0003"
down_revision: str | None = "20261201_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("pack", "action")

_PG_FUNCTION = """
CREATE FUNCTION attune_source_edited() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.source_hash IS NOT DISTINCT FROM OLD.source_hash THEN
        NEW.source_hash := NULL;
    END IF;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("source_hash", sa.String(64), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for table in _TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_source_edited BEFORE UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION attune_source_edited()"
            )
    else:
        for table in _TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_source_edited AFTER UPDATE ON {table} FOR EACH ROW "
                "WHEN NEW.source_hash IS OLD.source_hash AND OLD.source_hash IS NOT NULL "
                f"BEGIN UPDATE {table} SET source_hash = NULL WHERE id = NEW.id; END"
            )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in _TABLES:
        on_table = f" ON {table}" if postgresql else ""
        op.execute(f"DROP TRIGGER IF EXISTS {table}_source_edited{on_table}")
        with op.batch_alter_table(table) as batch:
            batch.drop_column("source_hash")
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS attune_source_edited()")
