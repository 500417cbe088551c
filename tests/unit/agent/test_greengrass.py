"""The Greengrass component: parameters -> agent config, the recipe, the config writer script."""

from __future__ import annotations

import importlib.util
import json
import logging
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, in the dev extra
from support.greengrass import as_text

from edgefleet.agent.config import AgentConfig
from edgefleet.agent.greengrass import (
    AGENT_KEYS,
    GREENGRASS_DEFAULTS,
    agent_config_from_greengrass,
    load_greengrass_config,
)
from edgefleet.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
COMPONENT = ROOT / "integrations" / "greengrass"
WORK = Path("/greengrass/v2/work/edgefleet.Agent")
ENVIRON = {"AWS_IOT_THING_NAME": "turbine-7", "AWS_REGION": "eu-west-3"}
#: What a deployment must set on top of the defaults (the original required both).
REQUIRED = {"DeviceFleetName": "windfarm", "BucketName": "sagemaker-captures"}


def mapped(**parameters: object) -> tuple[AgentConfig, Path]:
    return agent_config_from_greengrass({**REQUIRED, **parameters}, work_dir=WORK,
                                        environ=ENVIRON)


def refused(**parameters: object) -> str:
    with pytest.raises(ConfigError) as error:
        agent_config_from_greengrass({**REQUIRED, **parameters}, work_dir=WORK, environ=ENVIRON)
    return error.value.message


# -- the mapping -------------------------------------------------------------------------------
def test_defaults_give_the_original_components_behaviour() -> None:
    config, socket_path = mapped()
    assert socket_path == Path("/tmp/aws.greengrass.SageMakerEdgeManager.sock")
    assert config.sagemaker_edge_core_device_fleet_name == "windfarm"
    assert config.sagemaker_edge_provider_s3_bucket_name == "sagemaker-captures"
    assert config.sagemaker_edge_core_capture_data_batch_size == 10
    assert config.sagemaker_edge_core_capture_data_buffer_size == 30
    assert config.sagemaker_edge_core_capture_data_destination == "Cloud"
    assert config.sagemaker_edge_core_capture_data_periodic_upload is False
    assert config.sagemaker_edge_core_capture_data_periodic_upload_period_seconds == 8.0
    assert config.sagemaker_edge_core_capture_data_push_period_seconds == 4.0
    assert config.sagemaker_edge_core_capture_data_base64_embed_limit == 3072
    assert config.sagemaker_edge_core_folder_prefix == "sme-capture"
    assert config.sagemaker_edge_core_capture_data_disk_path == WORK / "capture"
    assert config.sagemaker_edge_local_data_root_path == WORK / "data"
    assert config.sagemaker_edge_db_enable is False
    assert config.sagemaker_edge_provider_provider == "None"
    assert config.sagemaker_edge_model_deployment_poll_interval == 1440.0
    assert config.sagemaker_edge_dlr_backend_options is None
    assert config.sagemaker_edge_log_verbose is False
    # From the component's environment, as the original's device registration required.
    assert config.sagemaker_edge_core_device_name == "turbine-7"
    assert config.sagemaker_edge_core_region == "eu-west-3"
    # S3 credentials come from boto3's chain (the token exchange service), never static keys.
    assert config.edgefleet_s3_access_key_id is None
    assert config.edgefleet_s3_secret_access_key is None


def test_every_parameter_has_a_default_and_an_agent_key() -> None:
    assert set(AGENT_KEYS) == set(GREENGRASS_DEFAULTS)
    fields = set(AgentConfig.model_fields)
    assert {key for key in AGENT_KEYS.values() if key is not None} <= fields
    assert [name for name, key in AGENT_KEYS.items() if key is None] == [
        "UnixSocketName", "EdgefleetConfig"]


