"""``kill -9`` of a real ``edgefleet server`` on PostgreSQL under heartbeat load (issue 14,
"Faults").

Sixteen simulated devices send numbered heartbeats (``fleet_support.RemoteDevice``) as fast as
the server answers, poll GetDeployments and report each deployment's result in a heartbeat;
an operator creates deployment plans, starts their stages and registers devices. The server is
killed with SIGKILL at a random moment, 0.4 to 3 s after it is back, and restarted on the same
database, again and again. Every client that gets an error, or no answer, sends the same
request again until it is answered.

After each kill, before the restart, the database is read as the dead server left it:

* no torn write: every device row, its model rows and its history samples come from one
  heartbeat (:mod:`support.fleet_rows`), no row lacks its device, every plan has its models and
  stage, and a started stage has a row for each device it selected;
* nothing lost: each device row holds the device's latest acknowledged heartbeat (or the one it
  is still sending), every acknowledged deployment result, plan, stage start and registration is
  stored;
* nothing let in: what is stored was acknowledged, or was being sent when the server died.

At the end every client has had its answer. ``pytest --long`` runs 60 kills instead of 10.
"""

from __future__ import annotations

import functools
import hashlib
import random
import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet.fleet_support import RemoteDevice
from sqlalchemy import func, select
from support.databases import fresh_database
from support.fleet_rows import read_heartbeat_rows, unexpected
from support.fleet_server import Server, free_port, start_server, stop_server

from edgefleet.fleet.db.engine import make_engine
from edgefleet.fleet.db.models import (
    DeploymentPlan,
    Device,
    PlanModel,
    Stage,
    StageDevice,
)

pytestmark = pytest.mark.slow

SHORT, LONG = 10, 60  # kills
DEVICES = 16
FLEET, SPARE = "wind", "spare"
#: Longest a client waits for one answer, and for a request to get through at all.
TIMEOUT, GIVE_UP = 10.0, 180.0


def expected_status(device: str, deployment: str) -> str:
    """The result a device reports for a deployment: FAIL for about one in four."""
    return "FAIL" if hashlib.sha1(f"{device}/{deployment}".encode()).digest()[0] < 64 else (
        "SUCCESS")


@dataclass
class Outcome:
    """What a client knows about its requests: acknowledged, and sent without an answer yet
    (the server died, or answered 5xx: either may or may not have been stored)."""

    acked: set[Any] = field(default_factory=set)
    pending: set[Any] = field(default_factory=set)
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, key: Any) -> None:
        """``key`` is being sent."""
        with self.lock:
            self.pending.add(key)

    def answered(self, key: Any) -> None:
        """``key`` was acknowledged."""
        with self.lock:
            self.pending.discard(key)
            self.acked.add(key)

    def until_answered(self, key: Any, send: Callable[[], httpx.Response],
                       done: Callable[[httpx.Response], bool]) -> httpx.Response:
        """Send until ``done`` accepts an answer, counting each error (a 5xx or no answer;
        anything else fails the test); ``key`` is pending meanwhile."""
        self.begin(key)
        deadline = time.monotonic() + GIVE_UP
        while True:
            try:
                answer = send()
                if done(answer):
                    break
                reason = str(answer.status_code)
                assert answer.status_code >= 500, (key, answer.status_code, answer.text)
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            with self.lock:
                self.errors[reason] = self.errors.get(reason, 0) + 1
            assert time.monotonic() < deadline, f"{key} was never answered"
            time.sleep(0.2)  # about how long botocore's first retry waits
        self.answered(key)
        return answer

    def snapshot(self) -> tuple[set[Any], set[Any]]:
        """(acknowledged, pending) now."""
        with self.lock:
            return set(self.acked), set(self.pending)


class DeviceLoad(threading.Thread):
    """One device: numbered heartbeats back to back, GetDeployments every fifth, and the result
    of each deployment it got in its next heartbeat."""

    def __init__(self, device: RemoteDevice, stop: threading.Event) -> None:
        super().__init__(name=f"load-{device.name}", daemon=True)
        self.device, self.stop = device, stop
        self.heartbeats, self.results = Outcome(), Outcome()
        self.failure: BaseException | None = None

    def run(self) -> None:
        """Send until told to stop; an assertion is kept in ``failure``."""
        try:
            self._run()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.failure = exc

    def _run(self) -> None:
        seq, to_report = 0, list[str]()
        while not self.stop.is_set():
            seq += 1
            result = None
            if to_report:
                deployment = to_report.pop(0)
                status = expected_status(self.device.name, deployment)
                result = {"DeploymentName": deployment, "DeploymentStatus": status,
                          "DeploymentModels": [{"ModelHandle": "relu", "Status": status}]}
                self.results.begin(deployment)
            self.heartbeats.until_answered(seq, functools.partial(
                self.device.heartbeat, seq, result, TIMEOUT), _is_200)
            if result is not None:
                self.results.answered(result["DeploymentName"])
            if seq % 5 == 0:
                to_report += self._new_deployments(set(to_report))

    def _new_deployments(self, known: set[str]) -> list[str]:
        """Names GetDeployments hands out that are neither reported nor known (none when the
        server does not answer)."""
        try:
            answer = self.device.post("GetDeployments", {
                "DeviceName": self.device.name, "DeviceFleetName": self.device.fleet}, TIMEOUT)
        except httpx.HTTPError:
            return []
        if answer.status_code != 200:
            return []
        known |= self.results.snapshot()[0]
        return [d["DeploymentName"] for d in answer.json()["Deployments"]
                if d["DeploymentName"] not in known]


