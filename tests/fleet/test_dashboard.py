"""The dashboard's routes over HTTP (TestClient) and the heartbeat history, on SQLite and
PostgreSQL: login, redirects, CSRF, form limits, pagination, charts, history sampling, and
captured data (device panel, record page, downloads, drift) over batch files written by the
agent's own capture pipeline and indexed by the server."""

from __future__ import annotations

import html
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from fleet.fleet_support import register
from fleet.test_captures import JUNE_2015, request, write_captures
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from support.captures import captured_tensor

from edgefleet.agent.types import AuxiliaryEncoding, CapturedAuxiliary, CaptureRequest
from edgefleet.drift import PSI_THRESHOLD
from edgefleet.fleet import captures, edge, fleets, history, schemas
from edgefleet.fleet.app import create_app
from edgefleet.fleet.capture_index import CaptureIndex
from edgefleet.fleet.capture_location import LocalCaptureLocation
from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.dashboard.session import COOKIE, SessionSigner
from edgefleet.fleet.db.models import Device, HeartbeatSample
from edgefleet.fleet.drift_series import PackageBaselines
from edgefleet.fleet.settings import ServerSettings
from edgefleet.fleet.storage import open_object_store


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
                 "/ui/deployments/p/s", "/ui/devices/x/captures.svg", "/ui/devices/x/drift.svg",
                 "/ui/captures/1", "/ui/captures/1/download?format=npz"):
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


# -- captured data ------------------------------------------------------------------------------

_DAY = 86_400.0
#: A client of the app reading captures, the capture folder, Relu inputs by capture id.
Captured = tuple[TestClient, Path, dict[str, np.ndarray]]


def _relu(at: float, x: np.ndarray, event: str | None) -> CaptureRequest:
    """A capture of the packaged Relu model: x float32 [20, 4] in, y = max(x, 0) out, and a
    JSON auxiliary input with ``event`` when given."""
    aux = () if event is None else (CapturedAuxiliary(
        "context", AuxiliaryEncoding.JSON, json.dumps({"event": event, "score": 0.93}).encode()),)
    return CaptureRequest(
        capture_id=f"relu-{at:.0f}", model_alias="relu", model_version="1.0",
        inference_time_ns=int(at * 1e6) * 1000,
        input_tensors=(captured_tensor("x", x),),
        output_tensors=(captured_tensor("y", np.maximum(x, 0)),), auxiliary_inputs=aux)


@pytest.fixture
def captured(settings: ServerSettings, sessions: sessionmaker[Session], api: TestClient,
             onnx_model: Path, tmp_path: Path) -> Iterator[Captured]:
    """A browser-like client of an app reading captures from a folder, where the agent's
    capture pipeline stored turbine-1's records: 20 days of Relu inputs (5 captures of 20 rows
    a day, feature 2 shifted by 2 from day 10, every tenth with the event "anomaly"; the
    version's package has a drift baseline), then three records of the wind-farm model
    (one 40 KB image, one with the event "stop"). The device's heartbeat says it serves
    anomaly 2.0, whose package has no baseline. Also gives the folder and Relu inputs by
    capture id."""
    api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    _heartbeat(register(api, "turbine-1", "wind"), "turbine-1")
    training = tmp_path / "training.npy"
    np.save(training, np.random.default_rng(3).standard_normal((2000, 4)).astype(np.float32))
    with onnx_model.open("rb") as model, training.open("rb") as data:
        job = api.post("/api/v1/packaging-jobs", files={"model": model, "baseline": data},
                       data={"name": "relu-v1", "model_name": "relu", "model_version": "1.0"})
    assert job.json()["status"] == "COMPLETED", job.text
    rng = np.random.default_rng(4)
    inputs: dict[str, np.ndarray] = {}
    sent = []
    for n in range(100):
        x = rng.standard_normal((20, 4)).astype(np.float32)
        x[:, 2] += 2.0 if n >= 50 else 0.0
        sent.append(_relu(JUNE_2015 + n // 5 * _DAY + 3600 * (n % 5), x,
                          "anomaly" if n % 10 == 9 else None))
        inputs[sent[-1].capture_id] = x
    sent += [request(JUNE_2015 + 25 * _DAY + 60 * i, event="stop" if i == 0 else None,
                     big=i == 1) for i in range(3)]
    root = tmp_path / "capture"
    write_captures(root, tmp_path, "turbine-1", sent)
    # Indexed before the app starts, so that its own first scan finds nothing new.
    baselines = PackageBaselines(sessions, open_object_store(None, settings.data_dir))
    assert CaptureIndex(sessions, LocalCaptureLocation(root), baselines).scan_all().records == 103
    app = create_app(settings.model_copy(update={"capture_location": str(root),
                                                 "capture_scan_seconds": 3600}))
    with TestClient(app, follow_redirects=False) as client:
        yield client, root, inputs


