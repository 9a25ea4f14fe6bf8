"""execution.claim_token: a claim repeated after a lost reply recognises its own claim

A worker's claim (``scheduled`` → ``running``) is one autocommit UPDATE. When the database
restarts between its commit and its answer, the worker repeats the claim, finds the execution
no longer ``scheduled`` and skipped it: the execution stayed ``running`` on a live worker with
nothing running it. Each claim now writes a random token, and its repetition also matches a
``running`` row that carries the same token. Nullable, no index, no default: the column costs
nothing on rows claimed before.

Revision ID: 20261201_0019
Revises: 20261201_0018
Create Date: 2026-12-01 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_0019"
down_revision: str | None = "20261201_0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("execution", sa.Column("claim_token", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("execution", "claim_token")
