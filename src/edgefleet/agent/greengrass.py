"""The Greengrass v2 component's configuration, mapped to the agent's config.

AWS IoT Greengrass v2 ran the SageMaker Edge Manager agent as the component
``aws.greengrass.SageMakerEdgeManager``, configured with the parameters of
:data:`GREENGRASS_DEFAULTS` (shared/spec/agent-api.md, "Command line and config"; the
component's page in the Greengrass developer guide). edgefleet's component
(``integrations/greengrass/``) accepts the same parameters with the same defaults, plus one
addition, ``EdgefleetConfig``: an object of agent config keys (docs/agent-config.md) that no
original parameter covers, such as ``sagemaker_edge_core_root_certs_path`` or
``edgefleet_s3_endpoint_url``.

Greengrass hands configuration values over as JSON, and its lifecycle interpolation
(``{configuration:/Key}``) turns them into text: ``10`` may arrive as ``10``, ``10.0`` (Greengrass
stores JSON numbers as floats) or ``"10"``, a flag as ``true`` or ``"true"``. Every parameter
accepts each of these spellings and refuses anything else with an error naming the parameter.
What each parameter maps to, and what is ignored and why: docs/greengrass.md.

Two values come from the environment Greengrass gives every component process, not from the
configuration: the device name is the core device's thing name (``AWS_IOT_THING_NAME``; the
original required the edge device to be registered under that name) and the region is
``AWS_REGION``. S3 credentials are not configured at all: with the token exchange service as a
dependency, Greengrass sets ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` and
``AWS_CONTAINER_AUTHORIZATION_TOKEN``, and boto3's credential chain, which the capture sink uses
when ``edgefleet_s3_access_key_id`` is not set, fetches (and refreshes) credentials from there.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgefleet.agent.config import AgentConfig
from edgefleet.errors import ConfigError

log = logging.getLogger(__name__)

#: The component's parameters and their defaults: the original component's, with its names and
#: values (a flag's default is the string ``"false"`` there), and ``EdgefleetConfig``.
#: ``CaptureDataDiskPath`` and ``LocalDataRootPath`` default to folders of the component's work
#: folder (``""`` here: ``capture`` and ``data`` under it). The recipe's
#: ``ComponentConfiguration.DefaultConfiguration`` is this mapping (a test keeps them equal).
GREENGRASS_DEFAULTS: dict[str, object] = {
    "DeviceFleetName": "",
    "BucketName": "",
    "CaptureDataBatchSize": 10,
    "CaptureDataBufferSize": 30,
    "CaptureDataDestination": "Cloud",
    "CaptureDataPeriodicUpload": "false",
    "CaptureDataPeriodicUploadPeriodSeconds": 8,
    "CaptureDataPushPeriodSeconds": 4,
    "CaptureDataBase64EmbedLimit": 3072,
    "FolderPrefix": "sme-capture",
    "CaptureDataDiskPath": "",
    "LocalDataRootPath": "",
    "DbEnable": "false",
    "DeploymentEnable": "false",
    "DeploymentPollInterval": 1440,
    "DLRBackendOptions": "",
    "SagemakerEdgeLogVerbose": "false",
    "UnixSocketName": "/tmp/aws.greengrass.SageMakerEdgeManager.sock",
    "EdgefleetConfig": {},
}

#: The agent config key each parameter sets. ``UnixSocketName`` is the socket path, which is
#: not a config key; ``EdgefleetConfig`` holds keys of its own.
AGENT_KEYS: dict[str, str | None] = {
    "DeviceFleetName": "sagemaker_edge_core_device_fleet_name",
    "BucketName": "sagemaker_edge_provider_s3_bucket_name",
    "CaptureDataBatchSize": "sagemaker_edge_core_capture_data_batch_size",
    "CaptureDataBufferSize": "sagemaker_edge_core_capture_data_buffer_size",
    "CaptureDataDestination": "sagemaker_edge_core_capture_data_destination",
    "CaptureDataPeriodicUpload": "sagemaker_edge_core_capture_data_periodic_upload",
    "CaptureDataPeriodicUploadPeriodSeconds":
        "sagemaker_edge_core_capture_data_periodic_upload_period_seconds",
    "CaptureDataPushPeriodSeconds": "sagemaker_edge_core_capture_data_push_period_seconds",
    "CaptureDataBase64EmbedLimit": "sagemaker_edge_core_capture_data_base64_embed_limit",
    "FolderPrefix": "sagemaker_edge_core_folder_prefix",
    "CaptureDataDiskPath": "sagemaker_edge_core_capture_data_disk_path",
    "LocalDataRootPath": "sagemaker_edge_local_data_root_path",
    "DbEnable": "sagemaker_edge_db_enable",
    "DeploymentEnable": "sagemaker_edge_provider_provider",
    "DeploymentPollInterval": "sagemaker_edge_model_deployment_poll_interval",
    "DLRBackendOptions": "sagemaker_edge_dlr_backend_options",
    "SagemakerEdgeLogVerbose": "sagemaker_edge_log_verbose",
    "UnixSocketName": None,
    "EdgefleetConfig": None,
}

#: Parameter -> agent key, for the parameters that set one.
_OWNER_KEYS = {name: key for name, key in AGENT_KEYS.items() if key is not None}

#: Agent keys that ``EdgefleetConfig`` may not set, because a parameter sets them.
_OWNED = {key: name for name, key in _OWNER_KEYS.items()}

#: Where the component's own folders go when their parameter is empty, under the work folder.
DEFAULT_CAPTURE_FOLDER = "capture"
DEFAULT_DATA_FOLDER = "data"

#: Longest Unix socket path in bytes (``sun_path`` holds 108, with the terminating NUL).
MAX_SOCKET_PATH_BYTES = 107

_SOURCE = "Greengrass configuration"


class _Problems:
    """Collects every wrong parameter, so that one error names them all."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.messages.append(f"{where}: {message}")

    def raise_any(self) -> None:
        if self.messages:
            raise ConfigError(f"{_SOURCE}: " + "; ".join(self.messages))


