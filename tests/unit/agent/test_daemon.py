"""The agent's composition root: what a reload (SIGHUP) applies, and what it leaves alone."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent import cli
from edgefleet.agent.config import AgentConfig, load_config
from edgefleet.agent.daemon import Agent

SECRET = "s3cr3t-Never-In-Logs-0123456789abcdefghij"
NEW_SECRET = "n3w-s3cr3t-Never-In-Logs-0123456789abcdefg"


def device_keys(tmp_path: Path, **keys: Any) -> dict[str, Any]:
    """A device's config as `edgefleet device register` writes it (nothing is contacted: the
    agent is never started)."""
    return {"sagemaker_edge_core_device_name": "turbine-1",
            "sagemaker_edge_core_device_fleet_name": "wind",
            "sagemaker_edge_provider_provider": "Aws",
            "sagemaker_edge_core_endpoint_override": "http://127.0.0.1:9",
            "sagemaker_edge_local_data_root_path": str(tmp_path / "data"),
            "edgefleet_control_access_key_id": "AKIDOLD",
            "edgefleet_control_secret_access_key": SECRET, **keys}


@pytest.fixture()
def agent(tmp_path: Path) -> Iterator[Agent]:
    built = Agent(AgentConfig.from_mapping(device_keys(tmp_path)), tmp_path / "agent.sock")
    yield built
    built.stop()


def rotated(tmp_path: Path, **keys: Any) -> AgentConfig:
    return AgentConfig.from_mapping(device_keys(
        tmp_path, edgefleet_control_access_key_id="AKIDNEW",
        edgefleet_control_secret_access_key=NEW_SECRET, **keys))


def test_new_credentials_are_applied(agent: Agent, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert agent.reload(rotated(tmp_path)) == ["edgefleet_control_access_key_id",
                                               "edgefleet_control_secret_access_key"]
    assert agent.config.edgefleet_control_access_key_id == "AKIDNEW"
    secret = agent.config.edgefleet_control_secret_access_key
    assert secret is not None and secret.get_secret_value() == NEW_SECRET
    assert "new control-plane credentials (access key id AKIDNEW) sign the next request" in (
        caplog.text)
    assert "not applied" not in caplog.text
    assert SECRET not in caplog.text and NEW_SECRET not in caplog.text


def test_other_changed_keys_are_named_and_not_applied(agent: Agent, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    applied = agent.reload(rotated(tmp_path, edgefleet_heartbeat_interval_seconds=5,
                                   edgefleet_grpc_workers=7))
    assert applied == ["edgefleet_control_access_key_id", "edgefleet_control_secret_access_key"]
    assert agent.config.edgefleet_heartbeat_interval_seconds == 60  # as started
    assert agent.config.edgefleet_control_access_key_id == "AKIDNEW"
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage().startswith(
        "config reloaded: changed keys not applied until the agent restarts: "
        "edgefleet_grpc_workers, edgefleet_heartbeat_interval_seconds")


def test_credentials_for_another_device_are_not_taken(agent: Agent, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    assert agent.reload(rotated(tmp_path, sagemaker_edge_core_device_name="turbine-2")) == []
    assert agent.config.edgefleet_control_access_key_id == "AKIDOLD"
    assert "kept the current control-plane credentials: the new ones come with a changed " \
           "sagemaker_edge_core_device_name" in caplog.text


def test_an_unchanged_config_changes_nothing(agent: Agent, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert agent.reload(AgentConfig.from_mapping(device_keys(tmp_path))) == []
    assert "the control-plane credentials are unchanged" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read config file"),
    ("{not json", "is not valid JSON"),
    ('{"edgefleet_heartbeat_interval_seconds": -1}',
     "key edgefleet_heartbeat_interval_seconds: Input should be greater than 0"),
])
def test_sighup_with_a_bad_file_logs_one_error_and_keeps_the_credentials(
        agent: Agent, tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str | None,
        problem: str) -> None:
    path = tmp_path / "agent.json"
    if content is not None:
        path.write_text(content)
    cli.reload_config(agent, lambda: load_config(path))
    (error,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert error.levelno == logging.ERROR
    assert error.getMessage().startswith("SIGHUP: config not reloaded, the agent goes on with "
                                         "its current config and credentials: ")
    assert problem in error.getMessage() and str(path) in error.getMessage()
    assert agent.config.edgefleet_control_access_key_id == "AKIDOLD"


def test_sighup_reads_the_file_again(agent: Agent, tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(device_keys(tmp_path, edgefleet_control_access_key_id="AKIDNEW",
                                           edgefleet_control_secret_access_key=NEW_SECRET)))
    cli.reload_config(agent, lambda: load_config(path))
    assert agent.config.edgefleet_control_access_key_id == "AKIDNEW"


def test_sighup_without_a_config_file_changes_nothing(
        agent: Agent, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cli.reload_config(agent, None)
    assert "no config file (-c) to read again" in caplog.text
    assert agent.config.edgefleet_control_access_key_id == "AKIDOLD"
