"""Bridge settings: the original translator's SAPT_* variables, EDGEFLEET_BRIDGE_*, a JSON or
TOML file, options; precedence and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.bridge.config import DEFAULT_PORT, BridgeConfig, env_names, load_config
from edgefleet.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in BridgeConfig.model_fields:
        for name in env_names(field):
            monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    config = load_config()
    assert (config.host, config.port, config.bucket) == ("127.0.0.1", DEFAULT_PORT, None)


def test_original_translator_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAPT_AWS_S3_BUCKET", "sagemaker-bucket")
    # The original's .env escaped slashes for sed; both spellings work.
    monkeypatch.setenv("SAPT_AWS_S3_MODELS_DIR", "DEMO-Sagemaker-Edge\\/compilation-output")
    monkeypatch.setenv("SAPT_AWS_S3_DATA_DIR", "/data/in/")
    monkeypatch.setenv("SAPT_AWS_REGION", "eu-west-1")
    monkeypatch.setenv("SAPT_AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("SAPT_AWS_SECRET_ACCESS_KEY", "hush-42")
    monkeypatch.setenv("EDGEFLEET_BRIDGE_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    config = load_config()
    assert config.bucket == "sagemaker-bucket"
    assert config.models_dir == "DEMO-Sagemaker-Edge/compilation-output"
    assert config.data_dir == "data/in"
    assert config.s3_settings() == {
        "region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9000",
        "aws_access_key_id": "AKID", "aws_secret_access_key": "hush-42"}
    assert "hush-42" not in repr(config)


def test_credentials_default_to_boto3s_chain() -> None:
    assert "aws_access_key_id" not in load_config(bucket="b").s3_settings()


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_precedence_options_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     suffix: str) -> None:
    path = tmp_path / f"bridge{suffix}"
    path.write_text('{"port": 7000, "bucket": "file-bucket", "data_folder": "/srv/data"}'
                    if suffix == ".json" else
                    'port = 7000\nbucket = "file-bucket"\ndata_folder = "/srv/data"\n')
    monkeypatch.setenv("EDGEFLEET_BRIDGE_PORT", "7001")
    monkeypatch.setenv("SAPT_AWS_S3_BUCKET", "env-bucket")
    config = load_config(path, port=7002)
    assert (config.port, config.bucket, config.data_folder) == (7002, "env-bucket",
                                                                Path("/srv/data"))
    assert load_config(path).port == 7001


@pytest.mark.parametrize(("text", "match"), [
    ('{"port": "many"}', r"port \(env EDGEFLEET_BRIDGE_PORT\)"),
    ('{"port": 70000}', "port"),
    ('{"bukket": "x"}', "unknown key 'bukket'"),
    ('{"models_dir": "a/../b"}', "models_dir"),
    ("[1, 2]", "must hold an object"),
    ("{not json", "not valid JSON"),
])
def test_file_errors_name_the_key(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bridge.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_env_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFLEET_BRIDGE_AGENT_TIMEOUT_SECONDS", "-1")
    with pytest.raises(ConfigError, match="EDGEFLEET_BRIDGE_AGENT_TIMEOUT_SECONDS"):
        load_config()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.json")
