"""Settings of ``edgefleet server``: one pydantic-settings class, read from ``EDGEFLEET_SERVER_*``.

The ``edgefleet server`` command turns its options into these environment variables, so every
uvicorn worker process builds the same settings (the server keeps no other state in memory).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgefleet.wire.mqtt import DEFAULT_TOPIC_PREFIX, check_topic_prefix, parse_broker_url

#: Seconds between deployment polls written into new devices' agent configs (the agent's own
#: default is a day, ``sagemaker_edge_model_deployment_poll_interval`` = 1440 minutes).
AGENT_POLL_SECONDS = 30.0


class ServerSettings(BaseSettings):
    """Configuration of one control-plane instance; several instances may share one database."""

    model_config = SettingsConfigDict(
        env_prefix="EDGEFLEET_SERVER_", frozen=True, use_attribute_docstrings=True)

    data_dir: Path = Path("edgefleet-server")
    """Folder of the embedded defaults: SQLite file, local object store, server key, admin token."""

    database_url: str | None = None
    """SQLAlchemy URL (``postgresql+psycopg://user@host/db``); default: SQLite in ``data_dir``."""

    object_store: str | None = None
    """``s3://bucket/prefix?endpoint=http://host:port&region=r`` for an S3-compatible store (boto3
    reads credentials from the usual ``AWS_*`` variables); default: ``data_dir/objects``."""

    server_key_file: Path | None = None
    """File holding the 32-byte key that encrypts device secrets and the signing key at rest
    (default ``data_dir/server.key``, created at first start). Instances sharing a database
    must share this key."""

    admin_token_file: Path | None = None
    """Where the admin token is written at first start, mode 0600 (default
    ``data_dir/admin-token``). It is never logged; only its SHA-256 is stored."""

    public_url: str | None = None
    """Base URL devices use to reach this server, for download links of the local object store
    (default: the scheme and host of the device's own request)."""

    region: str = "us-east-1"
    """Region written into agent configs and ARNs; devices and operators sign requests for it."""

    account_id: str = Field(default="000000000000", pattern=r"^\d{12}$")
    """The 12-digit account id in the ARNs the sagemaker API answers with
    (``arn:aws:sagemaker:<region>:<account id>:device-fleet/<name>``)."""

    source_s3_endpoint_url: str | None = None
    """Endpoint of the S3-compatible store compilation jobs read models from when it is not
    the server's own object store (default: boto3's, which also honours
    ``AWS_ENDPOINT_URL_S3``); credentials come from boto3's usual chain."""

    operator_credentials_file: Path | None = None
    """Where the first operator key of the sagemaker API is written at first start, mode 0600,
    in AWS shared-credentials format, profile ``default`` (default
    ``data_dir/operator-credentials``)."""

    connected_window_seconds: float = Field(default=600.0, gt=0)
    """A device whose latest heartbeat is younger than this many seconds counts as connected;
    models with inference (capture) in the window count as active (sampling)."""

    clock_skew_seconds: float = Field(default=300.0, gt=0)
    """Largest accepted difference, in seconds, between a request's SigV4 time and the server's."""

    registration_cache_ttl_seconds: int = Field(default=3600, ge=1, le=10**6)
    """``CacheTTL`` returned by GetDeviceRegistration, in seconds."""

    auth_failures_per_minute: int = Field(default=20, ge=1)
    """Failed authentications (admin token or device signature) one client address may make in
    a minute; beyond it every request from that address is answered 429 until its oldest
    failure is a minute old. Counted per server process."""

    max_request_bytes: int = Field(default=1 << 20, ge=1 << 10)
    """Largest request body, in bytes, of every route but the model upload (default 1 MiB);
    larger ones are refused with 413 before they are read."""

    max_model_upload_bytes: int = Field(default=4 << 30, ge=1 << 20)
    """Largest request body of a packaging job's model upload, in bytes (default 4 GiB, the
    agent's default package cap)."""

    heartbeat_batch_seconds: float = Field(default=0.005, ge=0, le=1)
    """Longest time, in seconds, a heartbeat waits for others to share its transaction (group
    commit; each request waits for its commit). Heartbeats that arrive while a batch is being
    written always share the next one."""

    credential_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    """How long a device's decrypted credentials stay cached in each server process, in
    seconds (0: read the database on every request). A deregistered device's credentials keep
    working at most this long."""

    agent_deployment_poll_seconds: float = Field(default=AGENT_POLL_SECONDS, gt=0)
    """``edgefleet_deployment_poll_seconds`` written into the agent configs of new devices:
    seconds between an agent's polls for deployments (the agent alone would wait a day)."""

    download_url_ttl_seconds: int = Field(default=3600, ge=60)
    """Lifetime of presigned S3 download URLs handed to devices, in seconds."""

    mqtt_url: str | None = None
    """MQTT broker (``mqtt://host:port``, port default 1883; no credentials or TLS yet) to
    notify devices on when a stage starts: one message per selected device on
    ``<mqtt_topic_prefix>/<fleet>/<device>/deployments``, so agents with ``edgefleet_mqtt_url``
    poll at once. Default: off (devices find deployments at their regular poll)."""

    mqtt_topic_prefix: str = DEFAULT_TOPIC_PREFIX
    """First topic levels of the stage notifications (agents: ``edgefleet_mqtt_topic_prefix``)."""

    history_sample_seconds: float = Field(default=60.0, ge=1)
    """Heartbeat history for the dashboard: a device's heartbeat is kept as a sample when it is
    its first in a period of this many seconds (``EDGEFLEET_SERVER_HISTORY_SAMPLE_SECONDS``)."""

    history_retention_seconds: float = Field(default=86_400.0, ge=60)
    """Samples older than this many seconds are deleted (default a day: at most
    retention / sample = 1,440 samples per device, about 0.7 MB with two models;
    ``EDGEFLEET_SERVER_HISTORY_RETENTION_SECONDS``)."""

    dashboard_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    """Lifetime of a dashboard login, in hours (``EDGEFLEET_SERVER_DASHBOARD_SESSION_HOURS``)."""

    capture_location: str | None = None
    """Where agents store captured data, read by the dashboard's "Captured data" and "Drift"
    pages (``EDGEFLEET_SERVER_CAPTURE_LOCATION``): a folder (the agents' disk path, or a copy
    of it), or ``s3://bucket/prefix?endpoint=URL&region=NAME`` read with boto3 (credentials
    from its usual chain, as for ``object_store``; the prefix is the agents'
    ``sagemaker_edge_core_folder_prefix``). Default: off."""

    capture_scan_seconds: float = Field(default=5.0, ge=0.1, le=3600)
    """Seconds between two scans of ``capture_location`` for new batch files
    (``EDGEFLEET_SERVER_CAPTURE_SCAN_SECONDS``)."""

    @field_validator("mqtt_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_broker_url(value)
        return value

    @field_validator("mqtt_topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        return check_topic_prefix(value)

    def resolved_database_url(self) -> str:
        """The database URL to use: the configured one, or SQLite inside ``data_dir``."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'edgefleet.db').resolve()}"

    def resolved_server_key_file(self) -> Path:
        """The server key file to use (``server_key_file`` or ``data_dir/server.key``)."""
        return self.server_key_file or self.data_dir / "server.key"

    def resolved_admin_token_file(self) -> Path:
        """Where the first start writes the admin token."""
        return self.admin_token_file or self.data_dir / "admin-token"

    def resolved_operator_credentials_file(self) -> Path:
        """Where the first start writes the first operator key."""
        return self.operator_credentials_file or self.data_dir / "operator-credentials"