#: (parameter, a value other than the default, agent key, the value it gets).
NON_DEFAULT = [
    ("DeviceFleetName", "solar_park-2", "sagemaker_edge_core_device_fleet_name",
     "solar_park-2"),
    ("BucketName", "other-bucket", "sagemaker_edge_provider_s3_bucket_name", "other-bucket"),
    ("CaptureDataBatchSize", 5, "sagemaker_edge_core_capture_data_batch_size", 5),
    ("CaptureDataBufferSize", 100, "sagemaker_edge_core_capture_data_buffer_size", 100),
    ("CaptureDataDestination", "Disk", "sagemaker_edge_core_capture_data_destination", "Disk"),
    ("CaptureDataPeriodicUpload", "true", "sagemaker_edge_core_capture_data_periodic_upload",
     True),
    ("CaptureDataPeriodicUploadPeriodSeconds", 60,
     "sagemaker_edge_core_capture_data_periodic_upload_period_seconds", 60.0),
    ("CaptureDataPushPeriodSeconds", 0.5, "sagemaker_edge_core_capture_data_push_period_seconds",
     0.5),
    ("CaptureDataBase64EmbedLimit", 0, "sagemaker_edge_core_capture_data_base64_embed_limit", 0),
    ("FolderPrefix", "site-a", "sagemaker_edge_core_folder_prefix", "site-a"),
    ("FolderPrefix", "", "sagemaker_edge_core_folder_prefix", ""),
    ("CaptureDataDiskPath", "/data/capture", "sagemaker_edge_core_capture_data_disk_path",
     Path("/data/capture")),
    ("CaptureDataDiskPath", "captures", "sagemaker_edge_core_capture_data_disk_path",
     WORK / "captures"),
    ("LocalDataRootPath", "/var/lib/edgefleet", "sagemaker_edge_local_data_root_path",
     Path("/var/lib/edgefleet")),
    ("LocalDataRootPath", "state", "sagemaker_edge_local_data_root_path", WORK / "state"),
    ("DbEnable", "true", "sagemaker_edge_db_enable", True),
    ("DeploymentPollInterval", 60, "sagemaker_edge_model_deployment_poll_interval", 60.0),
    ("DLRBackendOptions", "TVM_TENSORRT_CACHE_DIR=/data", "sagemaker_edge_dlr_backend_options",
     "TVM_TENSORRT_CACHE_DIR=/data"),
    ("DLRBackendOptions", {"threads": 2}, "sagemaker_edge_dlr_backend_options", {"threads": 2}),
    ("SagemakerEdgeLogVerbose", "true", "sagemaker_edge_log_verbose", True),
]


@pytest.mark.parametrize(("name", "value", "key", "expected"), NON_DEFAULT,
                         ids=[f"{row[0]}={row[1]!r}" for row in NON_DEFAULT])
def test_each_parameter_maps_to_its_key(name: str, value: object, key: str,
                                        expected: object) -> None:
    config, _ = mapped(**{name: value})
    assert getattr(config, key) == expected
    untouched = AGENT_KEYS.copy()
    del untouched[name]
    defaults, _ = mapped()
    for other in untouched.values():  # nothing else changed
        if other is not None and other != key:
            assert getattr(config, other) == getattr(defaults, other), other


def test_every_parameter_is_covered_by_a_non_default_case() -> None:
    covered = {row[0] for row in NON_DEFAULT} | {"DeploymentEnable", "UnixSocketName",
                                                  "EdgefleetConfig"}
    assert covered == set(GREENGRASS_DEFAULTS)


def test_deployment_enable_turns_the_control_plane_client_on() -> None:
    config, _ = mapped(DeploymentEnable="true", DeploymentPollInterval="30", EdgefleetConfig={
        "sagemaker_edge_core_endpoint_override": "https://fleet.example:8443",
        "edgefleet_control_access_key_id": "AKDEVICE", "edgefleet_control_secret_access_key": "s"})
    assert config.sagemaker_edge_provider_provider == "Aws"
    assert config.sagemaker_edge_core_endpoint_override == "https://fleet.example:8443"
    assert config.sagemaker_edge_model_deployment_poll_interval == 30.0


def test_deployment_enable_needs_an_endpoint() -> None:
    message = refused(DeploymentEnable=True)
    assert "parameter DeploymentEnable" in message
    assert "EdgefleetConfig.sagemaker_edge_core_endpoint_override" in message


