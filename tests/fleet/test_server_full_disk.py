"""A full disk under a real ``edgefleet server``'s SQLite database (issue 14, "Faults").

The server's data folder (database, WAL, object store) is on a small tmpfs, which a filler
file fills to the last byte while devices send heartbeats and an operator creates fleets,
registers devices and packages models (the management API) and creates fleets with boto3's
protocol (the sagemaker API). Every request is answered, within its timeout, with
success or a clear error (a 5xx naming the database or the disk, in the API's own error shape),
never a hang; the process stays up and keeps serving reads. Nothing is lost or let in: a
heartbeat or a write that was acknowledged is stored, one that was refused is not. Once the
filler is deleted every kind of write succeeds again, and after a clean stop the database
passes ``PRAGMA integrity_check``. Needs root (the tmpfs). ``pytest --long`` runs 10 trials,
each leaving another amount of space free when the filler is written, instead of 2.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet.fleet_support import OperatorCaller, RemoteDevice
from support.disks import fill, small_filesystem
from support.fleet_rows import read_heartbeat_rows, unexpected
from support.fleet_server import Server, free_port, start_server, stop_server

from edgefleet.fleet.sagemaker_api.protocol import CONTENT_TYPE

pytestmark = pytest.mark.slow

DEVICES = 8
FLEET = "wind"
#: Bytes the filler leaves free, one trial each: the database reaches the end of the disk
#: while it writes (none left: the first write fails).
HEADROOMS_SHORT = [0, 160 << 10]
HEADROOMS_LONG = [0, 4 << 10, 16 << 10, 48 << 10, 96 << 10, 160 << 10, 320 << 10, 640 << 10,
                  1 << 20, 2 << 20]
#: Rounds of requests (each: a heartbeat per device and three writes) once every kind of
#: write has been refused, and at most before that.
FULL_ROUNDS, MAX_ROUNDS = 5, 200


@dataclass
class Tally:
    """What the clients saw: acknowledged and refused requests, by kind."""

    acked: dict[str, list[str]] = field(default_factory=dict)
    refused: dict[str, list[str]] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)

    def record(self, kind: str, name: str, answer: httpx.Response) -> bool:
        """Count ``answer``; True when it succeeded. A refusal must be a 5xx whose JSON body
        says what failed (the device API's ``__type``/``message``, the management API's
        ``error``/``message``)."""
        self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
        if answer.status_code < 300:
            self.acked.setdefault(kind, []).append(name)
            return True
        assert answer.status_code in (500, 503, 507), (kind, answer.status_code, answer.text)
        body = answer.json()
        message = body.get("message", "")
        assert "database" in message or "disk" in message or "space" in message, (kind, body)
        self.refused.setdefault(kind, []).append(name)
        return False


def heartbeat_round(devices: list[RemoteDevice], seqs: dict[str, int],
                    stored: dict[str, int], tally: Tally) -> None:
    """One heartbeat per device, numbered one past its last; ``stored`` keeps the last
    acknowledged number of each device."""
    for device in devices:
        seqs[device.name] += 1
        answer = device.heartbeat(seqs[device.name])
        if tally.record("heartbeat", f"{device.name}#{seqs[device.name]}", answer):
            stored[device.name] = seqs[device.name]


def admin_headers(server: Server) -> dict[str, str]:
    """The management API's Authorization header, with the server's admin token."""
    return {"Authorization": f"Bearer {(server.data_dir / 'admin-token').read_text().strip()}"}


def admin_writes(server: Server, http: httpx.Client, tag: str, model: Path,
                 tally: Tally) -> None:
    """A fleet, a device and a packaging job named after ``tag`` (management API), and a
    fleet through the sagemaker API."""
    headers = admin_headers(server)
    operator = OperatorCaller(http, server.data_dir / "operator-credentials", server.url)
    tally.record("sagemaker", f"s-{tag}", operator.post(
        "SageMaker.CreateDeviceFleet", CONTENT_TYPE, json.dumps({
            "DeviceFleetName": f"s-{tag}",
            "OutputConfig": {"S3OutputLocation": f"s3://captures/{tag}"}}).encode()))
    tally.record("fleet", f"f-{tag}", http.post("/api/v1/fleets", headers=headers, json={
        "name": f"f-{tag}", "output_location": f"s3://captures/{tag}"}))
    tally.record("device", f"d-{tag}", http.post("/api/v1/devices", headers=headers, json={
        "name": f"d-{tag}", "fleet": FLEET}))
    with model.open("rb") as upload:
        tally.record("package", f"p-{tag}", http.post(
            "/api/v1/packaging-jobs", headers=headers,
            data={"name": f"p-{tag}", "model_name": "relu", "model_version": tag},
            files={"model": ("relu.onnx", upload, "application/octet-stream")}))


def stored_names(http: httpx.Client, server: Server, path: str,
                 key: Callable[[Any], list[str]]) -> set[str]:
    """Names a management list route answers with."""
    answer = http.get(path, headers=admin_headers(server))
    assert answer.status_code == 200, answer.text
    return set(key(answer.json()))


@dataclass
class Trial:
    """One trial: the headroom left, rounds run while the disk filled, what clients saw."""

    headroom: int
    rounds: int
    full: Tally
    after: Tally


def run_trial(folder: Path, headroom: int, model: Path) -> Trial:
    """A server on a 6 MiB tmpfs filled up to ``headroom`` bytes, under heartbeats and admin
    writes until every kind of write has been refused (assertions on everything the module
    docstring promises)."""
    folder.mkdir()
    with small_filesystem(folder / "small", "6m") as small:
        server = start_server(small / "server", free_port(), folder / "server.log", env={
            # every heartbeat a sample of the history: the database grows with each round
            "EDGEFLEET_SERVER_HISTORY_SAMPLE_SECONDS": "1",
            "EDGEFLEET_SERVER_HEARTBEAT_BATCH_SECONDS": "0"})
        database = small / "server" / "edgefleet.db"
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                server.admin.create_fleet(FLEET, "s3://captures/wind")
                devices = [RemoteDevice(server.url, server.admin.register_device(
                    {"name": f"dev-{i}", "fleet": FLEET})["agent_config"], http)
                    for i in range(DEVICES)]
                seqs = {d.name: 0 for d in devices}
                stored: dict[str, int] = {}
                before = Tally()
                heartbeat_round(devices, seqs, stored, before)
                admin_writes(server, http, "before", model, before)
                assert not before.refused, before

                filler = small / "filler"
                os.truncate(filler, fill(filler) - headroom)
                full, rounds, after_full = Tally(), 0, 0
                while after_full < FULL_ROUNDS and rounds < MAX_ROUNDS:
                    heartbeat_round(devices, seqs, stored, full)
                    admin_writes(server, http, f"full{rounds}", model, full)
                    rounds += 1
                    after_full += set(full.refused) >= {"heartbeat", "fleet", "device",
                                                        "package", "sagemaker"}
                assert server.process.poll() is None, "the server exited on a full disk"
                assert after_full, f"the disk never filled: {full}"
                # Reads go on: health, lists, a device's latest heartbeat.
                assert http.get("/healthz").status_code == 200
                fleets = stored_names(http, server, "/api/v1/fleets",
                                      lambda body: [f["name"] for f in body])
                listed = stored_names(http, server, "/api/v1/devices?limit=1000",
                                      lambda body: [d["name"] for d in body["devices"]])
                jobs = stored_names(http, server, "/api/v1/packaging-jobs",
                                    lambda body: [j["name"] for j in body if
                                                  j["status"] == "COMPLETED"])
                # Nothing lost, nothing let in: acknowledged writes are there, refused not.
                for kind, names in (("fleet", fleets), ("sagemaker", fleets),
                                    ("device", listed), ("package", jobs)):
                    acked = {n for t in (before, full) for n in t.acked.get(kind, [])}
                    refused = set(full.refused.get(kind, []))
                    assert acked <= names and not refused & names, (kind, acked, refused, names)
                for device in devices:
                    latest = server.admin.describe_device(device.name)
                    assert latest["agent_version"] == f"seq-{stored[device.name]}", (
                        device.name, latest["agent_version"], stored[device.name])

                # No package of a refused job stays in the object store.
                packaged = {p.parent.name for p in (small / "server" / "objects" / "packages")
                            .glob("*/*") if p.is_file()}
                assert packaged <= jobs, (packaged - jobs, jobs)

                filler.unlink()  # space is back: every kind of write succeeds at once
                after = Tally()
                heartbeat_round(devices, seqs, stored, after)
                admin_writes(server, http, "after", model, after)
                assert not after.refused, after
        finally:
            stop_server(server)
        log = server.log.read_text()
        assert "Finished server process" in log and "Traceback" not in log, log[-6000:]
        with sqlite3.connect(database) as check:
            assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = read_heartbeat_rows(f"sqlite:///{database}")
    acked = {d.name: {int(n.rsplit("#", 1)[1]) for t in (before, full, after)
                      for n in t.acked.get("heartbeat", []) if n.startswith(f"{d.name}#")}
             for d in devices}
    lost, let_in = unexpected(rows, acked)
    assert (rows.problems, lost, let_in) == ([], [], []), (rows.problems, lost, let_in)
    assert all(rows.device[d.name] == seqs[d.name] for d in devices), rows.device
    return Trial(headroom, rounds, full, after)


def test_a_full_disk_under_the_database_refuses_clearly_loses_nothing_and_recovers(
        tmp_path: Path, onnx_model: Path, long_run: bool) -> None:
    trials = [run_trial(tmp_path / f"trial-{i}", headroom, onnx_model)
              for i, headroom in enumerate(HEADROOMS_LONG if long_run else HEADROOMS_SHORT)]
    totals: dict[str, int] = {}
    for trial in trials:
        for outcome, tally in (("acknowledged", trial.full.acked), ("refused", trial.full.refused)):
            for kind, names in tally.items():
                key = f"{'heartbeats' if kind == 'heartbeat' else 'writes'} {outcome}"
                totals[key] = totals.get(key, 0) + len(names)
    print(f"\n{len(trials)} trials; while the disk filled: {totals}")
    for trial in trials:
        print(f"  headroom {trial.headroom >> 10} KiB, {trial.rounds} rounds: acknowledged "
              f"{ {k: len(v) for k, v in trial.full.acked.items()} }, refused "
              f"{ {k: len(v) for k, v in trial.full.refused.items()} }, statuses "
              f"{trial.full.statuses}; after: {trial.after.statuses}")