def _is_200(answer: httpx.Response) -> bool:
    return answer.status_code == 200


def _made(answer: httpx.Response) -> bool:
    # 409: a retry found its write already made (the first try was stored, its answer lost)
    return answer.status_code in (200, 201, 409)


class OperatorLoad(threading.Thread):
    """An operator: a plan with one stage selecting the load's devices, its start, and a
    registration in the spare fleet, over and over (a retry that finds its write already
    made, 409, counts as answered)."""

    def __init__(self, url: str, token: str, devices: list[str], stop: threading.Event) -> None:
        super().__init__(name="load-operator", daemon=True)
        self.url, self.devices, self.stop = url, devices, stop
        self.headers = {"Authorization": f"Bearer {token}"}
        self.plans, self.starts, self.registrations = Outcome(), Outcome(), Outcome()
        self.failure: BaseException | None = None

    def run(self) -> None:
        """Write until told to stop; an assertion is kept in ``failure``."""
        try:
            with httpx.Client(base_url=self.url, headers=self.headers, timeout=TIMEOUT) as http:
                self._run(http)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.failure = exc

    def _run(self, http: httpx.Client) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            plan = f"plan-{number}"
            self.plans.until_answered(plan, functools.partial(
                http.post, "/api/v1/deployment-plans", json={
                    "name": plan, "fleet": FLEET,
                    "models": [{"model_handle": "relu", "packaging_job": "pkg"}],
                    "stages": [{"name": "s", "selection": {"type": "SELECTION",
                                                           "device_names": self.devices}}]}),
                _made)
            self.starts.until_answered(plan, functools.partial(
                http.post, f"/api/v1/deployment-plans/{plan}/stages/s/start"), _made)
            name = f"spare-{number}"
            self.registrations.until_answered(name, functools.partial(
                http.post, "/api/v1/devices", json={"name": name, "fleet": SPARE}), _made)
            time.sleep(0.2)


def check_database(url: str, devices: list[DeviceLoad], operator: OperatorLoad) -> list[str]:
    """Every problem of the database at ``url`` (see the module docstring), judged against
    what the clients know now."""
    rows = read_heartbeat_rows(url)
    acked, pending = {}, {}
    for load in devices:
        acked[load.device.name], pending[load.device.name] = load.heartbeats.snapshot()
    lost, let_in = unexpected(rows, acked, pending)
    problems = rows.problems + [f"lost: {x}" for x in lost] + [f"let in: {x}" for x in let_in]
    engine = make_engine(url)
    try:
        with engine.connect() as db:
            names = {i: n for i, n in db.execute(select(Device.id, Device.name))}
            plans = {i: n for i, n in db.execute(select(DeploymentPlan.id,
                                                         DeploymentPlan.name))}
            models = {i: n for i, n in db.execute(select(PlanModel.plan_id, func.count())
                                                  .group_by(PlanModel.plan_id))}
            stages = {plan_id: (stage_id, status, deployment) for stage_id, plan_id, status,
                      deployment in db.execute(select(Stage.id, Stage.plan_id, Stage.status,
                                                      Stage.deployment_name))}
            selected: dict[int, dict[str, str]] = {}
            for stage_id, device_id, status in db.execute(select(
                    StageDevice.stage_id, StageDevice.device_id, StageDevice.status)):
                selected.setdefault(stage_id, {})[names.get(device_id, f"<id {device_id}>")] = (
                    status)
    finally:
        engine.dispose()
    problems += _operator_problems(operator, set(plans.values()), set(names.values()))
    device_names = {load.device.name for load in devices}
    starts_acked, starts_pending = operator.starts.snapshot()
    for plan_id, plan in plans.items():
        if models.get(plan_id) != 1 or plan_id not in stages:
            problems.append(f"torn: plan {plan} has {models.get(plan_id)} models, stage "
                            f"{stages.get(plan_id)}")
            continue
        stage_id, status, deployment = stages[plan_id]
        chosen = selected.get(stage_id, {})
        if status == "READYTODEPLOY":
            if chosen:
                problems.append(f"torn: {plan} not started but {len(chosen)} devices selected")
            if plan in starts_acked:
                problems.append(f"lost: the start of {plan}")
            continue
        if set(chosen) != device_names:
            problems.append(f"torn: {plan} is {status} with devices {sorted(chosen)}")
        if plan not in starts_acked | starts_pending:
            problems.append(f"let in: the start of {plan}")
        problems += _result_problems(plan, deployment, chosen, devices)
    return problems