def test_unix_socket_name() -> None:
    assert mapped(UnixSocketName="/run/edge/agent.sock")[1] == Path("/run/edge/agent.sock")
    assert mapped(UnixSocketName="agent.sock")[1] == WORK / "agent.sock"
    assert "parameter UnixSocketName" in refused(UnixSocketName="")
    assert "107 bytes" in refused(UnixSocketName="/tmp/" + "s" * 110)


def test_a_disk_destination_needs_no_bucket() -> None:
    config, _ = agent_config_from_greengrass(
        {"DeviceFleetName": "windfarm", "CaptureDataDestination": "Disk"}, work_dir=WORK,
        environ=ENVIRON)
    assert config.sagemaker_edge_provider_s3_bucket_name is None
    assert config.sagemaker_edge_core_capture_data_disk_path == WORK / "capture"


# -- the spellings Greengrass hands over ---------------------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), ("true", True), ("false", False), ("TRUE", True),
    (" False ", False)])
def test_flags_accept_booleans_and_their_strings(value: object, expected: bool) -> None:
    for name in ("CaptureDataPeriodicUpload", "DbEnable", "SagemakerEdgeLogVerbose"):
        config, _ = mapped(**{name: value})
        assert getattr(config, AGENT_KEYS[name] or "") is expected


@pytest.mark.parametrize("value", [12, 12.0, "12", "12.0", " 12 "])
def test_whole_numbers_accept_every_spelling_of_a_whole_number(value: object) -> None:
    config, _ = mapped(CaptureDataBatchSize=value)
    assert config.sagemaker_edge_core_capture_data_batch_size == 12
    assert isinstance(config.sagemaker_edge_core_capture_data_batch_size, int)


@pytest.mark.parametrize(("value", "expected"), [(2, 2.0), (2.5, 2.5), ("2.5", 2.5), ("2", 2.0)])
def test_seconds_accept_numbers_and_their_strings(value: object, expected: float) -> None:
    config, _ = mapped(CaptureDataPushPeriodSeconds=value)
    assert config.sagemaker_edge_core_capture_data_push_period_seconds == expected


@pytest.mark.parametrize("value", ["disk", "DISK", " Disk "])
def test_destination_ignores_case(value: str) -> None:
    config, _ = mapped(CaptureDataDestination=value)
    assert config.sagemaker_edge_core_capture_data_destination == "Disk"


@pytest.mark.parametrize("floats", [False, True], ids=["numbers", "numbers-as-floats"])
def test_values_as_greengrass_interpolates_them_give_the_same_config(floats: bool) -> None:
    """The Run step gets every value as text (numbers may have become floats in Greengrass's
    configuration store): the agent must end up with the same config as from JSON values."""
    parameters: dict[str, object] = {
        **GREENGRASS_DEFAULTS, **REQUIRED, "CaptureDataDestination": "Disk",
        "CaptureDataPeriodicUpload": True, "DbEnable": True, "CaptureDataPushPeriodSeconds": 0.25,
        "EdgefleetConfig": {"sagemaker_edge_core_root_certs_path": "/etc/edgefleet/roots",
                            "edgefleet_capture_sampling": {"anomaly": 0.5}}}
    if floats:
        parameters = {k: float(v) if type(v) is int else v for k, v in parameters.items()}
    native, native_socket = agent_config_from_greengrass(parameters, work_dir=WORK,
                                                         environ=ENVIRON)
    text, text_socket = agent_config_from_greengrass(
        {k: as_text(v) for k, v in parameters.items()}, work_dir=WORK, environ=ENVIRON)
    assert text == native and text_socket == native_socket
    assert text.edgefleet_capture_sampling == {"anomaly": 0.5}


