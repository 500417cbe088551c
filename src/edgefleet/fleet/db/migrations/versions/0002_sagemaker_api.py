"""The sagemaker API: fleet, packaging-job and plan members SageMaker has, compilation jobs,
operator keys.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_Columns = list[tuple[str, Any]]
_FLEET: _Columns = [("role_arn", sa.Text()), ("kms_key_id", sa.Text()),
                    ("iot_role_alias", sa.Text()), ("tags", sa.JSON()), ("updated_at", sa.Float())]
_PACKAGING: _Columns = [("compilation_job_name", sa.String(63)), ("role_arn", sa.Text()),
                        ("output_location", sa.Text()), ("kms_key_id", sa.Text()),
                        ("resource_key", sa.Text()), ("tags", sa.JSON()), ("signature", sa.Text())]
_PLAN: _Columns = [("updated_at", sa.Float()), ("tags", sa.JSON())]
_ADDED = {"fleets": _FLEET, "packaging_jobs": _PACKAGING, "deployment_plans": _PLAN}


def upgrade() -> None:
    """Add the nullable columns (batch mode: SQLite cannot alter tables in place) and the two
    new tables."""
    for table, columns in _ADDED.items():
        with op.batch_alter_table(table) as batch:
            for name, kind in columns:
                batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_table(
        "compilation_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=False),
        sa.Column("role_arn", sa.Text(), nullable=False),
        sa.Column("input_config", sa.JSON(), nullable=False),
        sa.Column("output_config", sa.JSON(), nullable=False),
        sa.Column("stopping_condition", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("model_key", sa.Text(), nullable=True),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_compilation_jobs"),
        sa.UniqueConstraint("name", name="uq_compilation_jobs_name"),
    )
    op.create_table(
        "operator_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("access_key_id", sa.String(20), nullable=False),
        sa.Column("secret_enc", sa.LargeBinary(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_operator_keys"),
        sa.UniqueConstraint("access_key_id", name="uq_operator_keys_access_key_id"),
    )


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_table("operator_keys")
    op.drop_table("compilation_jobs")
    for table, columns in _ADDED.items():
        with op.batch_alter_table(table) as batch:
            for name, _ in columns:
                batch.drop_column(name)
