"""Initial schema: events, sample packets, capture sessions, model versions, sensors.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("sensor", sa.String(64), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("src", sa.String(64), nullable=False),
        sa.Column("src_key", sa.String(32), nullable=False),
        sa.Column("src_port", sa.Integer(), nullable=True),
        sa.Column("dst", sa.String(64), nullable=False),
        sa.Column("dst_key", sa.String(32), nullable=False),
        sa.Column("dst_port", sa.Integer(), nullable=True),
        sa.Column("proto", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("packets", sa.Integer(), nullable=False),
        sa.Column("score_max", sa.Float(), nullable=False),
        sa.Column("score_mean", sa.Float(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    for col in ("sensor", "first_seen", "last_seen", "src_key", "dst_key", "kind", "score_max"):
        op.create_index(f"ix_events_{col}", "events", [col])
    op.create_table(
        "sample_packets",
        sa.Column("event_id", sa.String(32), sa.ForeignKey("events.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("linktype", sa.Integer(), nullable=False),
        sa.Column("wirelen", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
    )
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
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
    )
    op.create_index("ix_model_versions_active", "model_versions", ["active"])
    op.create_table(
        "sensors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("sensors", "model_versions", "capture_sessions", "sample_packets", "events"):
        op.drop_table(table)