def _ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/ui/captures/(\d+)">#', page)]


def test_device_page_shows_captured_data_and_drift(
        captured: Captured, token: str) -> None:
    client, _, _ = captured
    _login(client, token)
    page = client.get("/ui/devices/turbine-1")
    assert page.status_code == 200
    text = page.text
    assert re.search(r'class="n">103</span><span class="l">records', text)
    assert re.search(r'class="n">11</span><span class="l">with an event', text)
    assert "2015-06-01 00:00:00 UTC" in text and "2015-06-26 00:02:00 UTC" in text
    newest = _ids(text)
    times = re.findall(r'<td class="time"><a href="/ui/captures/\d+">([^<]+)</a>', text)
    assert len(newest) == 25 and times == sorted(times, reverse=True)
    assert times[0] == "2015-06-26 00:02:00"
    assert text.count('<span class="badge ev">stop</span>') == 1
    older = re.search(r'href="\?([^"]+)#captures">older', text)
    assert older is not None and "before=" in older.group(1)
    second = client.get("/ui/devices/turbine-1?" + html.unescape(older.group(1))).text
    assert "Older records" in second and len(_ids(second)) == 25
    assert not set(_ids(second)) & set(newest)
    anomalies = client.get("/ui/devices/turbine-1?event=anomaly").text
    assert len(_ids(anomalies)) == 10 and anomalies.count('badge ev">anomaly<') == 10
    assert 'event=stop#captures">stop</a>' in anomalies  # the filter offers every event
    # Drift: the Relu version has a baseline, the served anomaly 2.0 has none.
    assert "population stability index" in text and "at least 100 tensor rows" in text
    assert "anomaly 2.0 (served now) has no drift baseline" in text
    assert "/ui/devices/turbine-1/drift.svg?t=" in text
    drifted = re.findall(r'<tr class="over">\s*<td>([^<]+)</td><td class="num">([\d.]+)', text)
    assert drifted and drifted[0][0] == "x[2]" and float(drifted[0][1]) > PSI_THRESHOLD
    assert text.count('<tr class="over">') == 1  # only the shifted feature
    stamp = re.search(r"captures\.svg\?t=(\d+)", text)
    assert stamp is not None
    for chart in (f"/ui/devices/turbine-1/captures.svg?t={stamp.group(1)}",
                  f"/ui/devices/turbine-1/drift.svg?t={stamp.group(1)}"):
        answer = client.get(chart)
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/svg+xml"
        assert "<svg" in answer.text and client.get(chart).content == answer.content
    assert "Input drift: largest feature PSI" in client.get(
        "/ui/devices/turbine-1/drift.svg").text
    overview = client.get("/").text
    assert re.search(r'<span class="tevents" title="11 captured records with an event[^"]*">'
                     r"11</span>", overview)


