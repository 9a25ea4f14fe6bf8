"""workflows: workflow actions, their runs and task activations, and child executions

A workflow is an action (``runner_type`` gains ``workflow``; ``action.workflow`` holds its file
as validated). Its run is a parent execution with a ``workflow_run`` row; each task activation
has a ``workflow_task`` row; each task attempt is an ordinary execution with ``parent_id``,
``wf_task_id``, ``wf_item`` and ``wf_consumed`` (set once the run took its outcome in). Two
partial indexes keep a run's children and the not yet consumed ones cheap to find.

The ``action`` table is rebuilt on SQLite (its CHECK constraint changes), so its
``action_source_edited`` trigger (migration 20261201_0003) is created again.

Revision ID: 20261201_0011
Revises: 20261201_0010
Create Date: 2026-12-01 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from attune.store.sqltypes import JSONType, UTCDateTime, db_now

revision: str = "20261201_0011"
down_revision: str | None = "20261201_0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EXECUTION_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_RUNNERS = ("shell", "python", "native")
_UNCONSUMED = sa.text("parent_id IS NOT NULL AND NOT wf_consumed")
_CHILDREN = sa.text("parent_id IS NOT NULL")
_NOT_DONE = sa.text("phase <> 'done'")
_OPEN = sa.text("state IN ('waiting', 'ready', 'running')")
_SQLITE_SOURCE_EDITED = (
    "CREATE TRIGGER action_source_edited AFTER UPDATE ON action FOR EACH ROW "
    "WHEN NEW.source_hash IS OLD.source_hash AND OLD.source_hash IS NOT NULL "
    "BEGIN UPDATE action SET source_hash = NULL WHERE id = NEW.id; END"
)


def _runner_check(runners: Sequence[str]) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    allowed = ", ".join(f"'{name}'" for name in runners)
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS action_source_edited")
    with op.batch_alter_table("action", recreate="always" if sqlite else "auto") as batch:
        batch.drop_constraint(op.f("ck_action_runner_type"), type_="check")
        batch.create_check_constraint(op.f("ck_action_runner_type"), f"runner_type IN ({allowed})")
        if runners != _RUNNERS:
            batch.add_column(sa.Column("workflow", JSONType, nullable=True))
        else:
            batch.drop_column("workflow")
    if sqlite:
        op.execute(_SQLITE_SOURCE_EDITED)


_ELIGIBLE = "'eligible_at', NEW.eligible_at"
_WITH_PARENT = f"{_ELIGIBLE}, 'parent_id', NEW.parent_id"


def _notified(old: str, new: str) -> None:
    """On PostgreSQL, the finished record the execution_done trigger sends gains (or loses)
    ``parent_id``: the function as defined now, with that one field edited."""
    if op.get_bind().dialect.name != "postgresql":
        return
    definition = op.get_bind().scalar(
        sa.text("SELECT pg_get_functiondef('attune_execution_done'::regproc)")
    )
    op.execute(sa.text(str(definition).replace(old, new)))


def upgrade() -> None:
    _runner_check((*_RUNNERS, "workflow"))
    op.add_column("execution", sa.Column("parent_id", _EXECUTION_ID, nullable=True))
    op.add_column("execution", sa.Column("wf_task_id", _EXECUTION_ID, nullable=True))
    op.add_column("execution", sa.Column("wf_item", sa.Integer(), nullable=True))
    op.add_column(
        "execution",
        sa.Column("wf_consumed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    _notified(_ELIGIBLE, _WITH_PARENT)
    op.create_index(
        "ix_execution_parent_id_id",
        "execution",
        ["parent_id", "id"],
        postgresql_where=_CHILDREN,
        sqlite_where=_CHILDREN,
    )
    op.create_index(
        "ix_execution_unconsumed",
        "execution",
        ["parent_id"],
        postgresql_where=_UNCONSUMED,
        sqlite_where=_UNCONSUMED,
    )
    op.create_table(
        "workflow_run",
        sa.Column("execution_id", _EXECUTION_ID, nullable=False),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("vars", JSONType, nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("errors", JSONType, nullable=False),
        sa.Column("ending", sa.String(16), nullable=True),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("activations", sa.Integer(), nullable=False),
        sa.Column("counts", JSONType, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deadline_at", UTCDateTime(), nullable=True),
        sa.Column("wake_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.CheckConstraint(
            "phase IN ('running', 'canceling', 'done')", name=op.f("ck_workflow_run_phase")
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["execution.id"],
            name=op.f("fk_workflow_run_execution_id_execution"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_workflow_run")),
    )
    op.create_index(
        "ix_workflow_run_wake_at",
        "workflow_run",
        ["wake_at"],
        postgresql_where=_NOT_DONE,
        sqlite_where=_NOT_DONE,
    )
    states = "'waiting', 'ready', 'running', 'succeeded', 'failed', 'timeout', 'abandoned', 'canceled'"
    op.create_table(
        "workflow_task",
        sa.Column("id", _EXECUTION_ID, nullable=False),
        sa.Column("workflow_id", _EXECUTION_ID, nullable=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("occurrence", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("arrivals", JSONType, nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=True),
        sa.Column("items", JSONType, nullable=True),
        sa.Column("next_item", sa.Integer(), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("tripped", sa.Boolean(), nullable=False),
        sa.Column("result", JSONType, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("execution_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(f"state IN ({states})", name=op.f("ck_workflow_task_state")),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflow_run.execution_id"],
            name=op.f("fk_workflow_task_workflow_id_workflow_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_task")),
        sa.UniqueConstraint(
            "workflow_id",
            "task",
            "occurrence",
            name=op.f("uq_workflow_task_workflow_id_task_occurrence"),
        ),
    )
    op.create_index(
        "ix_workflow_task_open",
        "workflow_task",
        ["workflow_id", "state"],
        postgresql_where=_OPEN,
        sqlite_where=_OPEN,
    )
    op.create_index(
        "ix_workflow_task_workflow_id_task",
        "workflow_task",
        ["workflow_id", "task", "occurrence"],
    )


def downgrade() -> None:
    op.drop_table("workflow_task")
    op.drop_table("workflow_run")
    _notified(_WITH_PARENT, _ELIGIBLE)
    op.drop_index("ix_execution_unconsumed", table_name="execution")
    op.drop_index("ix_execution_parent_id_id", table_name="execution")
    for column in ("wf_consumed", "wf_item", "wf_task_id", "parent_id"):
        op.drop_column("execution", column)
    op.execute("DELETE FROM action WHERE runner_type = 'workflow'")
    _runner_check(_RUNNERS)
