"""The capture index: batch files read, one row per capture record, hourly counts (with drift
bin counts) and per-device totals.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``capture_files``, ``capture_entries``, ``capture_hours`` and
    ``capture_devices`` (edgefleet.fleet.db.models) with the indexes the dashboard reads."""
    op.create_table(
        "capture_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("indexed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_capture_files"),
        sa.UniqueConstraint("key", name="uq_capture_files_key"),
    )
    op.create_table(
        "capture_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("fleet", sa.String(255), nullable=False),
        sa.Column("device", sa.String(255), nullable=False),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("capture_id", sa.String(256), nullable=False),
        sa.Column("inference_time", sa.Float(), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("sampled", sa.Boolean(), nullable=False),
        sa.Column("event", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["file_id"], ["capture_files.id"], ondelete="CASCADE",
                                name="fk_capture_entries_file_id_capture_files"),
        sa.PrimaryKeyConstraint("id", name="pk_capture_entries"),
    )
    for name, columns in (("device_time", ["device", "inference_time", "id"]),
                          ("time", ["inference_time", "id"]),
                          ("model_time", ["model_name", "inference_time", "id"]),
                          ("event_time", ["event", "inference_time", "id"])):
        op.create_index(f"ix_capture_entries_{name}", "capture_entries", columns)
    op.create_table(
        "capture_hours",
        sa.Column("device", sa.String(255), nullable=False),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("fleet", sa.String(255), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("drift_rows", sa.Integer(), nullable=False),
        sa.Column("drift_counts", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("device", "model_name", "model_version", "hour",
                                name="pk_capture_hours"),
    )
    op.create_table(
        "capture_devices",
        sa.Column("device", sa.String(255), nullable=False),
        sa.Column("fleet", sa.String(255), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("first_time", sa.Float(), nullable=False),
        sa.Column("last_time", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("device", name="pk_capture_devices"),
    )
    op.create_index("ix_capture_devices_fleet", "capture_devices", ["fleet"])


def downgrade() -> None:
    """Drop the capture index (the batch files themselves are untouched)."""
    for table in ("capture_devices", "capture_hours", "capture_entries", "capture_files"):
        op.drop_table(table)