# -- errors name the parameter -------------------------------------------------------------------
@pytest.mark.parametrize(("name", "value", "expected"), [
    ("DeviceFleetName", "", "required"),
    ("DeviceFleetName", "wind farm", "should match pattern"),
    ("DeviceFleetName", True, "expected a string"),
    ("BucketName", ["a"], "expected a string"),
    ("CaptureDataBatchSize", "ten", "expected a whole number"),
    ("CaptureDataBatchSize", 2.5, "expected a whole number"),
    ("CaptureDataBatchSize", True, "expected a whole number"),
    ("CaptureDataBatchSize", 0, "greater than or equal to 1"),
    ("CaptureDataBatchSize", 30, "must be smaller than CaptureDataBufferSize (30 >= 30)"),
    ("CaptureDataBufferSize", "-1", "smaller than CaptureDataBufferSize"),
    ("CaptureDataDestination", "S3", 'expected "Cloud"'),
    ("CaptureDataPeriodicUpload", "yes", "expected true or false"),
    ("CaptureDataPeriodicUpload", 1, "expected true or false"),
    ("CaptureDataPeriodicUploadPeriodSeconds", "0", "greater than 0"),
    ("CaptureDataPushPeriodSeconds", "soon", "expected a number"),
    ("CaptureDataPushPeriodSeconds", "nan", "expected a number"),
    ("CaptureDataPushPeriodSeconds", -4, "greater than 0"),
    ("CaptureDataBase64EmbedLimit", 4096, "less than or equal to 3072"),
    ("FolderPrefix", 1.5, "expected a string"),
    ("CaptureDataDiskPath", {}, "expected a string"),
    ("LocalDataRootPath", False, "expected a string"),
    ("DbEnable", "enabled", "expected true or false"),
    ("DeploymentEnable", "maybe", "expected true or false"),
    ("DeploymentPollInterval", 0, "greater than 0"),
    ("DeploymentPollInterval", "daily", "expected a number"),
    ("DLRBackendOptions", 3, "expected a string or an object"),
    ("SagemakerEdgeLogVerbose", "verbose", "expected true or false"),
    ("UnixSocketName", 7.5, "expected a string"),
    ("EdgefleetConfig", "{not json", "not JSON"),
    ("EdgefleetConfig", [1], "expected an object"),
])
def test_a_wrong_value_is_refused_naming_the_parameter(name: str, value: object,
                                                      expected: str) -> None:
    message = refused(**{name: value})
    where = "CaptureDataBatchSize" if "smaller than" in expected else name
    assert f"parameter {where}" in message
    assert expected in message


def test_a_cloud_destination_needs_a_bucket() -> None:
    message = refused(BucketName="")
    assert "parameter BucketName: required because CaptureDataDestination is Cloud" in message
    message = refused(BucketName="", CaptureDataDestination="Disk",
                      CaptureDataPeriodicUpload="true")
    assert "required because CaptureDataPeriodicUpload is true" in message


def test_every_wrong_parameter_is_named_at_once() -> None:
    message = refused(CaptureDataBatchSize="x", DbEnable="y", CaptureDataBase64EmbedLimit=9999)
    assert "parameter CaptureDataBatchSize" in message and "parameter DbEnable" in message
    message = refused(CaptureDataBase64EmbedLimit=9999, DeviceFleetName="a b")
    assert "parameter CaptureDataBase64EmbedLimit" in message
    assert "parameter DeviceFleetName" in message


def test_an_unknown_parameter_is_refused_with_a_hint() -> None:
    assert "unknown parameter 'CaptureDataBatchsize'" in refused(CaptureDataBatchsize=5)
    assert "did you mean CaptureDataBatchSize?" in refused(CaptureDataBatchsize=5)
    assert "go into EdgefleetConfig" in refused(edgefleet_s3_endpoint_url="http://s3")


# -- EdgefleetConfig and the environment ---------------------------------------------------------
def test_edgefleet_config_adds_agent_keys() -> None:
    keys = {"sagemaker_edge_core_root_certs_path": "/etc/edgefleet/roots",
            "edgefleet_s3_endpoint_url": "http://127.0.0.1:8333",
            "sagemaker_edge_core_device_name": "renamed", "sagemaker_edge_core_region": "local"}
    for value in (keys, json.dumps(keys)):
        config, _ = mapped(EdgefleetConfig=value)
        assert config.sagemaker_edge_core_root_certs_path == Path("/etc/edgefleet/roots")
        assert config.edgefleet_s3_endpoint_url == "http://127.0.0.1:8333"
        assert config.sagemaker_edge_core_device_name == "renamed"  # over the thing name
        assert config.sagemaker_edge_core_region == "local"
    assert mapped(EdgefleetConfig="")[0] == mapped()[0]


