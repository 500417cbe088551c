"""Heartbeat history for the dashboard: one sample per device per sampling period.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``heartbeat_samples`` (edgefleet.fleet.db.models.HeartbeatSample)."""
    op.create_table(
        "heartbeat_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=True),
        sa.Column("agent", sa.JSON(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE",
                                name="fk_heartbeat_samples_device_id_devices"),
        sa.PrimaryKeyConstraint("id", name="pk_heartbeat_samples"),
    )
    op.create_index("ix_heartbeat_samples_device_at", "heartbeat_samples", ["device_id", "at"])
    op.create_index("ix_heartbeat_samples_at", "heartbeat_samples", ["at"])


def downgrade() -> None:
    """Drop the heartbeat history."""
    op.drop_table("heartbeat_samples")
