"""MQTT deployment notifications with the real Mosquitto broker at 127.0.0.1:1883.

A real ``edgefleet server`` publishes when a stage starts; a real ``edgefleet-agent`` whose
deployment poll interval is an hour gets the model within seconds, since the notification wakes
its poll. With a broker that is not there, the stage still starts and the agent still serves
and polls. Each test uses its own topic prefix, so tests running side by side never see each
other's messages.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.agent_process import start_agent
from support.fleet_server import (
    FLEET,
    Server,
    free_port,
    healthy,
    package_job,
    predict,
    register,
    stage_statuses,
    stop_server,
    version,
)
from support.models import affine_reference
from support.packages import Packages
from support.polling import wait_for

from edgefleet.agent.config import AgentConfig
from edgefleet.errors import ConfigError
from edgefleet.fleet.client import AdminClient
from edgefleet.fleet.settings import ServerSettings
from edgefleet.proto import agent_pb2 as pb
from edgefleet.wire.mqtt import check_topic_prefix, device_topic, parse_broker_url

BROKER = "mqtt://127.0.0.1:1883"
HOUR = 3600.0


def start_mqtt_server(data_dir: Path, log: Path, mqtt_url: str, prefix: str) -> Server:
    """``edgefleet server`` with ``--mqtt-url`` and ``--mqtt-topic-prefix``."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "edgefleet.fleet", "server", "--port", str(port),
             "--data-dir", str(data_dir), "--mqtt-url", mqtt_url, "--mqtt-topic-prefix", prefix],
            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthy(url, process, log), 60, "the server to start")
    admin = AdminClient(url, (data_dir / "admin-token").read_text().strip())
    return Server(url, data_dir, process, log, admin)


class Recorder:
    """A paho subscriber of ``<prefix>/#`` that keeps every message (topic, JSON payload)."""

    def __init__(self, prefix: str) -> None:
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"edgefleet-test-{secrets.token_hex(4)}")
        self._client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, json.loads(m.payload), bool(m.retain)))
        self._client.connect("127.0.0.1", 1883)
        self._client.loop_start()
        assert self._subscribed.wait(10), "the test subscriber did not subscribe"

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture()
def prefix() -> str:
    return f"edgefleet-test/{secrets.token_hex(6)}"


def _certs(server: Server, tmp_path: Path) -> Path:
    folder = tmp_path / "certs"
    folder.mkdir()
    (folder / "edgefleet-root.pem").write_bytes(server.admin.root_certificate())
    return folder


def _plan(server: Server, packages: Packages, devices: list[str]) -> None:
    package_job(server, "affine-v1", "1.0", packages, "affine.onnx")
    server.admin.create_plan({"name": "push", "fleet": FLEET, "models": [
        {"model_handle": "affine", "packaging_job": "affine-v1"}], "stages": [
        {"name": "now", "selection": {"type": "SELECTION", "device_names": devices}}]})


@pytest.fixture()
def server(tmp_path: Path, prefix: str) -> Iterator[Server]:
    running = start_mqtt_server(tmp_path / "server", tmp_path / "server.log", BROKER, prefix)
    yield running
    stop_server(running)


@pytest.mark.slow
def test_stage_start_wakes_the_agent_at_once(
        server: Server, prefix: str, packages: Packages, tmp_path: Path) -> None:
    server.admin.create_fleet(FLEET, "s3://captures/wind")
    certs = _certs(server, tmp_path)
    mqtt_keys = {"edgefleet_mqtt_url": BROKER, "edgefleet_mqtt_topic_prefix": prefix,
                 "edgefleet_deployment_poll_seconds": HOUR, "sagemaker_edge_log_verbose": True}
    configs = {n: register(server, n, tmp_path / n, certs, **mqtt_keys)
               for n in ("turbine-1", "turbine-2")}
    _plan(server, packages, ["turbine-1"])
    recorder = Recorder(prefix)
    agents = {n: start_agent(c, tmp_path / n) for n, c in configs.items()}
    try:
        for agent in agents.values():
            wait_for(lambda a=agent: "deployment notifications: connected" in a.log(), 10,
                     "the agent to subscribe")
        for name in agents:  # the first poll (at start) is over once a heartbeat came
            wait_for(lambda n=name: server.admin.describe_device(n)["latest_heartbeat"], 10,
                     "a first heartbeat")
        time.sleep(0.5)
        server.admin.stage_action("push", "now", "start")
        wait_for(lambda: stage_statuses(server, "push", "now")["turbine-1"]["status"]
                 == "DEPLOYED", 15, "the deployment (the regular poll is an hour away)")
        assert version(agents["turbine-1"]) == "1.0"
        np.testing.assert_array_equal(predict(agents["turbine-1"]),
                                      affine_reference(np.ones((1, 4)))[0])
        wait_for(lambda: recorder.messages, 5, "the test subscriber to get the message")
        ((topic, payload, retained),) = recorder.messages  # only the selected device's
        assert topic == device_topic(prefix, FLEET, "turbine-1")
        assert not retained
        assert payload["event"] == "stage-started"
        assert (payload["fleet"], payload["device"], payload["plan"], payload["stage"]) == (
            FLEET, "turbine-1", "push", "now")
        assert payload["deployment_name"].startswith("push-now-")
        text = json.dumps(payload)
        for config in configs.values():
            assert config["edgefleet_control_secret_access_key"] not in text
    finally:
        recorder.close()
        logs = {n: a.log() for n, a in agents.items()}
        codes = {n: a.stop() for n, a in agents.items()}
    assert codes == {"turbine-1": 0, "turbine-2": 0}, logs
    assert "polling now" in logs["turbine-1"]
    assert "polling now" not in logs["turbine-2"]
    for name, config in configs.items():
        assert config["edgefleet_control_secret_access_key"] not in logs[name]


