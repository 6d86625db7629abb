"""Retention goes by when an event was stored (``updated_at``), not by its packets' time: index it.

``updated_at`` is set each time the writer stores or updates an event, so it says when the
event was written, whatever the time of its packets (an old recording's events are stored
today). Retention by age and by row count orders by it, hence the index.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_updated_at", "events", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_events_updated_at", table_name="events")