def _operator_problems(operator: OperatorLoad, plans: set[str], devices: set[str]) -> list[str]:
    """Plans and registrations acknowledged but missing, or stored but never sent."""
    problems = []
    for outcome, stored, what in ((operator.plans, plans, "plan"), (operator.registrations, {
            n for n in devices if n.startswith("spare-")}, "device")):
        acked, pending = outcome.snapshot()
        problems += [f"lost: {what} {name}" for name in sorted(acked - stored)]
        problems += [f"let in: {what} {name}" for name in sorted(stored - acked - pending)]
    return problems


def _result_problems(plan: str, deployment: str, statuses: dict[str, str],
                     devices: list[DeviceLoad]) -> list[str]:
    """A started stage's rows against the devices' results: an acknowledged result must be
    there, a stored one must have been sent, and be the one sent."""
    problems = []
    for load in devices:
        name = load.device.name
        acked, pending = load.results.snapshot()
        status = statuses.get(name)
        want = "DEPLOYED" if expected_status(name, deployment) == "SUCCESS" else "FAILED"
        if deployment in acked and status != want:
            problems.append(f"lost: {name}'s result {want} in {plan} is {status}")
        if status in ("DEPLOYED", "FAILED"):
            if deployment not in acked | pending:
                problems.append(f"let in: {name} {status} in {plan}, never sent")
            elif status != want:
                problems.append(f"torn: {name} {status} in {plan}, sent {want}")
    return problems


def kill(server: Server) -> None:
    """SIGKILL the server process and reap it."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=20)
    server.admin.close()


def test_kill_9_under_heartbeat_load_on_postgresql_loses_and_tears_nothing(
        tmp_path: Path, onnx_model: Path, long_run: bool) -> None:
    kills = LONG if long_run else SHORT
    rng = random.Random(20261203)
    port, data = free_port(), tmp_path / "server"
    with fresh_database("postgresql", tmp_path) as url:
        def start() -> Server:
            return start_server(data, port, tmp_path / "server.log", database_url=url,
                                env={"EDGEFLEET_SERVER_HISTORY_SAMPLE_SECONDS": "1"})
        server = start()
        stop = threading.Event()
        clients = httpx.Client(limits=httpx.Limits(max_connections=64))
        try:
            server.admin.create_fleet(FLEET, "s3://captures/wind")
            server.admin.create_fleet(SPARE, "s3://captures/spare")
            job = server.admin.create_packaging_job("pkg", "relu", "1.0", onnx_model)
            assert job["status"] == "COMPLETED", job
            devices = [DeviceLoad(RemoteDevice(server.url, server.admin.register_device(
                {"name": f"dev-{i:02d}", "fleet": FLEET})["agent_config"], clients), stop)
                for i in range(DEVICES)]
            token = (data / "admin-token").read_text().strip()
            operator = OperatorLoad(server.url, token, [d.device.name for d in devices], stop)
            loads: list[DeviceLoad | OperatorLoad] = [*devices, operator]
            for load in loads:
                load.start()
            problems: list[str] = []
            down: list[float] = []
            for trial in range(kills):
                time.sleep(rng.uniform(0.4, 3.0))
                kill(server)
                problems += [f"kill {trial + 1}: {p}" for p in check_database(
                    url, devices, operator)]
                began = time.monotonic()
                server = start()
                down.append(time.monotonic() - began)
                assert not [load.failure for load in loads if load.failure], [
                    load.failure for load in loads]
            time.sleep(2.0)  # the load runs on a server that is up, then every client finishes
            stop.set()
            for load in loads:
                load.join(timeout=GIVE_UP)
                assert not load.is_alive() and load.failure is None, (load.name, load.failure)
            stop_server(server)
            problems += [f"at the end: {p}" for p in check_database(url, devices, operator)]
            pending = [(load.name, o.pending) for load in devices
                       for o in (load.heartbeats, load.results) if o.pending]
            assert not pending, f"clients never answered: {pending}"
        finally:
            stop.set()
            clients.close()
            if server.process.poll() is None:
                stop_server(server)
        twice = read_heartbeat_rows(url).samples_twice
        heartbeats = sum(len(d.heartbeats.acked) for d in devices)
        results = sum(len(d.results.acked) for d in devices)
        errors: dict[str, int] = {}
        for outcome in [o for d in devices for o in (d.heartbeats, d.results)] + [
                operator.plans, operator.starts, operator.registrations]:
            for reason, count in outcome.errors.items():
                errors[reason] = errors.get(reason, 0) + count
        print(f"\n{kills} kills; acknowledged: {heartbeats} heartbeats, {results} deployment "
              f"results, {len(operator.plans.acked)} plans, {len(operator.starts.acked)} stage "
              f"starts, {len(operator.registrations.acked)} registrations; errors retried: "
              f"{errors}; history samples stored twice (a retry of a stored heartbeat): "
              f"{twice}; restart took {min(down):.2f}-{max(down):.2f} s (median "
              f"{statistics.median(down):.2f}); problems: {len(problems)}")
        assert problems == [], "\n".join(problems[:50])
