"""Initial schema: fleets, devices, heartbeats' models, packaging jobs, plans, stages.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create every table of edgefleet.fleet.db.models at its first version."""
    op.create_table(
        "server_state",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_server_state"),
    )
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_admin_tokens_token_hash"),
    )
    op.create_table(
        "fleets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("output_location", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fleets"),
        sa.UniqueConstraint("name", name="uq_fleets_name"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("fleet_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("iot_thing_name", sa.String(128), nullable=True),
        sa.Column("access_key_id", sa.String(20), nullable=False),
        sa.Column("secret_enc", sa.LargeBinary(), nullable=False),
        sa.Column("registered_at", sa.Float(), nullable=False),
        sa.Column("last_heartbeat_at", sa.Float(), nullable=True),
        sa.Column("agent_version", sa.String(64), nullable=True),
        sa.Column("agent_metrics", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["fleet_id"], ["fleets.id"], name="fk_devices_fleet_id_fleets"),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.UniqueConstraint("name", name="uq_devices_name"),
        sa.UniqueConstraint("access_key_id", name="uq_devices_access_key_id"),
    )
    op.create_index("ix_devices_fleet_heartbeat", "devices", ["fleet_id", "last_heartbeat_at"])
    op.create_table(
        "device_models",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("latest_sample_time", sa.Float(), nullable=True),
        sa.Column("latest_inference", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE",
                                name="fk_device_models_device_id_devices"),
        sa.PrimaryKeyConstraint("device_id", "model_name", name="pk_device_models"),
    )
    op.create_table(
        "packaging_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("artifact_key", sa.Text(), nullable=True),
        sa.Column("checksum_sha1", sa.String(40), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("completed_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_packaging_jobs"),
        sa.UniqueConstraint("name", name="uq_packaging_jobs_name"),
    )
    op.create_table(
        "deployment_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("fleet_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["fleet_id"], ["fleets.id"],
                                name="fk_deployment_plans_fleet_id_fleets"),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_plans"),
        sa.UniqueConstraint("name", name="uq_deployment_plans_name"),
    )
    op.create_table(
        "plan_models",
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("model_handle", sa.String(63), nullable=False),
        sa.Column("packaging_job_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["plan_id"], ["deployment_plans.id"], ondelete="CASCADE",
                                name="fk_plan_models_plan_id_deployment_plans"),
        sa.ForeignKeyConstraint(["packaging_job_id"], ["packaging_jobs.id"],
                                name="fk_plan_models_packaging_job_id_packaging_jobs"),
        sa.PrimaryKeyConstraint("plan_id", "model_handle", name="pk_plan_models"),
    )
    op.create_table(
        "stages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("deployment_name", sa.String(63), nullable=False),
        sa.Column("selection_type", sa.String(16), nullable=False),
        sa.Column("device_names", sa.JSON(), nullable=True),
        sa.Column("percentage", sa.Integer(), nullable=True),
        sa.Column("name_contains", sa.String(63), nullable=True),
        sa.Column("failure_handling_policy", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("stopped_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["plan_id"], ["deployment_plans.id"], ondelete="CASCADE",
                                name="fk_stages_plan_id_deployment_plans"),
        sa.PrimaryKeyConstraint("id", name="pk_stages"),
        sa.UniqueConstraint("deployment_name", name="uq_stages_deployment_name"),
        sa.UniqueConstraint("plan_id", "name", name="uq_stages_plan_id_name"),
    )
    op.create_table(
        "stage_devices",
        sa.Column("stage_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("fetched_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["stage_id"], ["stages.id"], ondelete="CASCADE",
                                name="fk_stage_devices_stage_id_stages"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE",
                                name="fk_stage_devices_device_id_devices"),
        sa.PrimaryKeyConstraint("stage_id", "device_id", name="pk_stage_devices"),
    )
    op.create_index("ix_stage_devices_device_status", "stage_devices", ["device_id", "status"])


def downgrade() -> None:
    """Drop every table (development only: this loses all data)."""
    for table in ("stage_devices", "stages", "plan_models", "deployment_plans", "packaging_jobs",
                  "device_models", "devices", "fleets", "admin_tokens", "server_state"):
        op.drop_table(table)
