"""The dashboard's routes over HTTP (TestClient) and the heartbeat history, on SQLite and
PostgreSQL: login, redirects, CSRF, form limits, pagination, charts, history sampling."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fleet.fleet_support import register
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.fleet import edge, fleets, history, schemas
from edgefleet.fleet.app import create_app
from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.dashboard.session import COOKIE, SessionSigner
from edgefleet.fleet.db.models import Device, HeartbeatSample
from edgefleet.fleet.settings import ServerSettings


@pytest.fixture
def token(settings: ServerSettings, engine: Engine) -> str:
    return settings.resolved_admin_token_file().read_text().strip()


@pytest.fixture
def browser(settings: ServerSettings, engine: Engine) -> Iterator[TestClient]:
    """A client without the admin header, like a browser; redirects are not followed."""
    with TestClient(create_app(settings), follow_redirects=False) as client:
        yield client


def _login(client: TestClient, token: str) -> str:
    """Log in; the CSRF token of the session (read from a page's logout form)."""
    answer = client.post("/ui/login", data={"token": token, "next": "/ui/deployments"})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/deployments"
    page = client.get("/ui/deployments")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None
    return found.group(1)


def _heartbeat(caller: Any, name: str, fleet: str = "wind", **extra: Any) -> None:
    answer = caller.post("SendHeartbeat", {
        "DeviceName": name, "DeviceFleetName": fleet, "AgentVersion": "1.2.3",
        "AgentMetrics": [{"Dimension": "agent", "MetricName": "cpu-percent", "Value": 7.5},
                         {"Dimension": "agent", "MetricName": "rss-bytes", "Value": 83e6}],
        "Models": [{"ModelName": "anomaly", "ModelVersion": "2.0",
                    "LatestInference": time.time(),
                    "ModelMetrics": [
                        {"Dimension": "model", "MetricName": "inference-count", "Value": 40},
                        {"Dimension": "model", "MetricName": "latency-p50-ms", "Value": 0.4},
                        {"Dimension": "model", "MetricName": "latency-p99-ms", "Value": 2.5}]}],
        **extra})
    assert answer.status_code == 200, answer.text


def test_pages_need_a_login(browser: TestClient) -> None:
    for path in ("/", "/ui/deployments", "/ui/devices/x", "/ui/devices/x/agent.svg",
                 "/ui/deployments/p/s"):
        answer = browser.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/ui/login?next=")
    assert browser.get("/?fragment=1").status_code == 401
    assert browser.get("/ui/login").status_code == 200
    forged = SessionSigner(b"x" * 32, 3600).issue(1, time.time())
    browser.cookies.set(COOKIE, forged)
    assert browser.get("/").status_code == 303
    assert browser.post("/ui/deployments/p/s/start", data={"csrf": "x"}).status_code == 303


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(
        browser: TestClient, token: str) -> None:
    answer = browser.post("/ui/login", data={"token": f"  {token}\n", "next": "//evil.example"})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    assert browser.get("/").status_code == 200
    assert browser.get("/ui/login").status_code == 303  # already logged in
    page = browser.get("/ui/deployments").text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf is not None
    assert browser.post("/ui/logout", data={}).status_code == 403  # no CSRF token
    out = browser.post("/ui/logout", data={"csrf": csrf.group(1)})
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert browser.get("/").status_code == 303


def test_failed_logins_count_toward_the_api_limit(
        settings: ServerSettings, engine: Engine, token: str) -> None:
    limited = settings.model_copy(update={"auth_failures_per_minute": 3})
    with TestClient(create_app(limited), follow_redirects=False) as client:
        for _ in range(2):
            answer = client.post("/ui/login", data={"token": "wrong"})
            assert answer.status_code == 401 and "unknown admin token" in answer.text
        api = client.get("/api/v1/fleets", headers={"Authorization": "Bearer wrong"})
        assert api.status_code == 401  # the third failure, through the REST API
        blocked = client.post("/ui/login", data={"token": token})
        assert blocked.status_code == 429 and "too many failed" in blocked.text
        assert COOKIE not in blocked.headers.get("set-cookie", "")


def test_stage_actions_need_the_session_csrf_token(
        browser: TestClient, api: TestClient, token: str) -> None:
    api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    register(api, "turbine-1", "wind")
    csrf = _login(browser, token)
    # The CSRF check comes first: without the token nothing is looked up or changed.
    for data in ({}, {"csrf": "0" * 64}):
        refused = browser.post("/ui/deployments/base/all/start", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
    answer = browser.post("/ui/deployments/base/all/start", data={"csrf": csrf})
    assert answer.status_code == 303
    assert "does+not+exist" in answer.headers["location"]
    assert "kind=error" in answer.headers["location"]
    made = browser.post("/ui/deployments", data={
        "csrf": csrf, "name": "base", "fleet": "wind", "model_handle": "anomaly",
        "packaging_job": "nojob", "stage": "all", "selection_type": "SELECTION",
        "selection": "turbine-1", "policy": "ROLLBACK_ON_FAILURE"})
    assert made.status_code == 303 and "packaging+job" in made.headers["location"]
    bad = browser.post("/ui/deployments", data={
        "csrf": csrf, "name": "bad name", "fleet": "wind", "model_handle": "a",
        "packaging_job": "j", "stage": "s", "selection_type": "PERCENTAGE", "selection": "0"})
    assert bad.status_code == 303 and "not+created" in bad.headers["location"]
    notice = browser.get(bad.headers["location"])
    assert "the plan was not created" in notice.text


def test_a_plan_made_on_the_page_starts_and_stops_there(
        browser: TestClient, api: TestClient, token: str, onnx_model: Any) -> None:
    api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    register(api, "turbine-1", "wind")
    with onnx_model.open("rb") as model:
        job = api.post("/api/v1/packaging-jobs", files={"model": model}, data={
            "name": "relu-v1", "model_name": "relu", "model_version": "1.0"})
    assert job.status_code == 201 and job.json()["status"] == "COMPLETED", job.text
    csrf = _login(browser, token)
    made = browser.post("/ui/deployments", data={
        "csrf": csrf, "name": "base", "fleet": "wind", "model_handle": "relu",
        "packaging_job": "relu-v1", "stage": "all", "selection_type": "SELECTION",
        "selection": "turbine-1", "policy": "ROLLBACK_ON_FAILURE"})
    assert made.status_code == 303 and "kind=ok" in made.headers["location"], made.headers
    started = browser.post("/ui/deployments/base/all/start", data={"csrf": csrf})
    assert "kind=ok" in started.headers["location"]
    stage = api.get("/api/v1/deployment-plans/base").json()["stages"][0]
    assert stage["status"] == "INPROGRESS" and stage["device_counts"] == {"READYTODEPLOY": 1}
    page = browser.get("/ui/deployments/base/all")
    assert page.status_code == 200 and "turbine-1" in page.text
    assert "has not fetched the deployment" in page.text  # the service's hint
    browser.post("/ui/deployments/base/all/stop", data={"csrf": csrf})
    assert api.get("/api/v1/deployment-plans/base").json()["stages"][0]["status"] == "STOPPED"
    fragment = browser.get("/ui/deployments?fragment=1")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert "stopped" in fragment.text


def test_forms_over_the_limit_are_refused(browser: TestClient, token: str) -> None:
    answer = browser.post("/ui/login", content=b"token=" + b"a" * (70 << 10),
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 413
    json_body = browser.post("/ui/login", json={"token": token})
    assert json_body.status_code == 400


def test_overview_pages_device_tiles_by_state(
        browser: TestClient, api: TestClient, token: str) -> None:
    api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    callers = {f"t{i:02d}": register(api, f"t{i:02d}", "wind") for i in range(25)}
    for name in ("t00", "t01", "t02"):
        _heartbeat(callers[name], name)
    _login(browser, token)
    first = browser.get("/?size=10")
    assert first.status_code == 200
    assert "page 1 of 3" in first.text
    assert first.text.count('class="tile ') == 10
    last = browser.get("/?size=10&page=3")
    assert last.text.count('class="tile ') == 5 and "t24" in last.text
    online = browser.get("/?state=online&size=10")
    assert online.text.count('class="tile online') == 3 and "page 1 of" not in online.text
    never = browser.get("/?state=never&size=10&page=9")  # past the end: the last page
    assert "page 3 of 3" in never.text and never.text.count('class="tile never') == 2
    assert re.search(r'class="n">3</span><span class="l">online', first.text)
    assert "anomaly</b> 2.0" in first.text  # the model version bar
    assert browser.get("/?size=5000").status_code == 422
    assert browser.get("/?fleet=nope").status_code == 404


def test_device_page_and_charts(browser: TestClient, api: TestClient, token: str) -> None:
    api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    caller = register(api, "turbine-1", "wind")
    _heartbeat(caller, "turbine-1")
    _login(browser, token)
    page = browser.get("/ui/devices/turbine-1")
    assert page.status_code == 200
    assert "7.5" in page.text and "79.2 MiB" in page.text and "anomaly" in page.text
    for chart in ("/ui/devices/turbine-1/agent.svg?hours=1",
                  "/ui/devices/turbine-1/models/anomaly.svg?hours=1"):
        answer = browser.get(chart)
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/svg+xml"
        assert answer.text.lstrip().startswith("<?xml") and "<svg" in answer.text
    assert browser.get("/ui/devices/nope").status_code == 404
    assert browser.get("/ui/static/dashboard.css").status_code == 200
    assert browser.get("/ui/static/..%2Fapp.py").status_code == 404


def test_dashboard_routes_are_not_in_the_openapi_schema(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]


def _received(ids: dict[str, int], name: str, at: float) -> edge.ReceivedHeartbeat:
    return edge.ReceivedHeartbeat(ids[name], schemas.Heartbeat.model_validate({
        "DeviceName": name, "DeviceFleetName": "wind", "AgentVersion": "1",
        "AgentMetrics": [{"MetricName": "cpu-percent", "Value": 1.0}],
        "Models": [{"ModelName": "anomaly", "ModelVersion": "1.0", "ModelMetrics": [
            {"MetricName": "inference-count", "Value": 10}]}]}), at)


def test_history_keeps_one_sample_per_period_and_prunes_old_ones(
        sessions: sessionmaker[Session], server_key: ServerKey) -> None:
    with sessions.begin() as s:
        fleets.create_fleet(s, schemas.FleetCreate(name="wind", output_location="x"))
        for name in ("a", "b"):
            fleets.register_device(s, server_key, schemas.DeviceRegister(name=name,
                                                                         fleet="wind"),
                                   endpoint="x", region="r")
    with sessions() as s:
        ids = {name: i for name, i in s.execute(select(Device.name, Device.id))}
    pruner = history.HistoryPruner(history.HistoryPolicy(
        sample_seconds=60, retention_seconds=600, prune_every_seconds=0))
    start = 60.0 * 16_667 + 20  # 20 s into a period
    for step in range(0, 200, 5):  # a heartbeat every 5 s for 200 s: four periods touched
        with sessions.begin() as s:
            edge.write_heartbeats(s, [_received(ids, "a", start + step),
                                      _received(ids, "b", start + step)], pruner)
    with sessions() as s:
        kept = history.device_samples(s, ids["a"], since=0)
    assert [k.at - start for k in kept] == [0, 40, 100, 160]
    assert kept[0].interval_seconds is None and kept[1].interval_seconds == 5
    assert history.rate(kept[1], "anomaly", "inference-count") == 2.0
    assert kept[1].agent == {"cpu-percent": 1.0}
    assert kept[1].models == {"anomaly": {"version": "1.0", "inference-count": 10.0}}
    with sessions.begin() as s:  # 10 min later: the first samples are past the retention
        edge.write_heartbeats(s, [_received(ids, "a", start + 700)], pruner)
    with sessions() as s:
        left = [k.at - start for k in history.device_samples(s, ids["a"], since=0)]
        assert left == [100, 160, 700]
        assert s.scalar(select(func.count()).select_from(HeartbeatSample).where(
            HeartbeatSample.device_id == ids["b"])) == 2
    with sessions.begin() as s:
        fleets.deregister_device(s, "a")
    with sessions() as s:
        assert history.device_samples(s, ids["a"], since=0) == []
