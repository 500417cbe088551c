"""The dashboard in a real browser (Debian chromium driven by playwright) against a real
``edgefleet server`` process and real ``edgefleet-agent`` processes.

An operator logs in with the admin token, watches two turbines come online on the overview
without reloading (a third never connects), creates an upgrade plan on the deployments page,
starts its stage there and watches it finish, and opens a device page with its charts.
Another operator reads what a turbine's agent captured into the server's capture folder:
records per hour, a record's tensors and auxiliary data, its downloads, and the input drift
against the baseline packaged with the model.
Screenshots go to ``results/dashboard/`` (gitignored) for a reviewer to look at.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support.agent_process import AgentProcess, start_agent
from support.captures import tensor
from support.fleet_server import (
    FLEET,
    Server,
    free_port,
    package_job,
    predict,
    register,
    root_certs,
    run_stage,
    start_server,
    stop_server,
    version,
)
from support.models import affine_reference
from support.packages import Packages
from support.polling import wait_for

from edgefleet.proto import agent_pb2 as pb

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
RESULTS = Path(__file__).resolve().parents[2] / "results" / "dashboard"
#: How long the page may take to show a change by itself (it polls every 2 s).
LIVE_MS = 30_000


@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    # A sample per second, so that a short test draws lines (the default is one a minute).
    monkeypatch.setenv("EDGEFLEET_SERVER_HISTORY_SAMPLE_SECONDS", "1")
    running = start_server(tmp_path / "server", free_port(), tmp_path / "server.log")
    yield running
    stop_server(running)


@pytest.fixture()
def browser_page() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        yield page
        browser.close()


class Traffic:
    """Predictions against agents from a thread, so that models have rates and latencies."""

    def __init__(self, agents: list[AgentProcess]) -> None:
        self._agents = agents
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for agent in self._agents:
                with contextlib.suppress(Exception):  # no model yet, or one swapping in
                    predict(agent)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_operator_logs_in_watches_the_fleet_and_rolls_out_from_the_page(
        server: Server, browser_page: object, packages: Packages, tmp_path: Path) -> None:
    page = browser_page
    assert isinstance(page, playwright.Page)
    shutil.rmtree(RESULTS, ignore_errors=True)
    RESULTS.mkdir(parents=True)
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "edgefleet-root.pem").write_bytes(server.admin.root_certificate())
    server.admin.create_fleet(FLEET, "s3://captures/wind")
    names = ["turbine-1", "turbine-2", "turbine-3"]
    configs = {n: register(server, n, tmp_path / n, certs) for n in names}
    package_job(server, "affine-v1", "1.0", packages, "affine.onnx")
    package_job(server, "affine-v2", "2.0", packages, "affine2.onnx")

    page.goto(server.url + "/")
    assert "/ui/login" in page.url
    page.screenshot(path=str(RESULTS / "01-login.png"))
    page.fill("#token", "not the token")
    page.click("button[type=submit]")
    playwright.expect(page.locator(".notice.error")).to_contain_text("unknown admin token")
    page.fill("#token", (server.data_dir / "admin-token").read_text().strip())
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")
    playwright.expect(page.locator(".count.never .n")).to_have_text("3")

    agents: dict[str, AgentProcess] = {}
    traffic: Traffic | None = None
    try:
        for name in names[:2]:  # turbine-3 stays unconnected
            agents[name] = start_agent(configs[name], tmp_path / name)
        # The page updates itself: no reload from here on.
        playwright.expect(page.locator(".count.online .n")).to_have_text("2", timeout=LIVE_MS)
        playwright.expect(page.locator(".tile.online")).to_have_count(2)
        playwright.expect(page.locator(".tile.never")).to_contain_text("turbine-3")
        server.admin.create_plan({"name": "base", "fleet": FLEET, "models": [
            {"model_handle": "affine", "packaging_job": "affine-v1"}], "stages": [
            {"name": "all", "selection": {"type": "SELECTION", "device_names": names[:2]}}]})
        run_stage(server, "base", "all", 2)
        traffic = Traffic(list(agents.values()))
        playwright.expect(page.locator(".bars").first).to_contain_text("affine 1.0",
                                                                       timeout=LIVE_MS)
        page.screenshot(path=str(RESULTS / "02-overview-online.png"), full_page=True)

        page.click("nav >> text=Deployments")
        page.wait_for_url("**/ui/deployments")
        page.click("summary >> text=New deployment plan")
        page.fill("input[name=name]", "upgrade")
        page.fill("input[name=model_handle]", "affine")
        page.select_option("select[name=packaging_job]", "affine-v2")
        page.fill("input[name=stage]", "both")
        page.fill("input[name=selection]", "turbine-1, turbine-2")
        page.click("text=Create plan")
        playwright.expect(page.locator(".notice.ok")).to_contain_text("plan upgrade created")
        stage = page.locator("tr[data-stage=both]")
        stage.get_by_role("button", name="Start").click()
        playwright.expect(page.locator(".notice.ok")).to_contain_text("stage upgrade/both started")
        stage = page.locator("tr[data-stage=both]")
        playwright.expect(stage).to_contain_text("2/2 deployed", timeout=LIVE_MS)
        playwright.expect(stage.locator(".badge")).to_have_text("deployed")
        page.screenshot(path=str(RESULTS / "03-deployments.png"), full_page=True)
        wait_for(lambda: all(version(a) == "2.0" for a in agents.values()), 30,
                 "both agents to serve 2.0")

        # A broken package (damaged in the store): the stage fails, the agents roll back to
        # 2.0 and the page lists why.
        v3 = package_job(server, "affine-v3", "3.0", packages, "affine.onnx")
        stored = server.data_dir / "objects" / v3["artifact"]
        stored.write_bytes(stored.read_bytes()[:-100] + b"\0" * 100)
        server.admin.create_plan({"name": "broken", "fleet": FLEET, "models": [
            {"model_handle": "affine", "packaging_job": "affine-v3"}], "stages": [
            {"name": "canary", "selection": {"type": "SELECTION",
                                             "device_names": names[1:2]}}]})
        page.reload()
        page.locator("tr[data-stage=canary]").get_by_role("button", name="Start").click()
        failures = page.locator("section", has_text="Recent failures and rollbacks")
        playwright.expect(failures).to_contain_text("checksum mismatch", timeout=LIVE_MS)
        playwright.expect(page.locator("tr[data-stage=canary] .badge")).to_have_text("failed")
        page.screenshot(path=str(RESULTS / "03b-deployments-failed.png"), full_page=True)

        page.goto(server.url + "/ui/devices/turbine-1?hours=1")
        playwright.expect(page.locator(".summary .badge")).to_have_text("online")
        playwright.expect(page.locator("text=Deployment history")).to_be_visible()
        playwright.expect(page.locator("td >> text=upgrade")).to_be_visible()
        # Let a few samples of 2.0 in, then wait for the charts to be drawn.
        page.wait_for_timeout(4000)
        page.reload()
        for chart in page.locator("img.chart").all():
            wait_for(lambda c=chart: c.evaluate("i => i.complete && i.naturalWidth > 0"), 30,
                     "a chart to load")
        assert page.locator("img.chart").count() == 2  # agent + the one model
        page.screenshot(path=str(RESULTS / "04-device.png"), full_page=True)

        assert version(agents["turbine-2"]) == "2.0"  # rolled back from the broken 3.0
        page.goto(server.url + "/")
        playwright.expect(page.locator(".bars").first).to_contain_text("affine 2.0")
        page.screenshot(path=str(RESULTS / "05-overview-upgraded.png"), full_page=True)
        page.goto(server.url + "/ui/deployments/upgrade/both")
        page.screenshot(path=str(RESULTS / "06-stage.png"), full_page=True)
    finally:
        if traffic is not None:
            traffic.stop()
        codes = {n: a.stop() for n, a in agents.items()}
    assert set(codes.values()) <= {0}, codes


#: Days of captures of the drift test (ending yesterday), captures per day, rows each, and
#: the day from which feature 2 of the inputs is shifted by two standard deviations.
DAYS, PER_DAY, ROWS, SHIFT_FROM = 14, 6, 20, 7


@pytest.fixture()
def capture_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A server reading captured data from ``tmp_path / "capture"`` (scanned every second)."""
    folder = tmp_path / "capture"
    folder.mkdir()
    monkeypatch.setenv("EDGEFLEET_SERVER_CAPTURE_SCAN_SECONDS", "1")
    running = start_server(tmp_path / "server", free_port(), tmp_path / "server.log",
                           args=("--capture-location", str(folder)))
    yield running
    stop_server(running)