def test_edgefleet_config_may_not_set_what_a_parameter_sets() -> None:
    message = refused(EdgefleetConfig={"sagemaker_edge_core_capture_data_batch_size": 5,
                                       "sagemaker_edge_provider_provider": "Aws"})
    assert ("EdgefleetConfig.sagemaker_edge_core_capture_data_batch_size: set by the parameter "
            "CaptureDataBatchSize") in message
    assert "set by the parameter DeploymentEnable" in message


def test_edgefleet_config_refuses_unknown_and_wrong_keys() -> None:
    message = refused(EdgefleetConfig={"edgefleet_s3_endpoint": "x"})
    assert "EdgefleetConfig.edgefleet_s3_endpoint: not an agent config key" in message
    assert "did you mean 'edgefleet_s3_endpoint_url'?" in message
    message = refused(EdgefleetConfig={"edgefleet_s3_upload_concurrency": 0})
    assert "EdgefleetConfig.edgefleet_s3_upload_concurrency: Input should be greater" in message


def test_the_device_name_is_the_thing_name() -> None:
    with pytest.raises(ConfigError) as error:
        agent_config_from_greengrass(REQUIRED, work_dir=WORK,
                                     environ={"AWS_IOT_THING_NAME": "core:device"})
    message = error.value.message
    assert "AWS_IOT_THING_NAME" in message and "'core:device'" in message
    assert "EdgefleetConfig.sagemaker_edge_core_device_name" in message
    config, _ = agent_config_from_greengrass(REQUIRED, work_dir=WORK,
                                             environ={"AWS_DEFAULT_REGION": "ap-northeast-1"})
    assert config.sagemaker_edge_core_region == "ap-northeast-1"
    assert config.sagemaker_edge_core_device_name == AgentConfig.from_mapping(
        {}).sagemaker_edge_core_device_name  # no thing name: the agent's own default


def test_dlr_backend_options_are_logged_once_as_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="edgefleet.agent.greengrass"):
        mapped()
        assert not caplog.records
        mapped(DLRBackendOptions="TVM_TENSORRT_CACHE_DIR=/data")
    ignored = [r for r in caplog.records if "DLRBackendOptions is ignored" in r.getMessage()]
    assert len(ignored) == 1


# -- the configuration file ----------------------------------------------------------------------
def test_load_greengrass_config(tmp_path: Path) -> None:
    path = tmp_path / "greengrass-config.json"
    path.write_text(json.dumps({**REQUIRED, "CaptureDataDiskPath": "cap",
                                "UnixSocketName": "agent.sock"}))
    config, socket_path = load_greengrass_config(path, environ=ENVIRON)
    assert config.sagemaker_edge_core_capture_data_disk_path == tmp_path / "cap"
    assert socket_path == tmp_path / "agent.sock"
    config, _ = load_greengrass_config(path, work_dir=WORK, environ=ENVIRON)
    assert config.sagemaker_edge_core_capture_data_disk_path == WORK / "cap"


@pytest.mark.parametrize(("text", "expected"), [
    (None, "cannot read"), ("{", "not valid JSON"), ("[]", "must hold a JSON object"),
    ('{"DbEnable": "nope"}', "parameter DbEnable")])
def test_load_greengrass_config_errors(tmp_path: Path, text: str | None, expected: str) -> None:
    path = tmp_path / "greengrass-config.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_greengrass_config(path, environ=ENVIRON)


# -- the recipe ----------------------------------------------------------------------------------
def recipe() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPONENT / "recipe.yaml").read_text())
    return loaded


def test_the_yaml_and_json_recipes_are_one_document() -> None:
    assert recipe() == json.loads((COMPONENT / "recipe.json").read_text())
    assert recipe()["RecipeFormatVersion"] == "2020-01-25"  # a string, not a YAML date