@pytest.mark.slow
def test_broker_down_never_fails_a_stage_or_the_agent(
        prefix: str, packages: Packages, tmp_path: Path) -> None:
    nowhere = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    server = start_mqtt_server(tmp_path / "server", tmp_path / "server.log", nowhere, prefix)
    try:
        server.admin.create_fleet(FLEET, "s3://captures/wind")
        certs = _certs(server, tmp_path)
        config = register(server, "turbine-7", tmp_path / "turbine-7", certs,
                          edgefleet_mqtt_url=nowhere, edgefleet_mqtt_topic_prefix=prefix,
                          edgefleet_deployment_poll_seconds=0.5)
        _plan(server, packages, ["turbine-7"])
        agent = start_agent(config, tmp_path / "turbine-7")
        try:
            wait_for(lambda: "cannot connect" in agent.log(), 10, "the broker warning")
            assert server.admin.stage_action("push", "now", "start")["status"] == "INPROGRESS"
            wait_for(lambda: stage_statuses(server, "push", "now")["turbine-7"]["status"]
                     == "DEPLOYED", 30, "the deployment by the regular poll")
            assert version(agent) == "1.0"
            np.testing.assert_array_equal(predict(agent), affine_reference(np.ones((1, 4)))[0])
            wait_for(lambda: "cannot publish the start of stage now" in server.log.read_text(),
                     15, "the server's warning")
        finally:
            log = agent.log()
            code = agent.stop()
        assert code == 0, log
        assert log.count("deployment notifications: broker") == 1  # retries log at debug
    finally:
        stop_server(server)


def start_private_broker(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A Mosquitto of our own on ``port`` (anonymous, loopback only), to stop and restart."""
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if binary is None:  # fail, not skip: the reconnect test must not vanish silently
        raise RuntimeError("the mosquitto binary is missing: apt-get install mosquitto")
    config = folder / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    probe = mqtt.Client(CallbackAPIVersion.VERSION2)

    def accepts() -> bool:
        try:
            probe.connect("127.0.0.1", port)
        except OSError:
            return False
        probe.disconnect()
        return True
    wait_for(accepts, 10, "the private broker to listen")
    return process


@pytest.mark.slow
def test_a_notification_missed_during_a_broker_outage_is_made_up_on_reconnect(
        prefix: str, packages: Packages, tmp_path: Path) -> None:
    port = free_port()
    broker = start_private_broker(port, tmp_path)
    url = f"mqtt://127.0.0.1:{port}"
    server = start_mqtt_server(tmp_path / "server", tmp_path / "server.log", url, prefix)
    agent = None
    try:
        server.admin.create_fleet(FLEET, "s3://captures/wind")
        config = register(server, "turbine-8", tmp_path / "turbine-8", _certs(server, tmp_path),
                          edgefleet_mqtt_url=url, edgefleet_mqtt_topic_prefix=prefix,
                          edgefleet_deployment_poll_seconds=HOUR)
        _plan(server, packages, ["turbine-8"])
        agent = start_agent(config, tmp_path / "turbine-8")
        wait_for(lambda: "deployment notifications: connected" in agent.log(), 10,
                 "the agent to subscribe")
        wait_for(lambda: server.admin.describe_device("turbine-8")["latest_heartbeat"], 10,
                 "a first heartbeat")
        time.sleep(0.5)  # the first poll (at start) is over
        broker.send_signal(signal.SIGTERM)
        broker.wait(10)
        wait_for(lambda: "disconnected" in agent.log(), 10, "the agent to notice the outage")
        server.admin.stage_action("push", "now", "start")  # its notification is lost
        wait_for(lambda: "cannot publish the start of stage now" in server.log.read_text(),
                 15, "the server's warning")
        assert stage_statuses(server, "push", "now")["turbine-8"]["status"] == "READYTODEPLOY"
        assert not agent.stub.ListModels(pb.ListModelsRequest()).models  # serving meanwhile
        broker = start_private_broker(port, tmp_path)
        wait_for(lambda: stage_statuses(server, "push", "now")["turbine-8"]["status"]
                 == "DEPLOYED", 30, "the deployment after the reconnect")
        assert "reconnected" in agent.log()
    finally:
        if agent is not None:
            log = agent.log()
            assert agent.stop() == 0, log
        stop_server(server)
        broker.send_signal(signal.SIGTERM)
        broker.wait(10)


def test_broker_urls_and_prefixes_are_checked() -> None:
    assert parse_broker_url("mqtt://broker.local").port == 1883
    assert str(parse_broker_url("mqtt://10.0.0.5:1884/")) == "mqtt://10.0.0.5:1884"
    for bad in ("http://host:1883", "mqtt://user:pw@host", "mqtt://host:99999", "mqtt://",
                "mqtt://host/topic"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)
    assert check_topic_prefix("site/a") == "site/a"
    for bad in ("", "a/+", "a/#", "/a", "a/"):
        with pytest.raises(ValueError):
            check_topic_prefix(bad)
    with pytest.raises(ConfigError, match="edgefleet_mqtt_url"):
        AgentConfig.from_mapping({"edgefleet_mqtt_url": "tcp://host:1883"})
    with pytest.raises(ConfigError, match="edgefleet_mqtt_topic_prefix"):
        AgentConfig.from_mapping({"edgefleet_mqtt_topic_prefix": "a/#"})
    with pytest.raises(ValueError, match="mqtt_url"):
        ServerSettings(mqtt_url="mqtt://user:secret@host")