def _capture(number: int, at: float, x: np.ndarray, event: str | None) -> pb.CaptureDataRequest:
    y, s = affine_reference(x)
    seconds = math.floor(at)
    aux = [] if event is None else [pb.AuxiliaryData(
        name="context", encoding=pb.JSON,
        byte_data=json.dumps({"event": event, "score": 0.97, "rotor_rpm": 14.2}).encode())]
    return pb.CaptureDataRequest(
        model_name="affine", capture_id=f"window-{number:03d}",
        inference_timestamp=pb.Timestamp(seconds=seconds, nanos=round((at - seconds) * 1e9)),
        input_tensors=[tensor("x", x)], output_tensors=[tensor("y", y), tensor("s", s)],
        inputs=aux)


def test_operator_reads_captured_records_and_drift(
        capture_server: Server, browser_page: object, packages: Packages,
        tmp_path: Path) -> None:
    page = browser_page
    assert isinstance(page, playwright.Page)
    server = capture_server
    RESULTS.mkdir(parents=True, exist_ok=True)
    certs = root_certs(server, tmp_path / "certs")
    server.admin.create_fleet(FLEET, "s3://captures/wind")
    # The agent writes batch files into the folder the server reads (the Disk destination).
    config = register(server, "turbine-1", tmp_path / "turbine-1", certs,
                      sagemaker_edge_core_capture_data_destination="Disk",
                      sagemaker_edge_core_capture_data_disk_path=str(tmp_path / "capture"),
                      sagemaker_edge_core_capture_data_push_period_seconds=0.2,
                      sagemaker_edge_core_capture_data_batch_size=20,
                      sagemaker_edge_core_capture_data_buffer_size=200)
    rng = np.random.default_rng(7)
    training = tmp_path / "training.npy"
    np.save(training, rng.standard_normal((5000, 4)).astype(np.float32))
    job = server.admin.create_packaging_job("affine-v1", "affine", "1.0",
                                            packages.models / "affine.onnx", baseline=training)
    assert job["status"] == "COMPLETED", job
    server.admin.create_plan({"name": "base", "fleet": FLEET, "models": [
        {"model_handle": "affine", "packaging_job": "affine-v1"}], "stages": [
        {"name": "all", "selection": {"type": "SELECTION", "device_names": ["turbine-1"]}}]})
    agent = start_agent(config, tmp_path / "turbine-1")
    try:
        run_stage(server, "base", "all", 1)
        wait_for(lambda: version(agent) == "1.0", 30, "the agent to serve affine 1.0")
        first_day = (math.floor(time.time() / 86_400) - DAYS) * 86_400
        sent: dict[str, np.ndarray] = {}
        for day in range(DAYS):
            for k in range(PER_DAY):
                number = day * PER_DAY + k
                x = rng.standard_normal((ROWS, 4)).astype(np.float32)
                x[:, 2] += 2.0 if day >= SHIFT_FROM else 0.0
                at = first_day + day * 86_400 + k * 3 * 3600 + 0.123456 + rng.uniform(0, 600)
                request = _capture(number, at, x, "anomaly" if number % 9 == 4 else None)
                agent.stub.CaptureData(request, timeout=10)
                sent[request.capture_id] = x
        wait_for(lambda: server.admin.device_captures("turbine-1", limit=1)["records"]
                 == len(sent), 30, "the server to index every capture")

        page.goto(server.url + "/ui/devices/turbine-1")
        page.fill("#token", (server.data_dir / "admin-token").read_text().strip())
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/devices/turbine-1")
        panel = page.locator("#captures")
        playwright.expect(panel.locator(".facts .n").first).to_have_text(str(len(sent)))
        playwright.expect(panel.locator("table.captures tbody tr")).to_have_count(25)
        for chart in page.locator("#captures img.chart, #drift img.chart").all():
            wait_for(lambda c=chart: c.evaluate("i => i.complete && i.naturalWidth > 0"), 30,
                     "a chart to load")
        panel.screenshot(path=str(RESULTS / "07-device-captures.png"))
        drift = page.locator("#drift")
        playwright.expect(drift).to_contain_text("population stability index")
        playwright.expect(drift.locator("tr.over").first).to_contain_text("2")
        drift.screenshot(path=str(RESULTS / "09-drift.png"))

        # Only the anomalies, then the oldest of them.
        panel.locator(".chips a", has_text="anomaly").click()
        page.wait_for_url("**event=anomaly**")
        anomalies = sum(1 for n in range(len(sent)) if n % 9 == 4)
        rows = page.locator("#captures table.captures tbody tr")
        playwright.expect(rows).to_have_count(anomalies)
        playwright.expect(rows.locator(".badge.ev")).to_have_count(anomalies)
        rows.last.locator("td.time a").click()
        page.wait_for_url("**/ui/captures/*")
        capture_id = page.locator("dd.ident").first.inner_text()
        x = sent[capture_id]
        inputs = page.locator(".tensor").first
        playwright.expect(inputs.locator(".tag").first).to_have_text("float32")
        playwright.expect(inputs).to_contain_text(f"shape [{ROWS}, 4]")
        assert 1 <= np.abs(x).max() < 10  # shown with four decimals
        playwright.expect(inputs.locator("tbody tr").first.locator("td").first).to_have_text(
            f"{x[0, 0]:.4f}")
        playwright.expect(page.locator("pre.aux-text")).to_contain_text('"event": "anomaly"')
        page.screenshot(path=str(RESULTS / "08-capture-record.png"), full_page=True)
        with page.expect_download() as download:
            page.click("text=Download tensors (.npz)")
        with np.load(download.value.path()) as arrays:
            assert sorted(arrays.files) == ["input/x", "output/s", "output/y"]
            assert np.array_equal(arrays["input/x"], x)
        with page.expect_download() as download:
            page.click("text=Download JSON line")
        record = json.loads(Path(download.value.path()).read_text())
        assert record["eventMetadata"]["eventId"] == capture_id

        page.click("h1 >> text=turbine-1")
        page.wait_for_url("**/ui/devices/turbine-1**")
        page.goto(server.url + "/")
        playwright.expect(page.locator(".tile .tevents")).to_have_text(str(anomalies))
        page.screenshot(path=str(RESULTS / "10-overview-events.png"))
    finally:
        code = agent.stop()
    assert code == 0, agent.log()
