"""The device API through TestClient, signed by botocore: identity, isolation, refusals."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from fleet.fleet_support import EdgeCaller, register, sha1


def _setup(api: TestClient, onnx_model: Path) -> tuple[EdgeCaller, EdgeCaller, str]:
    api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    a, b = register(api, "dev-a", "wind"), register(api, "dev-b", "wind")
    with onnx_model.open("rb") as model:
        api.post("/api/v1/packaging-jobs", files={"model": model},
                 data={"name": "relu-1", "model_name": "relu", "model_version": "1.0"})
    plan = api.post("/api/v1/deployment-plans", json={
        "name": "p", "fleet": "wind", "models": [{"model_handle": "relu",
                                                  "packaging_job": "relu-1"}],
        "stages": [{"name": "s1", "selection": {"type": "SELECTION", "device_names": ["dev-a"]}}]})
    api.post("/api/v1/deployment-plans/p/stages/s1/start")
    return a, b, plan.json()["stages"][0]["deployment_name"]


def _ref(name: str) -> dict[str, str]:
    return {"DeviceName": name, "DeviceFleetName": "wind"}


def test_device_sees_only_itself(api: TestClient, onnx_model: Path) -> None:
    a, b, deployment = _setup(api, onnx_model)
    mine = a.post("GetDeployments", _ref("dev-a"))
    assert mine.status_code == 200
    assert mine.json()["Deployments"][0]["DeploymentName"] == deployment
    assert b.post("GetDeployments", _ref("dev-b")).json() == {"Deployments": []}

    for op, body in (("GetDeployments", _ref("dev-a")), ("GetDeviceRegistration", _ref("dev-a")),
                     ("SendHeartbeat", {**_ref("dev-a"), "AgentVersion": "6.6"}),
                     ("GetDeployments", _ref("no-such-device")),
                     ("GetDeployments", {"DeviceName": "dev-b", "DeviceFleetName": "other"})):
        refused = b.post(op, body)
        assert refused.status_code == 403, op
        assert refused.headers["x-amzn-ErrorType"] == "AccessDeniedException"
        assert "dev-a" not in refused.text and deployment not in refused.text
    described = api.get("/api/v1/devices/dev-a").json()
    assert described["agent_version"] is None and described["latest_heartbeat"] is None

    url = mine.json()["Deployments"][0]["Definitions"][0]["S3Url"]
    package = a.get(url)
    assert package.status_code == 200
    assert sha1(package.content) == mine.json()["Deployments"][0]["Definitions"][0][
        "Checksum"]["Sum"]
    assert b.get(url).status_code == 403
    assert a.get("http://testserver/downloads/packages/other/x.tar.gz").status_code == 403


def test_bad_signature_old_time_and_unknown_key(api: TestClient, onnx_model: Path) -> None:
    a, _b, _ = _setup(api, onnx_model)
    wrong = a.post("GetDeviceRegistration", _ref("dev-a"), secret="not-the-secret")
    assert wrong.status_code == 403
    assert wrong.json()["__type"] == "InvalidSignatureException"
    old = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=20)
    stale = a.post("GetDeviceRegistration", _ref("dev-a"), at=old)
    assert stale.status_code == 403 and "NTP" in stale.json()["message"]
    unsigned = api.post("/GetDeviceRegistration", json=_ref("dev-a"))
    assert unsigned.status_code == 403
    api.delete("/api/v1/devices/dev-a")
    gone = a.post("GetDeviceRegistration", _ref("dev-a"))
    assert gone.status_code == 403 and "deregistered" in gone.json()["message"]


def test_invalid_body_is_a_validation_error(api: TestClient, onnx_model: Path) -> None:
    a, _b, _ = _setup(api, onnx_model)
    answer = a.post("SendHeartbeat", {**_ref("dev-a"), "AgentVersion": "1",
                                      "Models": [{"ModelName": "bad name!"}]})
    assert answer.status_code == 400 and answer.json()["__type"] == "ValidationException"
    assert "Models.0.ModelName" in answer.json()["message"]


def test_oversized_body_is_refused_before_reading(api: TestClient, onnx_model: Path) -> None:
    a, _b, _ = _setup(api, onnx_model)
    answer = a.post("SendHeartbeat", {**_ref("dev-a"), "AgentVersion": "1",
                                      "Padding": "x" * (2 << 20)})
    assert answer.status_code == 400 and "over 1048576 bytes" in answer.json()["message"]


def test_chunked_body_without_length_is_capped(api: TestClient) -> None:
    """A body sent in chunks declares no length; it is counted while it arrives."""

    def chunks() -> Iterator[bytes]:
        for _ in range(3):
            yield b"x" * (1 << 20)

    answer = api.post("/SendHeartbeat", content=chunks(),
                      headers={"content-type": "application/json"})
    assert answer.status_code == 400 and "over 1048576 bytes" in answer.json()["message"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e400"])
def test_a_metric_that_is_not_a_finite_number_is_a_validation_error(
        api: TestClient, onnx_model: Path, number: str) -> None:
    # Found by the fuzzer: "NaN" was stored as JSON that PostgreSQL refuses (a 500, and the
    # heartbeat lost); SQLite kept it and reports would read NaN back.
    a, _b, _ = _setup(api, onnx_model)
    body = (f'{{"DeviceName": "dev-a", "DeviceFleetName": "wind", "AgentVersion": "1.0", '
            f'"AgentMetrics": [{{"Dimension": "agent", "MetricName": "rss-bytes", "Value": 1, '
            f'"Timestamp": "{number}"}}]}}').encode()
    answer = a.post_raw("SendHeartbeat", body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["__type"] == "ValidationException"
    assert "Timestamp" in answer.json()["message"]
