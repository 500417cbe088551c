"""AgentConfig: defaults, the spec's keys, unknown keys, errors naming the key."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edgefleet.agent.config import AgentConfig, load_config, reference_markdown
from edgefleet.errors import ConfigError

SPEC_KEYS = {
    "sagemaker_edge_core_device_name": "turbine-1",
    "sagemaker_edge_core_device_fleet_name": "wind-farm",
    "sagemaker_edge_core_region": "eu-west-1",
    "sagemaker_edge_core_root_certs_path": "/etc/edgefleet/roots",
    "sagemaker_edge_core_endpoint_override": "https://fleet.example",
    "sagemaker_edge_provider_provider": "Aws",
    "sagemaker_edge_provider_provider_path": "/opt/libprovider.so",
    "sagemaker_edge_provider_aws_ca_cert_file": "/etc/ca.pem",
    "sagemaker_edge_provider_aws_cert_file": "/etc/cert.pem",
    "sagemaker_edge_provider_aws_cert_pk_file": "/etc/key.pem",
    "sagemaker_edge_provider_aws_iot_cred_endpoint": "cred.example",
    "sagemaker_edge_provider_s3_bucket_name": "captures",
    "sagemaker_edge_log_verbose": True,
    "sagemaker_edge_telemetry_libsystemd_path": "/lib/libsystemd.so.0",
    "sagemaker_edge_core_capture_data_destination": "Cloud",
    "sagemaker_edge_core_capture_data_disk_path": "/var/capture",
    "sagemaker_edge_core_folder_prefix": "prefix",
    "sagemaker_edge_core_capture_data_buffer_size": 50,
    "sagemaker_edge_core_capture_data_batch_size": 20,
    "sagemaker_edge_core_capture_data_push_period_seconds": 2,
    "sagemaker_edge_core_capture_data_base64_embed_limit": 1024,
    "sagemaker_edge_core_capture_data_periodic_upload": False,
    "sagemaker_edge_core_capture_data_periodic_upload_period_seconds": 8,
    "sagemaker_edge_local_data_root_path": "/var/lib/edgefleet",
    "sagemaker_edge_model_deployment_poll_interval": 60,
    "sagemaker_edge_model_deployment_max_retry": 5,
    "sagemaker_edge_dlr_backend_options": "",
    "sagemaker_edge_db_enable": True,
}


def test_every_spec_key_is_accepted() -> None:
    config = AgentConfig.from_mapping(SPEC_KEYS)
    assert config.sagemaker_edge_core_device_fleet_name == "wind-farm"
    assert config.sagemaker_edge_core_capture_data_buffer_size == 50
    assert config.sagemaker_edge_core_root_certs_path == Path("/etc/edgefleet/roots")


def test_defaults_follow_the_spec() -> None:
    config = AgentConfig.from_mapping({})
    assert config.sagemaker_edge_core_capture_data_destination == "Disk"
    assert config.sagemaker_edge_core_capture_data_buffer_size == 30
    assert config.sagemaker_edge_core_capture_data_batch_size == 10
    assert config.sagemaker_edge_core_capture_data_push_period_seconds == 4
    assert config.sagemaker_edge_core_capture_data_base64_embed_limit == 3072
    assert config.sagemaker_edge_core_capture_data_periodic_upload_period_seconds == 8
    assert config.sagemaker_edge_model_deployment_poll_interval == 1440
    assert config.edgefleet_allow_unsigned_models is False
    assert config.edgefleet_max_message_bytes >= 512 * 1024 * 1024


def test_grpc_workers_default_follows_the_spool(monkeypatch: pytest.MonkeyPatch) -> None:
    # Durable CaptureData calls hold their thread until the commit is on disk: twice the cores.
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})
    assert AgentConfig.from_mapping({}).edgefleet_grpc_workers == 3
    assert AgentConfig.from_mapping(
        {"sagemaker_edge_db_enable": True}).edgefleet_grpc_workers == 6
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {5})
    assert AgentConfig.from_mapping({}).edgefleet_grpc_workers == 2
    assert AgentConfig.from_mapping(
        {"sagemaker_edge_db_enable": True}).edgefleet_grpc_workers == 4
    assert AgentConfig.from_mapping(
        {"sagemaker_edge_db_enable": True, "edgefleet_grpc_workers": 1}).edgefleet_grpc_workers == 1


def test_grpc_workers_default_counts_the_cores_of_the_cpu_affinity(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The cores the agent runs on, not the machine's: pinned to 3 of 8 CPUs it sizes for 3.
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert AgentConfig.from_mapping({}).edgefleet_grpc_workers == 8
    pinned = {"edgefleet_cpu_affinity": [3, 1, 2, 3]}
    assert AgentConfig.from_mapping(pinned).edgefleet_cpu_affinity == [1, 2, 3]
    assert AgentConfig.from_mapping(pinned).edgefleet_grpc_workers == 3
    assert AgentConfig.from_mapping(
        {**pinned, "sagemaker_edge_db_enable": True}).edgefleet_grpc_workers == 6


def test_inference_threads_beyond_the_pinned_cpus_warn(caplog: pytest.LogCaptureFixture) -> None:
    AgentConfig.from_mapping({"edgefleet_cpu_affinity": [0], "edgefleet_intra_op_threads": 1})
    assert not caplog.records
    for threads in (0, 2):
        caplog.clear()
        AgentConfig.from_mapping(
            {"edgefleet_cpu_affinity": [0], "edgefleet_intra_op_threads": threads})
        assert "set it to 1 to 1" in caplog.text


def test_every_field_is_documented() -> None:
    for name, field in AgentConfig.model_fields.items():
        assert field.description, f"{name} has no docstring"


def test_unknown_keys_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        AgentConfig.from_mapping({"sagemaker_edge_core_devcie_name": "x"})
    assert "sagemaker_edge_core_devcie_name" in caplog.text
    assert "did you mean 'sagemaker_edge_core_device_name'?" in caplog.text


@pytest.mark.parametrize("key", ["sagemaker_edge_db_enable", "edgefleet_cpu_affinity"])
def test_a_wrong_value_is_the_only_error_reported(key: str) -> None:
    # edgefleet_grpc_workers' default depends on these keys; it must not add an error of its own.
    with pytest.raises(ConfigError) as caught:
        AgentConfig.from_mapping({key: "not-this"})
    assert key in caught.value.message
    assert "edgefleet_grpc_workers" not in caught.value.message
    assert "PydanticUndefined" not in caught.value.message


def test_load_config_takes_a_str_path(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"sagemaker_edge_core_device_name": "turbine-7"}))
    assert load_config(str(path)).sagemaker_edge_core_device_name == "turbine-7"


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("sagemaker_edge_core_capture_data_buffer_size", "many", "integer"),
    ("sagemaker_edge_core_capture_data_buffer_size", 0, "greater than or equal to 1"),
    ("sagemaker_edge_core_capture_data_destination", "Tape", "'Disk' or 'Cloud'"),
    ("sagemaker_edge_log_verbose", "perhaps", "boolean"),
    ("sagemaker_edge_core_capture_data_base64_embed_limit", 4096, "3072"),
    ("sagemaker_edge_core_device_name", "has space", "pattern"),
    ("edgefleet_capture_sampling", {"m": 1.5}, "between 0 and 1"),
])
def test_wrong_values_name_the_key(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AgentConfig.from_mapping({key: value})
    assert key in caught.value.message
    assert expected in caught.value.message


def test_cross_key_rules() -> None:
    with pytest.raises(ConfigError, match="batch_size must be smaller"):
        AgentConfig.from_mapping({"sagemaker_edge_core_capture_data_buffer_size": 10})
    with pytest.raises(ConfigError, match="endpoint_override"):
        AgentConfig.from_mapping({"sagemaker_edge_provider_provider": "Aws"})
    with pytest.raises(ConfigError, match="s3_bucket_name"):
        AgentConfig.from_mapping({"sagemaker_edge_core_capture_data_destination": "Cloud"})


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(broken)
    deep = tmp_path / "deep.json"  # deeper than Python's json module can parse
    deep.write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(ConfigError, match="not valid JSON: arrays or objects nested too deeply"):
        load_config(deep)
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(listing)


def test_reference_docs_are_current() -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "agent-config.md"
    assert docs.read_text() == reference_markdown(), (
        "docs/agent-config.md is stale: regenerate it with .venv/bin/python -c 'from "
        "edgefleet.agent.config import reference_markdown; print(reference_markdown(), "
        "end=\"\")' > docs/agent-config.md")


def test_changed_keys_compare_secrets_by_value() -> None:
    old = AgentConfig.from_mapping({"edgefleet_control_secret_access_key": "one",
                                    "edgefleet_heartbeat_interval_seconds": 5})
    same = AgentConfig.from_mapping({"edgefleet_control_secret_access_key": "one",
                                     "edgefleet_heartbeat_interval_seconds": 5.0})
    assert old.changed_keys(same) == []
    other = AgentConfig.from_mapping({"edgefleet_control_secret_access_key": "two"})
    assert old.changed_keys(other) == ["edgefleet_control_secret_access_key",
                                       "edgefleet_heartbeat_interval_seconds"]
