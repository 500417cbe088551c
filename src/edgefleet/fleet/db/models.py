"""SQLAlchemy 2 models of the control plane; every table is created by an Alembic migration.

Times are ``float`` epoch seconds (UTC) in every ``*_at`` / ``*_time`` column: the same type on
SQLite and PostgreSQL, and cheap to compare in the fleet report.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Constraint names are deterministic so that migrations can refer to them on every engine.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the naming convention above."""

    metadata = MetaData(naming_convention=NAMING)


class ServerState(Base):
    """Named values created at first start: the server-key check value, the signing key
    (encrypted), the signing and root certificates (PEM)."""

    __tablename__ = "server_state"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class AdminToken(Base):
    """An admin token, stored as its SHA-256 hex digest."""

    __tablename__ = "admin_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class Fleet(Base):
    """A device fleet: a named group of devices and where their captured data goes."""

    __tablename__ = "fleets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    output_location: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    #: Kept and shown for the sagemaker API, never used (edgefleet assumes no IAM role).
    role_arn: Mapped[str | None] = mapped_column(Text, nullable=True)
    kms_key_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    iot_role_alias: Mapped[str | None] = mapped_column(Text, nullable=True)
    tags: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Device(Base):
    """A registered device, its credentials and its latest heartbeat."""

    __tablename__ = "devices"
    __table_args__ = (Index("ix_devices_fleet_heartbeat", "fleet_id", "last_heartbeat_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    fleet_id: Mapped[int] = mapped_column(ForeignKey("fleets.id"))
    description: Mapped[str] = mapped_column(Text, default="")
    iot_thing_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    access_key_id: Mapped[str] = mapped_column(String(20), unique=True)
    #: AES-GCM ciphertext of the secret access key (see edgefleet.fleet.crypto).
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    registered_at: Mapped[float] = mapped_column(Float)
    last_heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    agent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    agent_metrics: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


class DeviceModel(Base):
    """A model that a device's latest heartbeat reported."""

    __tablename__ = "device_models"
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    latest_sample_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    latest_inference: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


class PackagingJob(Base):
    """A packaging job: an uploaded ONNX model turned into a signed package in the object store."""

    __tablename__ = "packaging_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    model_name: Mapped[str] = mapped_column(String(255))
    model_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    status_message: Mapped[str] = mapped_column(Text, default="")
    artifact_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    checksum_sha1: Mapped[str | None] = mapped_column(String(40), nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: The compilation job whose model was packaged (None: an uploaded model).
    compilation_job_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    #: SageMaker's members, kept and shown, never used: the package goes to the server's store.
    role_arn: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_location: Mapped[str | None] = mapped_column(Text, nullable=True)
    kms_key_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    resource_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    tags: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    #: Base64 of the package's manifest signature (DescribeEdgePackagingJob's ModelSignature).
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)


class CompilationJob(Base):
    """A compilation job: an ONNX model read from S3, checked by ONNX Runtime, kept for
    packaging under ``model_key`` (edgefleet compiles nothing; see edgefleet.fleet.compilation)."""

    __tablename__ = "compilation_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str] = mapped_column(Text, default="")
    role_arn: Mapped[str] = mapped_column(Text)
    input_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    output_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    stopping_condition: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    model_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class OperatorKey(Base):
    """An operator access key of the sagemaker API; the secret is AES-GCM-encrypted under the
    server key like devices' (SigV4 needs the secret itself)."""

    __tablename__ = "operator_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    access_key_id: Mapped[str] = mapped_column(String(20), unique=True)
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class DeploymentPlan(Base):
    """A deployment plan: models (by handle) to roll out to one fleet, in stages."""

    __tablename__ = "deployment_plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    fleet_id: Mapped[int] = mapped_column(ForeignKey("fleets.id"))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    tags: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)


class PlanModel(Base):
    """One model of a plan: the handle devices see and the packaging job that made it."""

    __tablename__ = "plan_models"
    plan_id: Mapped[int] = mapped_column(
        ForeignKey("deployment_plans.id", ondelete="CASCADE"), primary_key=True)
    model_handle: Mapped[str] = mapped_column(String(63), primary_key=True)
    packaging_job_id: Mapped[int] = mapped_column(ForeignKey("packaging_jobs.id"))


class Stage(Base):
    """A stage of a plan: a device selection and a failure-handling policy, started on demand.

    ``deployment_name`` is what GetDeployments hands out and heartbeats report back.
    """

    __tablename__ = "stages"
    __table_args__ = (UniqueConstraint("plan_id", "name", name="uq_stages_plan_id_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("deployment_plans.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    position: Mapped[int] = mapped_column(Integer)
    deployment_name: Mapped[str] = mapped_column(String(63), unique=True)
    selection_type: Mapped[str] = mapped_column(String(16))
    device_names: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    percentage: Mapped[int | None] = mapped_column(Integer, nullable=True)
    name_contains: Mapped[str | None] = mapped_column(String(63), nullable=True)
    failure_handling_policy: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    stopped_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class StageDevice(Base):
    """A device selected by a started stage, and its deployment status from heartbeats."""

    __tablename__ = "stage_devices"
    __table_args__ = (Index("ix_stage_devices_device_status", "device_id", "status"),)
    stage_id: Mapped[int] = mapped_column(
        ForeignKey("stages.id", ondelete="CASCADE"), primary_key=True)
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    status_message: Mapped[str] = mapped_column(Text, default="")
    models: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    fetched_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[float] = mapped_column(Float)


class HeartbeatSample(Base):
    """A heartbeat kept as history (the first of each device per ``history_sample_seconds``,
    pruned after ``history_retention_seconds``; see :mod:`edgefleet.fleet.history`).

    ``agent`` maps agent metric names to values (``{"cpu-percent": 3.5, ...}``); ``models``
    maps model names to ``{"version": str | None, <metric name>: value, ...}``; the counts in
    it cover ``interval_seconds``, the time since the device's previous heartbeat.
    """

    __tablename__ = "heartbeat_samples"
    __table_args__ = (Index("ix_heartbeat_samples_device_at", "device_id", "at"),
                      Index("ix_heartbeat_samples_at", "at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    at: Mapped[float] = mapped_column(Float)
    interval_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    agent: Mapped[dict[str, float]] = mapped_column(JSON)
    models: Mapped[dict[str, dict[str, Any]]] = mapped_column(JSON)


class CaptureFile(Base):
    """A capture batch file the capture index has read (``key`` relative to the capture
    location), so that it is never indexed twice; ``errors`` counts its malformed lines and
    ``error`` names the first (see :mod:`edgefleet.fleet.capture_index`)."""

    __tablename__ = "capture_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    indexed_at: Mapped[float] = mapped_column(Float)


class CaptureEntry(Base):
    """One capture record of an indexed batch file: who, which model, when (the record's
    ``inferenceTime``, epoch s, and its UTC hour number ``floor(t / 3600)``), and where its line
    is (``offset`` and ``length`` in bytes, ``line`` counted from 1). ``event`` is the
    ``"event"`` string of an auxiliary JSON object, if any."""

    __tablename__ = "capture_entries"
    __table_args__ = (Index("ix_capture_entries_device_time", "device", "inference_time", "id"),
                      Index("ix_capture_entries_time", "inference_time", "id"),
                      Index("ix_capture_entries_model_time", "model_name", "inference_time", "id"),
                      Index("ix_capture_entries_event_time", "event", "inference_time", "id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("capture_files.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(Integer)
    fleet: Mapped[str] = mapped_column(String(255))
    device: Mapped[str] = mapped_column(String(255))
    model_name: Mapped[str] = mapped_column(String(255))
    model_version: Mapped[str] = mapped_column(String(64))
    capture_id: Mapped[str] = mapped_column(String(256))
    inference_time: Mapped[float] = mapped_column(Float)
    hour: Mapped[int] = mapped_column(Integer)
    sampled: Mapped[bool] = mapped_column(Boolean)
    event: Mapped[str | None] = mapped_column(String(64), nullable=True)


class CaptureHour(Base):
    """Captures of one device, model and version in one UTC hour of inference time (``hour`` =
    ``floor(epoch s / 3600)``): how many, how many had an event, and, when the version's
    package carries a drift baseline, the bin counts of its input tensor
    (``drift_counts[feature][bin]``, from :func:`edgefleet.drift.bin_counts`) over
    ``drift_rows`` tensor rows."""

    __tablename__ = "capture_hours"
    device: Mapped[str] = mapped_column(String(255), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    fleet: Mapped[str] = mapped_column(String(255))
    records: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)
    drift_rows: Mapped[int] = mapped_column(Integer)
    drift_counts: Mapped[list[list[int]] | None] = mapped_column(JSON, nullable=True)


class CaptureDevice(Base):
    """Totals of a device's indexed captures: records, events, and the range of their
    inference times (epoch s), for tiles and the device page without scanning records."""

    __tablename__ = "capture_devices"
    __table_args__ = (Index("ix_capture_devices_fleet", "fleet"),)
    device: Mapped[str] = mapped_column(String(255), primary_key=True)
    fleet: Mapped[str] = mapped_column(String(255))
    records: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)
    first_time: Mapped[float] = mapped_column(Float)
    last_time: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
