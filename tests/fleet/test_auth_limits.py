"""Failed authentications are limited per client address (issue 14, "Security")."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from fleet.fleet_support import signed_headers

from edgefleet.errors import ResourceExhausted
from edgefleet.fleet.limits import AuthFailureLimit


def test_an_address_is_refused_after_too_many_failures_until_they_age() -> None:
    now = [1000.0]
    limit = AuthFailureLimit(3, window_seconds=60, clock=lambda: now[0])
    for _ in range(3):
        limit.check("10.0.0.1")
        limit.failed("10.0.0.1")
    with pytest.raises(ResourceExhausted, match="try again in 60 s"):
        limit.check("10.0.0.1")
    limit.check("10.0.0.2")  # other addresses are not affected
    now[0] += 60.5
    limit.check("10.0.0.1")  # the failures aged out


def test_wrong_admin_tokens_get_429_and_then_even_the_right_one_waits(
        api: TestClient) -> None:
    right = api.headers["Authorization"]
    limit = api.app.state.context.auth_failures  # type: ignore[attr-defined]
    for attempt in range(limit.max_failures):
        answer = api.get("/api/v1/fleets", headers={"Authorization": f"Bearer guess-{attempt}"})
        assert answer.status_code == 401, answer.text
    blocked = api.get("/api/v1/fleets", headers={"Authorization": "Bearer guess-more"})
    assert blocked.status_code == 429 and "too many failed" in blocked.json()["message"]
    # A right guess during the block is refused like a wrong one: guessing learns nothing.
    assert api.get("/api/v1/fleets", headers={"Authorization": right}).status_code == 429


def test_bad_device_signatures_count_too(api: TestClient) -> None:
    limit = api.app.state.context.auth_failures  # type: ignore[attr-defined]
    body = b'{"DeviceName": "nobody", "DeviceFleetName": "none"}'
    headers = signed_headers("POST", "http://testserver/GetDeviceRegistration", body,
                             "AKIDUNKNOWN", "secret", service="sagemaker")
    codes = [api.post("/GetDeviceRegistration", content=body, headers=headers).status_code
             for _ in range(limit.max_failures + 1)]
    assert codes[:-1] == [403] * limit.max_failures and codes[-1] == 429
    answer = api.post("/GetDeviceRegistration", content=body, headers=headers)
    assert answer.json()["__type"] == "ThrottlingException"
