"""The capture_sessions table goes: nothing ever wrote or read it outside its own tests.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.drop_index("ix_capture_sessions_started_at", table_name="capture_sessions")
    op.drop_index("ix_capture_sessions_sensor", table_name="capture_sessions")
    op.drop_table("capture_sessions")


def downgrade() -> None:
    op.create_table(
        "capture_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sensor", sa.String(64), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("filter", sa.String(1024), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("stopped_at", TS, nullable=True),
        sa.Column("packets", sa.Integer(), nullable=False),
        sa.Column("drops", sa.Integer(), nullable=False),
    )
    op.create_index("ix_capture_sessions_sensor", "capture_sessions", ["sensor"])
    op.create_index("ix_capture_sessions_started_at", "capture_sessions", ["started_at"])
