"""Connection records (Zeek's conn.log fields), kept with their own retention.

One row per connection, keyed by its uid: an in-progress snapshot and the final record update
the same row. ``updated_at`` says when the row was last written (retention goes by it, as for
events); ``last_ts`` (first packet + duration) lets an event find the connections that overlap
its time window with indexed ranges.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
INDEXED = ("sensor", "ts", "last_ts", "orig_key", "resp_key", "conn_state", "updated_at")


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("uid", sa.String(32), primary_key=True),
        sa.Column("sensor", sa.String(64), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("last_ts", TS, nullable=False),
        sa.Column("orig_h", sa.String(64), nullable=False),
        sa.Column("orig_key", sa.String(32), nullable=False),
        sa.Column("orig_p", sa.Integer(), nullable=False),
        sa.Column("resp_h", sa.String(64), nullable=False),
        sa.Column("resp_key", sa.String(32), nullable=False),
        sa.Column("resp_p", sa.Integer(), nullable=False),
        sa.Column("proto", sa.String(8), nullable=False),
        sa.Column("service", sa.String(32), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("orig_bytes", sa.BigInteger(), nullable=True),
        sa.Column("resp_bytes", sa.BigInteger(), nullable=True),
        sa.Column("conn_state", sa.String(8), nullable=False),
        sa.Column("missed_bytes", sa.BigInteger(), nullable=False),
        sa.Column("history", sa.Text(), nullable=True),
        sa.Column("orig_pkts", sa.BigInteger(), nullable=False),
        sa.Column("orig_ip_bytes", sa.BigInteger(), nullable=False),
        sa.Column("resp_pkts", sa.BigInteger(), nullable=False),
        sa.Column("resp_ip_bytes", sa.BigInteger(), nullable=False),
        sa.Column("orig_sizes", sa.String(128), nullable=False),
        sa.Column("resp_sizes", sa.String(128), nullable=False),
        sa.Column("in_progress", sa.Boolean(), nullable=False),
        sa.Column("ended", sa.String(16), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    for column in INDEXED:
        op.create_index(f"ix_connections_{column}", "connections", [column])


def downgrade() -> None:
    for column in INDEXED:
        op.drop_index(f"ix_connections_{column}", table_name="connections")
    op.drop_table("connections")
