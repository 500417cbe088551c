"""The dashboard in a real browser (Debian chromium driven by playwright) against a real
``edgefleet server`` process and real ``edgefleet-agent`` processes.

An operator logs in with the admin token, watches two turbines come online on the overview
without reloading (a third never connects), creates an upgrade plan on the deployments page,
starts its stage there and watches it finish, and opens a device page with its charts.
Screenshots go to ``results/dashboard/`` (gitignored) for a reviewer to look at.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agent_process import AgentProcess, start_agent
from support.fleet_server import (
    FLEET,
    Server,
    free_port,
    package_job,
    predict,
    register,
    run_stage,
    start_server,
    stop_server,
    version,
)
from support.packages import Packages
from support.polling import wait_for

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
