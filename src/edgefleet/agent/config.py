"""The agent's configuration: a flat JSON object, validated with pydantic.

Keys named ``sagemaker_edge_*`` are the SageMaker Edge Manager agent's own
(shared/spec/agent-api.md, "Command line and config") and keep their documented meaning, so an
existing ``config.json`` works unchanged. Keys named ``edgefleet_*`` are edgefleet's additions.
Unknown keys are logged as warnings and ignored; a key with a wrong type or value fails at start
with a :class:`~edgefleet.errors.ConfigError` naming the key and what is expected.

A running agent reads its file again on SIGHUP and applies only :data:`RELOADABLE_KEYS` (the
device's control-plane credentials); :meth:`AgentConfig.changed_keys` tells what else changed,
which waits for a restart.

Each field's docstring is its reference documentation (``edgefleet-agent --describe-config``
prints them).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from edgefleet import jsondoc
from edgefleet.errors import ConfigError
from edgefleet.wire.mqtt import DEFAULT_TOPIC_PREFIX, check_topic_prefix, parse_broker_url

log = logging.getLogger(__name__)

#: Device and fleet names, as the sagemaker-edge service model allows them (1-63 chars).
DEVICE_NAME_PATTERN = r"^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$"

#: Largest embedded capture payload in bytes; larger payloads go to a raw file (spec: max 3072).
MAX_BASE64_EMBED_LIMIT = 3072

#: The keys a running agent applies when it reads its config file again (SIGHUP): the device's
#: control-plane credentials, which ``edgefleet device credentials`` rotates. A change of any
#: other key is logged and waits for a restart.
RELOADABLE_KEYS = ("edgefleet_control_access_key_id", "edgefleet_control_secret_access_key")

#: The keys saying whom the control-plane credentials are for. A reloaded file that changes one
#: of them holds credentials for another device or control plane, so a reload keeps the
#: current credentials as well.
IDENTITY_KEYS = ("sagemaker_edge_core_device_name", "sagemaker_edge_core_device_fleet_name",
                 "sagemaker_edge_core_endpoint_override", "sagemaker_edge_core_region",
                 "sagemaker_edge_provider_provider")


def _default_device_name() -> str:
    name = "".join(c if c.isalnum() else "-" for c in socket.gethostname()).strip("-")
    return (name or "edge-device")[:63]


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: what cgroups, containers and taskset allow
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 2


def _default_workers(data: dict[str, Any]) -> int:
    # ``data`` holds the fields validated so far (the database switch and the CPU affinity
    # come first). The cores are those the agent will run on, not all the machine has.
    cores = len(data.get("edgefleet_cpu_affinity") or ()) or _usable_cores()
    if data.get("sagemaker_edge_db_enable"):
        return max(4, 2 * cores)
    return max(2, cores)


class AgentConfig(BaseModel):
    """Validated agent configuration. Build it with :func:`load_config` or :meth:`from_mapping`."""

    model_config = ConfigDict(
        extra="allow", frozen=True, validate_default=True, use_attribute_docstrings=True)

    # -- identity and control plane ----------------------------------------------------------
    sagemaker_edge_core_device_name: str = Field(
        default_factory=_default_device_name, min_length=1, max_length=63,
        pattern=DEVICE_NAME_PATTERN)
    """This device's name in its device fleet (default: the host name)."""

    sagemaker_edge_core_device_fleet_name: str = Field(
        default="default", min_length=1, max_length=63, pattern=DEVICE_NAME_PATTERN)
    """The device fleet this device belongs to; also a path component of captured data."""

    sagemaker_edge_core_region: str = "us-east-1"
    """Region name used when signing requests to the control plane and the S3-compatible store."""

    sagemaker_edge_core_root_certs_path: Path | None = None
    """Folder of PEM certificates that model-package signatures must chain to."""

    sagemaker_edge_core_endpoint_override: str | None = None
    """Base URL of the edgefleet control plane (e.g. ``https://fleet.example:8443``)."""

    # -- provider ------------------------------------------------------------------------------
    sagemaker_edge_provider_provider: Literal["Aws", "None", "Custom"] = "None"
    """``Aws``: talk to the control plane at the endpoint override; ``None``: run standalone;
    ``Custom``: a provider library (not supported by edgefleet: refused at start)."""

    sagemaker_edge_provider_provider_path: Path | None = None
    """Path of the original agent's provider library; accepted, unused by edgefleet."""

    sagemaker_edge_provider_aws_ca_cert_file: Path | None = None
    """CA bundle (PEM) used to verify the control plane's and the store's TLS certificates."""

    sagemaker_edge_provider_aws_cert_file: Path | None = None
    """Device client certificate (PEM) for mutual TLS, where the control plane asks for one."""

    sagemaker_edge_provider_aws_cert_pk_file: Path | None = None
    """Private key (PEM) of the device client certificate."""

    sagemaker_edge_provider_aws_iot_cred_endpoint: str | None = None
    """Credentials endpoint of the original product; accepted, unused by edgefleet."""

    sagemaker_edge_provider_s3_bucket_name: str | None = None
    """Bucket that captured data goes to when the destination is ``Cloud``."""

    # -- logging and telemetry -----------------------------------------------------------------
    sagemaker_edge_log_verbose: bool = False
    """Log at DEBUG level instead of INFO."""

    sagemaker_edge_telemetry_libsystemd_path: Path | None = None
    """Path of libsystemd for sd_notify; edgefleet notifies systemd through ``$NOTIFY_SOCKET``
    directly, so this is accepted and unused."""

    # -- capture ---------------------------------------------------------------------------------
    sagemaker_edge_core_capture_data_destination: Literal["Disk", "Cloud"] = "Disk"
    """Where captured data goes: ``Disk`` (under the disk path) or ``Cloud`` (the S3 bucket)."""

    sagemaker_edge_core_capture_data_disk_path: Path = Path("capture")
    """Folder of captured data for the ``Disk`` destination (relative: to the working dir)."""

    sagemaker_edge_core_folder_prefix: str = ""
    """First path component of captured data, on disk and in the bucket."""

    sagemaker_edge_core_capture_data_buffer_size: int = Field(default=30, ge=1)
    """Capture requests held in memory before CaptureData answers RESOURCE_EXHAUSTED."""

    sagemaker_edge_core_capture_data_batch_size: int = Field(default=10, ge=1)
    """A batch file is written when this many capture requests wait (must be < buffer size)."""

    sagemaker_edge_core_capture_data_push_period_seconds: float = Field(default=4.0, gt=0)
    """A batch file is written at least this often (seconds) when anything waits."""

    sagemaker_edge_core_capture_data_base64_embed_limit: int = Field(
        default=MAX_BASE64_EMBED_LIMIT, ge=0, le=MAX_BASE64_EMBED_LIMIT)
    """Payloads up to this many bytes are embedded in the record as base64; larger ones are
    written as raw files beside the batch and referenced with ``data-ref``."""

    sagemaker_edge_core_capture_data_periodic_upload: bool = False
    """With the ``Disk`` destination: also move finished batch files to the bucket."""

    sagemaker_edge_core_capture_data_periodic_upload_period_seconds: float = Field(
        default=8.0, gt=0)
    """How often (seconds) finished batch files are moved to the bucket."""

    # -- 2022 keys -------------------------------------------------------------------------------
    sagemaker_edge_local_data_root_path: Path = Path("edgefleet-data")
    """Folder of the agent's own state: extracted packages, deployment state, capture spool."""

    sagemaker_edge_model_deployment_poll_interval: float = Field(default=1440.0, gt=0)
    """Minutes between polls of the control plane for deployments."""

    sagemaker_edge_model_deployment_max_retry: int = Field(default=3, ge=0)
    """How often a failed deployment download is retried before it is reported as failed."""

    sagemaker_edge_dlr_backend_options: str | dict[str, Any] | None = None
    """Backend options of the DLR runtime, which edgefleet replaces with ONNX Runtime; accepted
    and ignored (use ``edgefleet_intra_op_threads``)."""

    sagemaker_edge_db_enable: bool = False
    """Persist runtime state (capture spool, deployment state) in SQLite so that nothing
    acknowledged is lost on a crash or power loss."""

    # -- edgefleet additions ---------------------------------------------------------------------
    edgefleet_allow_unsigned_models: bool = False
    """Load packages without a signature, and bare folders holding a ``model.onnx``. Off by
    default: only turn it on for development."""

    edgefleet_intra_op_threads: int = Field(default=1, ge=0)
    """ONNX Runtime intra-op threads per model (0: ONNX Runtime's default, one per core)."""

    edgefleet_cpu_affinity: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    """CPUs (numbers as in ``/proc/cpuinfo``) every thread of the agent runs on (Linux); empty:
    wherever the system puts them. Pinning the agent to one CPU keeps the hand-offs between
    gRPC's threads on one core: on the project's 2-core VM it raised 1 KB captures/s by 38-42%
    at 4 clients and cut Predict's p50 from 0.62 to 0.38 ms, but 600 KB captures fell by 14-38%
    (docs/capture.md, "Throughput"). A CPU the agent may not use stops the start with an error
    naming the allowed ones; more ``edgefleet_intra_op_threads`` than pinned CPUs (or 0) is
    logged as a warning."""

    edgefleet_grpc_workers: int = Field(default_factory=_default_workers, ge=1)
    """Threads serving gRPC calls (default: the number of cores the agent may run on, at least
    2; with ``sagemaker_edge_db_enable`` twice that, at least 4, because each CaptureData call
    holds its thread until the spool's commit is on disk: measured with 4 clients on 2 cores, 4
    threads gave 5-36% more durable captures/s than 2 across runs, while without the spool 2 threads
    stay faster; see benchmarks/capture/README.md)."""

    edgefleet_max_message_bytes: int = Field(default=1 << 30, ge=4 << 20, le=(1 << 31) - 1)
    """Largest gRPC message accepted or sent, in bytes (default 1 GiB; gRPC's own ceiling is
    2 GiB - 1)."""

    edgefleet_max_package_bytes: int = Field(default=4 << 30, ge=1 << 20)
    """Largest total uncompressed size of a model package archive, in bytes (default 4 GiB)."""

    edgefleet_capture_clock_skew_seconds: float = Field(default=5.0, ge=0)
    """How far in the future (seconds) a capture's inference timestamp may lie."""

    edgefleet_capture_spool_max_bytes: int = Field(default=1 << 30, ge=1 << 16)
    """Disk budget of the capture spool, in bytes, while the destination is unreachable."""

    edgefleet_capture_buffer_max_bytes: int = Field(default=256 << 20, ge=1 << 16)
    """Bytes of tensor and auxiliary data the in-memory capture buffer holds at most (without
    the durable spool); beyond it CaptureData answers RESOURCE_EXHAUSTED, so a slow destination
    and large tensors cannot exhaust the device's memory."""

    edgefleet_capture_overflow_policy: Literal["refuse", "drop-oldest"] = "refuse"
    """When the spool budget is reached: ``refuse`` new captures (RESOURCE_EXHAUSTED) or
    ``drop-oldest`` records (counted and logged)."""

    edgefleet_capture_status_ttl_seconds: float = Field(default=3600.0, gt=0)
    """How long (seconds) a finished capture's status stays queryable."""

    edgefleet_capture_status_max_ids: int = Field(default=100_000, ge=1)
    """Finished capture statuses kept at most (each costs about 300-500 bytes: the default
    bounds the table near 50 MB); beyond it the oldest are forgotten before their TTL and
    GetCaptureDataStatus answers NOT_FOUND for them."""

    edgefleet_capture_sampling: dict[str, float] = Field(default_factory=dict)
    """Per model alias, the fraction (0-1) of Predict calls the agent captures by itself."""

    edgefleet_s3_endpoint_url: str | None = None
    """Endpoint of the S3-compatible store (default: AWS S3 for the region)."""

    edgefleet_s3_access_key_id: str | None = None
    """Access key of the S3-compatible store (default: boto3's credential chain)."""

    edgefleet_s3_secret_access_key: SecretStr | None = None
    """Secret key of the S3-compatible store (default: boto3's credential chain)."""

    edgefleet_s3_upload_concurrency: int = Field(default=8, ge=1, le=64)
    """PUTs in flight at most when a batch's raw payload files go to the bucket (captures with
    payloads above the base64 embed limit); 1 uploads one object at a time."""

    edgefleet_control_access_key_id: str | None = None
    """This device's access key id at the control plane (``edgefleet device register`` writes
    it; default: boto3's credential chain). A running agent takes a new one from its config
    file on SIGHUP (see "Reloading on SIGHUP")."""

    edgefleet_control_secret_access_key: SecretStr | None = None
    """This device's secret access key at the control plane; it signs every request (SigV4) and
    is never logged (default: boto3's credential chain). Taken again on SIGHUP, like the key
    id."""

    edgefleet_control_timeout_seconds: float = Field(default=30.0, gt=0)
    """Connect and read timeout of each request to the control plane, in seconds."""

    edgefleet_control_backoff_seconds: float = Field(default=1.0, gt=0)
    """First delay, in seconds, before a failed control-plane request or package download is
    retried; it doubles per failure (with random jitter) up to the maximum below."""

    edgefleet_control_max_backoff_seconds: float = Field(default=300.0, gt=0)
    """Longest delay, in seconds, between retries while the control plane is unreachable."""

    edgefleet_heartbeat_interval_seconds: float = Field(default=60.0, gt=0)
    """Seconds between heartbeats (agent and per-model metrics, deployment results)."""

    edgefleet_deployment_poll_seconds: float | None = Field(default=None, gt=0)
    """Seconds between deployment polls; overrides
    ``sagemaker_edge_model_deployment_poll_interval`` (minutes) when set."""

    edgefleet_deployment_health_seconds: float = Field(default=30.0, ge=0)
    """Health window after a deployment swaps a model in, in seconds: a prediction error in
    this window fails the deployment (and rolls it back under ``ROLLBACK_ON_FAILURE``)."""

    edgefleet_mqtt_url: str | None = None
    """MQTT broker the control plane publishes deployment notifications to
    (``mqtt://host:port``, port default 1883; no credentials or TLS yet). When set (and the
    provider is ``Aws``), the agent subscribes to ``<prefix>/<fleet>/<device>/deployments`` and
    polls GetDeployments as soon as a message arrives, besides its regular polls. A broker that
    is down is logged and retried with backoff (1 s doubling up to 120 s); polling goes on.
    Default: off."""

    edgefleet_mqtt_topic_prefix: str = DEFAULT_TOPIC_PREFIX
    """First topic levels of deployment notifications (the control plane's
    ``EDGEFLEET_SERVER_MQTT_TOPIC_PREFIX``): 1-200 characters, no ``+``, ``#``, or leading or
    trailing ``/``."""

    # -- validation ------------------------------------------------------------------------------
    @field_validator("edgefleet_capture_sampling")
    @classmethod
    def _rates_are_fractions(cls, value: dict[str, float]) -> dict[str, float]:
        for alias, rate in value.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"sampling rate of {alias!r} must be between 0 and 1, got {rate}")
        return value

    @field_validator("edgefleet_cpu_affinity")
    @classmethod
    def _distinct_cpus(cls, value: list[int]) -> list[int]:
        return sorted(set(value))  # a CPU named twice is one CPU

    @field_validator("edgefleet_mqtt_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_broker_url(value)
        return value

    @field_validator("edgefleet_mqtt_topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        return check_topic_prefix(value)

    @model_validator(mode="after")
    def _consistent(self) -> AgentConfig:
        if (self.sagemaker_edge_core_capture_data_batch_size
                >= self.sagemaker_edge_core_capture_data_buffer_size):
            raise ValueError(
                "sagemaker_edge_core_capture_data_batch_size must be smaller than "
                "sagemaker_edge_core_capture_data_buffer_size "
                f"({self.sagemaker_edge_core_capture_data_batch_size} >= "
                f"{self.sagemaker_edge_core_capture_data_buffer_size})")
        if self.sagemaker_edge_provider_provider == "Custom":
            raise ValueError(
                "sagemaker_edge_provider_provider 'Custom' loads a vendor library, which "
                "edgefleet does not support; use 'Aws' with sagemaker_edge_core_endpoint_override "
                "pointing at an edgefleet control plane, or 'None'")
        if (self.sagemaker_edge_provider_provider == "Aws"
                and not self.sagemaker_edge_core_endpoint_override):
            raise ValueError(
                "sagemaker_edge_provider_provider 'Aws' needs "
                "sagemaker_edge_core_endpoint_override (the control plane's base URL)")
        needs_bucket = (self.sagemaker_edge_core_capture_data_destination == "Cloud"
                        or self.sagemaker_edge_core_capture_data_periodic_upload)
        if needs_bucket and not self.sagemaker_edge_provider_s3_bucket_name:
            raise ValueError(
                "capture to the Cloud destination (or periodic upload) needs "
                "sagemaker_edge_provider_s3_bucket_name")
        return self

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, source: str = "config") -> AgentConfig:
        """Validate a flat mapping of config keys.

        Unknown keys are logged as warnings. Relative paths stay relative (they resolve against
        the agent's working directory, as in the original agent).

        Raises:
            ConfigError: a key has a wrong type or value; the message names every such key and
                what is expected.
        """
        known = set(cls.model_fields)
        for key in sorted(set(data) - known):
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "is it misspelt?"
            log.warning("%s: unknown key %r ignored (%s)", source, key, hint)
        try:
            config = cls.model_validate({k: v for k, v in data.items() if k in known})
        except ValidationError as error:
            raise ConfigError(_describe(error, source)) from None
        pinned = len(config.edgefleet_cpu_affinity)
        if pinned and not 0 < config.edgefleet_intra_op_threads <= pinned:
            log.warning("%s: edgefleet_intra_op_threads %d (0: one per core of the machine) "
                        "share the %d CPU(s) of edgefleet_cpu_affinity; set it to 1 to %d",
                        source, config.edgefleet_intra_op_threads, pinned, pinned)
        return config

    def changed_keys(self, other: AgentConfig) -> list[str]:
        """The keys whose values differ in ``other``, in the order of the fields (secrets
        compare by their values)."""
        return [name for name in type(self).model_fields
                if getattr(self, name) != getattr(other, name)]

    def describe(self) -> dict[str, Any]:
        """The effective settings as JSON-ready values, secrets masked (for logs)."""
        return json.loads(self.model_dump_json())  # type: ignore[no-any-return]


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        if item["type"] == "default_factory_not_called":
            continue  # a default that depends on a key already reported: not the user's error
        key = ".".join(str(part) for part in item["loc"]) or "(whole config)"
        given = item.get("input")
        shown = "" if key == "(whole config)" else f" (got {given!r})"
        lines.append(f"{source}: key {key}: {item['msg']}{shown}")
    return "; ".join(lines)


def load_config(path: Path | str) -> AgentConfig:
    """Read and validate the agent's JSON config file (a path, as :class:`~pathlib.Path` or
    ``str``).

    Raises:
        ConfigError: the file is missing, is not a JSON object, or a key is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        data = jsondoc.loads(text)
    except ValueError as error:
        raise ConfigError(f"config file {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object of keys, "
                          f"got {type(data).__name__}")
    return AgentConfig.from_mapping(data, source=str(path))


def reference_markdown() -> str:
    """The config reference as a Markdown table, generated from the field docstrings.

    ``docs/agent-config.md`` is this text; a test keeps the two equal.
    """
    lines = [
        "# Agent config reference",
        "",
        "The agent reads a flat JSON object (`edgefleet-agent -a SOCKET -c CONFIG.json`).",
        "`sagemaker_edge_*` keys keep the SageMaker Edge Manager agent's meaning; `edgefleet_*`",
        "keys are edgefleet's additions. Unknown keys are logged and ignored; a wrong type or",
        "value stops the agent with the key's name and what is expected.",
        "",
        "Generated from `src/edgefleet/agent/config.py` by",
        "`python -c 'import edgefleet.agent.config as c, sys; "
        "sys.stdout.write(c.reference_markdown())'`.",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in AgentConfig.model_fields.items():
        annotation = str(field.annotation).replace("typing.", "").replace("pathlib.", "")
        annotation = annotation.replace("<class '", "").replace("'>", "")
        if field.default_factory is not None:
            default = "see meaning" if name in ("sagemaker_edge_core_device_name",
                                                "edgefleet_grpc_workers") else "empty"
        else:
            shown = json.dumps(field.default, default=str)
            default = "none" if field.default is None else f"`{shown}`"
        meaning = " ".join((field.description or "").split()).replace("|", "\\|")
        lines.append(f"| `{name}` | {annotation.replace('|', 'or')} | {default} | {meaning} |")
    lines += ["", *_RELOADING.format(
        reloadable=" and ".join(f"`{key}`" for key in RELOADABLE_KEYS),
        identity=", ".join(f"`{key}`" for key in IDENTITY_KEYS)).splitlines()]
    return "\n".join(lines) + "\n"


_RELOADING = """\
## Reloading on SIGHUP

`kill -HUP <agent pid>` (`systemctl reload edgefleet-agent` under the unit that
`edgefleet-agent install-service` writes) makes the running agent read its config file again,
the same `-c` path (or the `--from-greengrass-config` file), with the same validation as at
start. It applies {reloadable}: the device's control-plane credentials, which
`edgefleet device credentials NAME --agent-config FILE` rotates (write the new file over the
agent's, then send SIGHUP). The agent keeps running with the same pid and never interrupts a
gRPC call (Predict, CaptureData, ...): only the control-plane requests change credentials. A
heartbeat, registration check, deployment poll or package download in flight finishes with the
credentials it started with; the next one, at once rather than after its retry delay, signs
with the new ones. The log says `new control-plane credentials (access key id ...)`.

- Every other key needs a restart. A reload that finds one changed logs a warning naming each
  such key (`changed keys not applied until the agent restarts: ...`) and applies the
  credentials all the same.
- When one of {identity} changed as well, the new credentials belong to another device or
  control plane: the agent keeps its current ones and says so (restart it to use the new file).
- A file that cannot be read, is not JSON or fails validation logs one ERROR naming the
  problem (`SIGHUP: config not reloaded ...`), and the agent serves on with its current config
  and credentials.
- Without `-c` there is no file to read; SIGHUP only logs that.
- Credentials from boto3's chain (no `edgefleet_control_*` keys: `AWS_*` variables, a shared
  credentials file, a container or Greengrass token exchange service) are boto3's own: those
  with an expiry (container and TES credentials) refresh themselves, the others are read once
  at start. SIGHUP leaves them alone unless the file now names static keys, which then apply.
  The S3 keys of capture (`edgefleet_s3_*`) need a restart; TES credentials for S3 refresh
  themselves.
- SIGTERM and SIGINT (Ctrl-C) stop the agent; SIGHUP no longer does.
"""