class _Invalid(ValueError):
    """One parameter's value is wrong (the message says what is expected)."""


def _shown(value: object) -> str:
    return json.dumps(value) if isinstance(value, str | bool | int | float) else repr(value)


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _Invalid(f'expected true or false (a JSON boolean or the string "true" or "false"), '
                   f"got {_shown(value)}")


def _number(value: object) -> float:
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):  # not a number: refused below
            number = float(value.strip())
    if math.isfinite(number):
        return number
    raise _Invalid(f"expected a number (e.g. 4 or \"4\"), got {_shown(value)}")


def _whole(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = _number(value)
    except _Invalid:
        number = math.nan
    if number.is_integer():  # Greengrass may turn 10 into 10.0
        return int(number)
    raise _Invalid(f"expected a whole number (e.g. 10 or \"10\"), got {_shown(value)}")


def _text(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # what Greengrass's interpolation makes of a number
    if isinstance(value, str):
        return value.strip()
    raise _Invalid(f"expected a string, got {_shown(value)}")


def _optional_text(value: object) -> str | None:
    return _text(value) or None  # the original's "not set" is the empty string


def _destination(value: object) -> str:
    choices = {"cloud": "Cloud", "disk": "Disk"}
    text = _text(value)
    if text.lower() in choices:
        return choices[text.lower()]
    raise _Invalid(f'expected "Cloud" (the S3 bucket of BucketName) or "Disk" '
                   f"(CaptureDataDiskPath), got {_shown(value)}")


def _dlr_options(value: object) -> str | dict[str, Any] | None:
    if isinstance(value, dict):
        return value or None
    if isinstance(value, str):
        return value.strip() or None
    raise _Invalid(f"expected a string or an object, got {_shown(value)}")


def _object(value: object) -> dict[str, Any]:
    """An object, or its JSON text (what Greengrass's interpolation makes of an object)."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise _Invalid(f"expected a JSON object of agent config keys; the text is not "
                           f"JSON ({error.msg} at column {error.colno})") from None
    if isinstance(value, dict):
        return value
    raise _Invalid(f"expected an object of agent config keys (docs/agent-config.md), "
                   f"got {_shown(value)}")


def _folder(value: object, work_dir: Path, default: str) -> Path:
    text = _text(value)
    path = Path(text or default)
    return path if path.is_absolute() else work_dir / path


#: How each plain parameter's value becomes its agent key's value.
_CONVERT: dict[str, Callable[[object], object]] = {
    "DeviceFleetName": _text,
    "BucketName": _optional_text,
    "CaptureDataBatchSize": _whole,
    "CaptureDataBufferSize": _whole,
    "CaptureDataDestination": _destination,
    "CaptureDataPeriodicUpload": _flag,
    "CaptureDataPeriodicUploadPeriodSeconds": _number,
    "CaptureDataPushPeriodSeconds": _number,
    "CaptureDataBase64EmbedLimit": _whole,
    "FolderPrefix": _text,
    "DbEnable": _flag,
    "DeploymentPollInterval": _number,
    "DLRBackendOptions": _dlr_options,
    "SagemakerEdgeLogVerbose": _flag,
}


def _unknown_parameters(parameters: Mapping[str, object], problems: _Problems) -> None:
    for name in sorted(set(parameters) - set(GREENGRASS_DEFAULTS)):
        close = difflib.get_close_matches(name, GREENGRASS_DEFAULTS, n=1)
        hint = f"did you mean {close[0]}?" if close else (
            "agent config keys go into EdgefleetConfig" if name.startswith(
                ("sagemaker_edge_", "edgefleet_")) else "is it misspelt?")
        problems.add(f"unknown parameter {name!r}", f"not a parameter of this component ({hint})")


def _extra_keys(value: object, problems: _Problems) -> dict[str, Any]:
    """The agent keys of ``EdgefleetConfig`` that no parameter owns."""
    try:
        extra = _object(value)
    except _Invalid as error:
        problems.add("parameter EdgefleetConfig", str(error))
        return {}
    known = set(AgentConfig.model_fields)
    accepted = {}
    for key, item in extra.items():
        where = f"EdgefleetConfig.{key}"
        if key in _OWNED:
            problems.add(where, f"set by the parameter {_OWNED[key]}; set that instead")
        elif key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see docs/agent-config.md"
            problems.add(where, f"not an agent config key ({hint})")
        else:
            accepted[key] = item
    return accepted


def _socket_path(value: object, work_dir: Path) -> Path:
    text = _text(value)
    if not text:
        raise _Invalid("expected the path of the agent's Unix socket, got an empty string")
    path = Path(text) if Path(text).is_absolute() else work_dir / text
    if len(os.fsencode(str(path))) > MAX_SOCKET_PATH_BYTES:
        raise _Invalid(f"{str(path)!r} is longer than the {MAX_SOCKET_PATH_BYTES} bytes a Unix "
                       f"socket path may have; choose a shorter path")
    return path


def agent_config_from_greengrass(
        parameters: Mapping[str, object], *, work_dir: Path,
        environ: Mapping[str, str] | None = None) -> tuple[AgentConfig, Path]:
    """The agent config and socket path for the component's configuration.

    Args:
        parameters: the component's configuration (parameter name -> JSON value or its text,
            as in :data:`GREENGRASS_DEFAULTS`); a missing parameter has its default.
        work_dir: the component's work folder (``{work:path}``); relative paths and the
            empty-path defaults resolve under it.
        environ: the component's environment (default: ``os.environ``); reads
            ``AWS_IOT_THING_NAME`` (device name) and ``AWS_REGION`` or ``AWS_DEFAULT_REGION``
            (region), unless ``EdgefleetConfig`` sets ``sagemaker_edge_core_device_name`` or
            ``sagemaker_edge_core_region``.

    Returns:
        ``(config, socket path)``: the validated agent config and the absolute path of
        ``UnixSocketName`` (a relative one resolves under ``work_dir``).

    Raises:
        ConfigError: an unknown parameter, a value of the wrong type or out of range, or a
            combination the agent cannot run (e.g. ``Cloud`` without ``BucketName``); the message
            names every such parameter (or ``EdgefleetConfig.<key>``) and what is expected.
    """
    environ = os.environ if environ is None else environ
    work_dir = work_dir.absolute()
    problems = _Problems()
    _unknown_parameters(parameters, problems)
    values = {**GREENGRASS_DEFAULTS,
              **{k: v for k, v in parameters.items() if k in GREENGRASS_DEFAULTS}}

    converters: dict[str, Callable[[object], object]] = {
        **_CONVERT,
        "CaptureDataDiskPath": lambda value: _folder(value, work_dir, DEFAULT_CAPTURE_FOLDER),
        "LocalDataRootPath": lambda value: _folder(value, work_dir, DEFAULT_DATA_FOLDER),
        # edgefleet's control-plane client does heartbeats and deployment polls together.
        "DeploymentEnable": lambda value: "Aws" if _flag(value) else "None",
    }
    keys: dict[str, Any] = {}
    sources: dict[str, str] = {}  # agent key -> what set it, for error messages
    for name, convert in converters.items():
        key = _OWNER_KEYS[name]
        sources[key] = f"parameter {name}"
        try:
            keys[key] = convert(values[name])
        except _Invalid as error:
            problems.add(f"parameter {name}", str(error))
    socket_path = Path()
    try:
        socket_path = _socket_path(values["UnixSocketName"], work_dir)
    except _Invalid as error:
        problems.add("parameter UnixSocketName", str(error))

    thing = environ.get("AWS_IOT_THING_NAME")
    if thing:
        keys["sagemaker_edge_core_device_name"] = thing
        sources["sagemaker_edge_core_device_name"] = (
            "AWS_IOT_THING_NAME (the device name; set EdgefleetConfig."
            "sagemaker_edge_core_device_name to use another)")
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region:
        keys["sagemaker_edge_core_region"] = region
        sources["sagemaker_edge_core_region"] = "AWS_REGION"
    for key, item in _extra_keys(values["EdgefleetConfig"], problems).items():
        keys[key] = item
        sources[key] = f"EdgefleetConfig.{key}"
    problems.raise_any()

    _check_combinations(keys, problems)
    try:
        AgentConfig.model_validate(keys)
    except ValidationError as error:
        # Rules across keys are reported above, in the parameters' names.
        _translate(error, sources, problems, across_keys=not problems.messages)
    problems.raise_any()
    config = AgentConfig.from_mapping(keys, source=_SOURCE)
    if config.sagemaker_edge_dlr_backend_options is not None:
        log.info("%s: DLRBackendOptions is ignored: it configured the DLR runtime, which "
                 "edgefleet replaces with ONNX Runtime (set EdgefleetConfig."
                 "edgefleet_intra_op_threads for its threads)", _SOURCE)
    return config, socket_path


def _check_combinations(keys: Mapping[str, Any], problems: _Problems) -> None:
    """Rules across parameters, in the parameters' names (the agent would name its keys)."""
    if not keys["sagemaker_edge_core_device_fleet_name"]:
        problems.add("parameter DeviceFleetName",
                     "required: the name of the device fleet this core device belongs to")
    batch = keys["sagemaker_edge_core_capture_data_batch_size"]
    buffer = keys["sagemaker_edge_core_capture_data_buffer_size"]
    if batch >= buffer:
        problems.add("parameter CaptureDataBatchSize",
                     f"must be smaller than CaptureDataBufferSize ({batch} >= {buffer}); "
                     f"half the buffer size or less is best")
    if not keys["sagemaker_edge_provider_s3_bucket_name"]:
        reasons = []
        if keys["sagemaker_edge_core_capture_data_destination"] == "Cloud":
            reasons.append("CaptureDataDestination is Cloud")
        if keys["sagemaker_edge_core_capture_data_periodic_upload"]:
            reasons.append("CaptureDataPeriodicUpload is true")
        if reasons:
            problems.add("parameter BucketName",
                         f"required because {' and '.join(reasons)}: the S3 bucket "
                         f"captured data goes to")
    if (keys["sagemaker_edge_provider_provider"] == "Aws"
            and not keys.get("sagemaker_edge_core_endpoint_override")):
        problems.add("parameter DeploymentEnable",
                     "true needs an edgefleet control plane: set EdgefleetConfig."
                     "sagemaker_edge_core_endpoint_override to its base URL (and the device's "
                     "edgefleet_control_access_key_id and edgefleet_control_secret_access_key)")


def _translate(error: ValidationError, sources: Mapping[str, str], problems: _Problems, *,
               across_keys: bool) -> None:
    """Name the parameter (or ``EdgefleetConfig`` key) behind each agent key pydantic refused;
    errors of rules across keys only when ``across_keys``."""
    for item in error.errors():
        if item["type"] == "default_factory_not_called":
            continue  # a default that depends on a key already reported
        if not item["loc"]:
            if across_keys:
                problems.add("the configuration", item["msg"])
            continue
        key = str(item["loc"][0])
        problems.add(sources.get(key, f"agent key {key}"),
                     f"{item['msg']} (got {item.get('input')!r})")


def load_greengrass_config(path: Path, *, work_dir: Path | None = None,
                           environ: Mapping[str, str] | None = None) -> tuple[AgentConfig, Path]:
    """Read a JSON file holding the component's configuration and map it.

    The recipe's Run step writes this file (``integrations/greengrass/artifacts/
    greengrass_config.py``) from the parameters Greengrass interpolates into its environment.

    Args:
        path: the JSON file: one object, parameter name -> value (numbers, flags and objects
            may be given as their text).
        work_dir: the component's work folder (default: the file's folder, which is where the
            recipe writes it).
        environ: see :func:`agent_config_from_greengrass`.

    Returns:
        ``(config, socket path)``, as :func:`agent_config_from_greengrass`.

    Raises:
        ConfigError: the file is missing or unreadable, is not a JSON object, or a parameter
            is wrong (the message names it).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read the Greengrass configuration file {path}: "
                          f"{error.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"the Greengrass configuration file {path} is not valid JSON: "
                          f"{error.msg} at line {error.lineno}, column {error.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the Greengrass configuration file {path} must hold a JSON object "
                          f"of parameters, got {type(data).__name__}")
    return agent_config_from_greengrass(
        data, work_dir=path.absolute().parent if work_dir is None else work_dir,
        environ=environ)
