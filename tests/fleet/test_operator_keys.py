"""Operator keys and device credentials through the `edgefleet` commands, against a real
server: a key created with the CLI signs boto3's sagemaker client until it is revoked; each
kind of key works only on its own API; a re-issued device key replaces the old one."""

from __future__ import annotations

import configparser
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from support.fleet_server import Server, free_port, start_server, stop_server
from support.sagemaker import error_of, sagemaker_client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("operator-keys")
    running = start_server(folder / "server", free_port(), folder / "server.log")
    try:
        yield running
    finally:
        stop_server(running)


def edgefleet(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    token = (server.data_dir / "admin-token").read_text().strip()
    return subprocess.run([sys.executable, "-m", "edgefleet.fleet", *args, "--server",
                           server.url, "--token", token], capture_output=True, text=True,
                          timeout=60, check=True)


def keys_in(path: Path) -> tuple[str, str]:
    parser = configparser.ConfigParser()
    parser.read(path)
    return parser["default"]["aws_access_key_id"], parser["default"]["aws_secret_access_key"]


def test_the_first_start_writes_a_private_operator_key(server: Server) -> None:
    path = server.data_dir / "operator-credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    akid, _ = keys_in(path)
    assert akid.startswith("EFOP") and len(akid) == 20
    sagemaker_client(server).list_device_fleets()  # it signs


def test_a_key_made_with_the_cli_works_until_revoked(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "ci-key"
    edgefleet(server, "operator-key", "create", "--description", "ci job", "--out", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    akid, secret = keys_in(out)
    client = sagemaker_client(server, access_key=akid, secret_key=secret)
    client.list_device_fleets()
    listed = json.loads(edgefleet(server, "operator-key", "list").stdout)
    assert {"access_key_id": akid, "description": "ci job"}.items() <= next(
        k for k in listed if k["access_key_id"] == akid).items()
    assert all("secret" not in json.dumps(k) for k in listed)
    edgefleet(server, "operator-key", "revoke", akid)
    with pytest.raises(ClientError) as caught:
        client.list_device_fleets()
    assert error_of(caught.value) == ("UnrecognizedClientException", 400)
    sagemaker_client(server).list_devices()  # the first key is untouched


def edge_client(server: Server, akid: str, secret: str) -> Any:
    return boto3.session.Session().client(
        "sagemaker-edge", endpoint_url=server.url, region_name="us-east-1",
        aws_access_key_id=akid, aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}))


def test_each_kind_of_key_works_only_on_its_own_api(server: Server, tmp_path: Path) -> None:
    operator = sagemaker_client(server)
    operator.create_device_fleet(DeviceFleetName="keys", OutputConfig={
        "S3OutputLocation": "s3://captures/keys"})
    operator.register_devices(DeviceFleetName="keys", Devices=[{"DeviceName": "gate-1"}])
    config_file = tmp_path / "gate-1.json"
    edgefleet(server, "device", "credentials", "gate-1", "--agent-config", str(config_file))
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    config = json.loads(config_file.read_text())
    device_key = (config["edgefleet_control_access_key_id"],
                  config["edgefleet_control_secret_access_key"])
    edge = edge_client(server, *device_key)
    assert edge.get_device_registration(DeviceName="gate-1", DeviceFleetName="keys")[
        "DeviceRegistration"] == "REGISTERED"
    with pytest.raises(ClientError) as caught:
        sagemaker_client(server, access_key=device_key[0],
                         secret_key=device_key[1]).list_devices()
    assert error_of(caught.value)[0] == "UnrecognizedClientException"
    with pytest.raises(ClientError) as refused:
        edge_client(server, *keys_in(server.data_dir / "operator-credentials")
                    ).get_device_registration(DeviceName="gate-1", DeviceFleetName="keys")
    assert error_of(refused.value)[1] == 403

    # Issued again: the new key works, the old one no longer does.
    edgefleet(server, "device", "credentials", "gate-1", "--agent-config", str(config_file))
    new = json.loads(config_file.read_text())
    assert new["edgefleet_control_access_key_id"] != device_key[0]
    edge_client(server, new["edgefleet_control_access_key_id"],
                new["edgefleet_control_secret_access_key"]).get_device_registration(
        DeviceName="gate-1", DeviceFleetName="keys")
    with pytest.raises(ClientError) as old:
        edge.get_device_registration(DeviceName="gate-1", DeviceFleetName="keys")
    assert error_of(old.value)[1] == 403
