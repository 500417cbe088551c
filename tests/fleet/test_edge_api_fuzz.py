"""Hypothesis against the device API (``sagemaker-edge``), signed with a real device's keys, so
that every case gets past authentication into parsing, validation and the database (SQLite and
PostgreSQL). Whatever the body, the answer is a botocore-shaped 200, 400, 403 or 404, never a
server error (issue 14, "Bad input"). ``pytest --long`` runs 10x the cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fleet.fleet_support import register
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

SHORT, LONG = 150, 1_500  # cases per operation
OPERATIONS = ["SendHeartbeat", "GetDeviceRegistration", "GetDeployments"]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12)
#: Strings a device should never send: NUL (PostgreSQL's text refuses it), lone surrogates'
#: neighbours, huge ones, and names close to valid ones.
ODD_TEXT = st.one_of(st.text(max_size=30), st.sampled_from(
    ["", "\x00", "a\x00b", "x" * 5_000, "dev-a", "wind", "1.0", "ü", "\u202e", "-1", "1e400"]))
NUMBERS = st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.sampled_from(
    [0, -1, 1e308, -1e308, 2**63, "NaN"]))


def mostly(valid: Any, odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` three times in four, else ``odd``: most cases pass validation but one field,
    so that they reach the code behind it."""
    return st.one_of(st.just(valid), st.just(valid), st.just(valid), odd)


def _metric(draw: st.DrawFn) -> dict[str, Any]:
    return {"Dimension": draw(mostly("model/affine", ODD_TEXT)),
            "MetricName": draw(mostly("latency-ms", ODD_TEXT)),
            "Value": draw(mostly(1.5, NUMBERS)), "Timestamp": draw(mostly(1.7e9, NUMBERS))}


@st.composite
def heartbeats(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"DeviceName": draw(mostly("dev-a", ODD_TEXT)),
                            "DeviceFleetName": draw(mostly("wind", ODD_TEXT)),
                            "AgentVersion": draw(mostly("1.20261203.abc", ODD_TEXT))}
    if draw(st.booleans()):
        body["AgentMetrics"] = [_metric(draw) for _ in range(draw(st.integers(0, 3)))]
    if draw(st.booleans()):
        body["Models"] = [{"ModelName": draw(mostly("relu", ODD_TEXT)),
                           "ModelVersion": draw(mostly("1.0", ODD_TEXT)),
                           "LatestSampleTime": draw(mostly(1.7e9, NUMBERS)),
                           "LatestInference": draw(mostly(1.7e9, NUMBERS)),
                           "ModelMetrics": [_metric(draw)]}
                          for _ in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()):
        body["DeploymentResult"] = {
            "DeploymentName": draw(mostly("p-s1", ODD_TEXT)),
            "DeploymentStatus": draw(mostly("SUCCESS", ODD_TEXT)),
            "DeploymentStatusMessage": draw(ODD_TEXT),
            "DeploymentStartTime": draw(mostly(1.7e9, NUMBERS)),
            "DeploymentEndTime": draw(mostly(1.7e9, NUMBERS)),
            "DeploymentModels": [{"ModelHandle": draw(mostly("relu", ODD_TEXT)),
                                  "Status": draw(mostly("SUCCESS", ODD_TEXT)),
                                  "StatusReason": draw(ODD_TEXT),
                                  "RollbackFailureReason": draw(ODD_TEXT)}]}
    return body


def bodies(operation: str) -> st.SearchStrategy[bytes]:
    structured = heartbeats() if operation == "SendHeartbeat" else st.fixed_dictionaries(
        {"DeviceName": mostly("dev-a", ODD_TEXT), "DeviceFleetName": mostly("wind", ODD_TEXT)})
    return st.one_of(
        structured.map(lambda body: json.dumps(body).encode()),
        JSON.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=200))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_device_api_never_answers_a_server_error(api: TestClient, onnx_model: Path,
                                                    operation: str, long_run: bool) -> None:
    api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    device = register(api, "dev-a", "wind")
    seen: dict[int, int] = {}

    @settings(max_examples=LONG if long_run else SHORT, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=bodies(operation))
    def case(body: bytes) -> None:
        answer = device.post_raw(operation, body)
        seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
        assert answer.status_code in (200, 400, 403, 404), (answer.status_code, answer.text,
                                                            body[:300])
        if answer.status_code != 200:
            assert answer.json()["__type"] and answer.json()["message"]

    case()
    print(f"\n{operation}: {sum(seen.values())} cases, status codes {seen}")
    assert seen.get(200), "some cases must get through to the operation itself"