def test_capture_record_page_shows_tensors_and_downloads_them(
        captured: Captured, api: TestClient,
        token: str) -> None:
    client, root, inputs = captured
    _login(client, token)
    relu = api.get("/api/v1/captures", params={"model": "relu", "event": "anomaly"}).json()
    first = relu["captures"][0]
    page = client.get(f"/ui/captures/{first['id']}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    x = inputs[first["capture_id"]]
    assert "<h3>x</h3>" in text and "float32" in text and "shape [20, 4]" in text
    # Largest magnitude 1 to 10: five significant digits are four decimals for every value.
    assert 1 <= np.abs(x).max() < 10 and "Shown with 4 decimals" in text
    assert f"<td>{x[0, 0]:.4f}</td><td>{x[0, 1]:.4f}</td>" in text
    assert f"<td>{x[19, 3]:.4f}</td>" in text and "more values" not in text
    assert '{\n  "event": "anomaly",\n  "score": 0.93\n}' in text  # pretty-printed JSON
    assert "application/json" in text and "2015-06-" in text
    assert 'href="/ui/devices/turbine-1#captures"' in text
    assert f"line {first['line']}" in text
    stored = (root / first["file"]).read_bytes().split(b"\n")[first["line"] - 1]
    line = client.get(f"/ui/captures/{first['id']}/download?format=jsonl")
    assert line.status_code == 200 and line.content == stored + b"\n"
    assert line.headers["content-type"] == "application/x-ndjson"
    assert f'filename="capture-{first["id"]}.jsonl"' in line.headers["content-disposition"]
    npz = client.get(f"/ui/captures/{first['id']}/download", params={"format": "npz"})
    with np.load(io.BytesIO(npz.content)) as arrays:
        assert sorted(arrays.files) == ["input/x", "output/y"]
        assert np.array_equal(arrays["input/x"], x) and arrays["input/x"].dtype == np.float32
    # A large tensor: a table of its first values, and how many are left out.
    big = next(c for c in api.get("/api/v1/captures", params={"model": "anomaly"}).json()[
        "captures"] if c["inference_time"] == JUNE_2015 + 25 * _DAY + 60)
    image = client.get(f"/ui/captures/{big['id']}").text
    assert "uint8" in image and "shape [100, 100, 4]" in image and "40,000 values" in image
    assert "Showing the first 32 of 10,000 rows: 39,872 more values" in image
    assert "<th>[0, 31]</th>" in image and "<th>[0, 32]</th>" not in image
    assert "No auxiliary input." in image
    assert client.get(f"/ui/captures/{big['id']}/download?format=zip").status_code == 422


def test_capture_pages_explain_what_cannot_be_shown(
        captured: Captured, api: TestClient,
        token: str) -> None:
    client, root, _ = captured
    _login(client, token)
    unknown = client.get("/ui/captures/999999")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
    assert "no captured record 999999" in unknown.text and "fleet overview" in unknown.text
    device = client.get("/ui/devices/nope")  # e.g. a record's device, deregistered since
    assert device.status_code == 404 and "'nope' is not registered" in html.unescape(device.text)
    live = client.get("/ui/devices/nope?fragment=1")  # the page's poll, after deregistering
    assert live.status_code == 404 and "<html" not in live.text and "not registered" in live.text
    whole = client.get("/ui/captures/999999?fragment=1")  # no live part: the whole page
    assert whole.status_code == 404 and "<html" in whole.text
    gone = api.get("/api/v1/captures", params={"event": "stop"}).json()["captures"][0]
    (root / gone["file"]).unlink()
    for path in (f"/ui/captures/{gone['id']}", f"/ui/captures/{gone['id']}/download"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "is gone from" in answer.text and 'href="/ui/devices/turbine-1#captures"' in (
            answer.text)


def test_capture_panels_say_how_to_turn_captured_data_on(
        browser: TestClient, api: TestClient, token: str) -> None:
    api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    _heartbeat(register(api, "turbine-1", "wind"), "turbine-1")
    _login(browser, token)
    page = browser.get("/ui/devices/turbine-1")
    assert page.status_code == 200 and html.escape(captures.TURN_ON) in page.text
    assert "drift.svg" not in page.text
    for path in ("/ui/captures/1", "/ui/captures/1/download?format=npz"):
        answer = browser.get(path)
        assert answer.status_code == 409 and "captured data is off" in answer.text
