"""Browser sessions of the web UI

``web_session`` holds one row per signed-in browser: a SHA-256 of the session id (the cookie's
value, never stored itself), the API key it was opened with (deleting the key deletes its
sessions; revoking it makes them unusable at once), the session's CSRF token, when it was last
used (idle expiry) and its absolute expiry.

Revision ID: 20261201_0010
Revises: 20261201_0004
Create Date: 2026-12-01 10:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from attune.store.sqltypes import UTCDateTime, db_now

revision: str = "20261201_0010"
down_revision: str | None = "20261201_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_key.id"],
            name=op.f("fk_web_session_api_key_id_api_key"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_session")),
        sa.UniqueConstraint("digest", name=op.f("uq_web_session_digest")),
    )
    op.create_index(op.f("ix_web_session_api_key_id"), "web_session", ["api_key_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_web_session_api_key_id"), table_name="web_session")
    op.drop_table("web_session")
