"""Settings of ``edgefleet bridge``: environment variables, a config file, command-line options.

Precedence, highest first: command-line options, environment variables, the config file
(``--config``: a JSON object or a TOML table of the field names below), defaults. The S3 keys keep
the environment variable names of the original SageMaker Edge Manager Pelion translator
(``SAPT_AWS_S3_BUCKET``, ``SAPT_AWS_S3_MODELS_DIR``, ``SAPT_AWS_S3_DATA_DIR``,
``SAPT_AWS_REGION``, ``SAPT_AWS_ACCESS_KEY_ID``, ``SAPT_AWS_SECRET_ACCESS_KEY``); every field is
also ``EDGEFLEET_BRIDGE_<FIELD>``. Without explicit keys, boto3's usual credential chain applies
(``AWS_ACCESS_KEY_ID``, ``~/.aws/credentials``, instance roles, ...).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgefleet.errors import ConfigError

#: Default TCP port of the HTTP transport: next to 8235, the port the original translator's
#: container mapped the agent's gRPC socket to.
DEFAULT_PORT = 8236
ENV_PREFIX = "EDGEFLEET_BRIDGE_"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def env_names(field: str) -> list[str]:
    """The environment variables that set ``field`` of :class:`BridgeConfig`, first one first."""
    alias = BridgeConfig.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices if str(choice).isupper()]
    return [f"{ENV_PREFIX}{field.upper()}"]


class BridgeConfig(BaseSettings):
    """Everything the bridge needs: where the agent is, where data and packages are, how to serve.

    Relative folders resolve against the bridge's working directory.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, use_attribute_docstrings=True, extra="forbid",
        populate_by_name=True)

    socket: Path = Path("/tmp/edgefleet.sock")
    """Unix socket of the running agent (``edgefleet-agent -a SOCKET``)."""

    host: str = "127.0.0.1"
    """Address the HTTP transport listens on; keep it on loopback unless a firewall guards it:
    the bridge has no authentication."""

    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    """TCP port of the HTTP transport."""

    data_folder: Path = Path("data")
    """Folder of ``file:///NAME`` URLs (predict inputs and outputs): NAME is relative to it."""

    models_folder: Path = Path("models")
    """Folder of local packages: ``loadModel``'s ``url`` is relative to it."""

    cache_folder: Path = Path("bridge-cache")
    """Where packages downloaded from S3 are kept (written atomically; a cached package is
    reused without asking S3 again: delete its file to download it anew)."""

    bucket: str | None = Field(default=None, validation_alias=_env(
        "SAPT_AWS_S3_BUCKET", f"{ENV_PREFIX}BUCKET", "bucket"))
    """S3 bucket of ``s3:///NAME`` URLs and of ``loadModel``'s ``s3_filename``."""

    models_dir: str = Field(default="", validation_alias=_env(
        "SAPT_AWS_S3_MODELS_DIR", f"{ENV_PREFIX}MODELS_DIR", "models_dir"))
    """Key prefix (folder) of packages in the bucket: ``s3_filename`` is relative to it."""

    data_dir: str = Field(default="", validation_alias=_env(
        "SAPT_AWS_S3_DATA_DIR", f"{ENV_PREFIX}DATA_DIR", "data_dir"))
    """Key prefix (folder) of ``s3:///NAME`` URLs in the bucket."""

    region: str = Field(default="us-east-1", validation_alias=_env(
        "SAPT_AWS_REGION", f"{ENV_PREFIX}REGION", "region"))
    """Region the S3 requests are signed for."""

    s3_endpoint_url: str | None = None
    """Endpoint of an S3-compatible store (e.g. ``http://127.0.0.1:8333``); default: AWS S3."""

    access_key_id: str | None = Field(default=None, validation_alias=_env(
        "SAPT_AWS_ACCESS_KEY_ID", f"{ENV_PREFIX}ACCESS_KEY_ID", "access_key_id"))
    """S3 access key; default: boto3's credential chain."""

    secret_access_key: SecretStr | None = Field(default=None, validation_alias=_env(
        "SAPT_AWS_SECRET_ACCESS_KEY", f"{ENV_PREFIX}SECRET_ACCESS_KEY", "secret_access_key"))
    """S3 secret key (never logged); default: boto3's credential chain."""

    agent_timeout_seconds: float = Field(default=120.0, gt=0)
    """Deadline of each call to the agent, in seconds (LoadModel of a big package takes long)."""

    max_request_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest HTTP body or stdio line accepted, in bytes (requests only carry URLs)."""

    max_input_bytes: int = Field(default=1 << 30, ge=1)
    """Largest input file or object read for predict and captureData, in bytes."""

    @field_validator("models_dir", "data_dir")
    @classmethod
    def _prefix(cls, value: str) -> str:
        # The original's .env escaped slashes for sed ("a\/b"): accept that spelling too.
        value = value.replace("\\/", "/").strip("/")
        if any(part in ("", ".", "..") for part in value.split("/")) and value:
            raise ValueError("must be a key prefix like `folder/sub` (no empty, `.` or `..` "
                             "parts)")
        return value

    def s3_settings(self) -> dict[str, Any]:
        """Keyword arguments of ``boto3`` ``client("s3", ...)`` for this store."""
        settings: dict[str, Any] = {"region_name": self.region}
        if self.s3_endpoint_url:
            settings["endpoint_url"] = self.s3_endpoint_url
        if self.access_key_id and self.secret_access_key:
            settings["aws_access_key_id"] = self.access_key_id
            settings["aws_secret_access_key"] = self.secret_access_key.get_secret_value()
        return settings


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a ``.toml`` file (a table) or any other file (a JSON object).

    Raises:
        ConfigError: unreadable, not JSON/TOML, or not an object of settings.
    """
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ConfigError(f"config file {path} is not valid {kind}: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold an object of settings, e.g. "
                          '{"socket": "/tmp/edgefleet.sock"}')
    return values


def load_config(config_file: Path | None = None, **options: Any) -> BridgeConfig:
    """Build the settings: ``options`` (None: not given) over environment over file.

    Raises:
        ConfigError: a value has the wrong type or range, or a key is unknown; the message names
            the key and what it expects.
    """
    try:
        from_env = BridgeConfig()
        values = read_config_file(config_file) if config_file else {}
        values.update({name: getattr(from_env, name) for name in from_env.model_fields_set})
        values.update({name: value for name, value in options.items() if value is not None})
        return BridgeConfig(**values)
    except ValidationError as error:
        problems = "; ".join(_problem(item["loc"], item["msg"]) for item in error.errors())
        source = f" (config file {config_file}, environment or options)" if config_file else ""
        raise ConfigError(f"bridge config{source}: {problems}") from None


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    key = str(loc[0]) if loc else "?"
    field = next((name for name, info in BridgeConfig.model_fields.items()
                  if key == name or (isinstance(info.validation_alias, AliasChoices)
                                     and key in info.validation_alias.choices)), None)
    if field is None:
        return f"unknown key {key!r} (keys: {', '.join(BridgeConfig.model_fields)})"
    return f"{field} (env {' or '.join(env_names(field))}): {message}"