def test_the_recipe_defaults_are_the_parameters() -> None:
    defaults = recipe()["ComponentConfiguration"]["DefaultConfiguration"]
    assert defaults == GREENGRASS_DEFAULTS
    assert [type(v) for v in defaults.values()] == [type(v) for v in GREENGRASS_DEFAULTS.values()]


def test_the_recipe_depends_on_the_token_exchange_service() -> None:
    dependency = recipe()["ComponentDependencies"]["aws.greengrass.TokenExchangeService"]
    assert dependency["DependencyType"] == "HARD"


def test_the_recipe_runs_on_linux_only_with_its_artifacts() -> None:
    manifests = recipe()["Manifests"]
    assert {m["Platform"]["os"] for m in manifests} == {"linux"}
    assert {m["Platform"]["architecture"] for m in manifests} == {"amd64", "aarch64"}
    for manifest in manifests:
        names = sorted(artifact["URI"].rsplit("/", 1)[1] for artifact in manifest["Artifacts"])
        arch = {"amd64": "x86_64", "aarch64": "aarch64"}[manifest["Platform"]["architecture"]]
        assert names == [f"edgefleet-wheels-{arch}.zip", "greengrass_config.py"]
        assert "Lifecycle" not in manifest  # every platform uses the global lifecycle
    assert (COMPONENT / "artifacts" / "greengrass_config.py").is_file()


def test_the_run_step_passes_every_parameter_through_its_environment() -> None:
    run = recipe()["Lifecycle"]["Run"]
    assert run["Setenv"] == {f"EDGEFLEET_GG_{name}": f"{{configuration:/{name}}}"
                             for name in GREENGRASS_DEFAULTS}
    assert "--from-greengrass-config" in run["Script"]
    assert "{configuration:" not in run["Script"]  # values never go through the shell


# -- the config writer artifact ------------------------------------------------------------------
def writer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "greengrass_config", COMPONENT / "artifacts" / "greengrass_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_writer_collects_the_parameters_and_skips_placeholders() -> None:
    collected = writer().collect({
        "EDGEFLEET_GG_DeviceFleetName": "windfarm", "EDGEFLEET_GG_DbEnable": "true",
        "EDGEFLEET_GG_BucketName": "{configuration:/BucketName}",
        "EDGEFLEET_GG_EdgefleetConfig": '{"edgefleet_s3_endpoint_url":"http://s3"}',
        "PATH": "/usr/bin"})
    assert collected == {"DeviceFleetName": "windfarm", "DbEnable": "true",
                         "EdgefleetConfig": '{"edgefleet_s3_endpoint_url":"http://s3"}'}


def test_the_writer_writes_a_private_file_the_agent_reads(tmp_path: Path) -> None:
    path = tmp_path / "greengrass-config.json"
    path.write_text("old")
    environ = {f"EDGEFLEET_GG_{name}": as_text(value)
               for name, value in {**GREENGRASS_DEFAULTS, **REQUIRED}.items()}
    assert writer().main([str(path)], environ) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["greengrass-config.json"]
    config, _ = load_greengrass_config(path, environ=ENVIRON)
    assert config == mapped()[0].model_copy(update={
        "sagemaker_edge_core_capture_data_disk_path": tmp_path / "capture",
        "sagemaker_edge_local_data_root_path": tmp_path / "data"})


def test_the_writer_reports_a_bad_command_line_and_a_missing_folder(tmp_path: Path) -> None:
    assert writer().main([], {}) == 2
    assert writer().main([str(tmp_path / "missing" / "c.json")], {}) == 1


def test_the_migration_guide_maps_every_parameter_to_its_agent_key() -> None:
    guide = (ROOT / "docs" / "migrating-from-sagemaker-edge-manager.md").read_text()
    for parameter, key in AGENT_KEYS.items():
        row = next((line for line in guide.splitlines() if line.startswith(f"| `{parameter}` |")),
                   None)
        assert row is not None, f"{parameter} is missing from the migration guide's table"
        if key is not None:
            assert f"`{key}`" in row, row
