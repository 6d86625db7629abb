"""Events count their distinct sources and targets (floods and sweeps merge into one event).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing events were never merged: one source, one target
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("src_count", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("dst_count", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("dst_count")
        batch.drop_column("src_count")
