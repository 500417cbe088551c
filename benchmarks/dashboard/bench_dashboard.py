"""Dashboard benchmark: page load times over a fleet of 10,000 simulated devices.

Prints numbers; not a test. What it does:

1. bootstraps a fresh SQLite database exactly like ``edgefleet server`` (migrations, keys,
   admin token) in a temporary folder, or a fresh PostgreSQL database with ``--db postgresql``;
2. bulk-inserts ``--devices`` devices into one fleet: 90% online (heartbeat in the last
   minute), 8% offline (an hour old), 2% never connected; two models each (the online ones
   half on version 1.0, half on 2.0); ``--samples`` heartbeat-history samples per device, a
   minute apart, with agent and model metrics as the agent sends them; a packaging job and a
   deployment plan whose 100% stage selected every device (90% DEPLOYED, 5% FAILED with a
   rollback message, 5% INPROGRESS);
3. captured data: ``--captures`` index rows per device (one batch file a day, an anomaly
   event in one record of ten) inserted in bulk, and, for the device whose pages are timed,
   ``--device-captures`` real records (hourly, [24, 24] float32 windows) written by the agent's
   own capture pipeline into the server's capture folder and indexed by the server's capture
   index (timed: records per second), its model packaged through the REST API with a drift
   baseline so that its drift series is real;
4. logs in through the login form and loads each page ``--loads`` times through the app
   (FastAPI's TestClient: routing, session check, queries, templates; no network), and prints
   p50 and p95 in milliseconds. Chart SVGs are timed cold (cache emptied before each load) and
   cached.

Usage::

    .venv/bin/python benchmarks/dashboard/bench_dashboard.py --devices 10000 --samples 60
    .venv/bin/python benchmarks/dashboard/bench_dashboard.py --captures 100 --device-captures 720

Needs the ``demo`` extras (onnx builds the benchmark's model).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import psycopg
from fastapi.testclient import TestClient
from onnx import TensorProto, helper
from sqlalchemy import insert, text

from edgefleet.agent.capture import CaptureService
from edgefleet.agent.config import AgentConfig
from edgefleet.agent.types import (
    AuxiliaryEncoding,
    CapturedAuxiliary,
    CapturedTensor,
    CaptureRequest,
)
from edgefleet.fleet.app import create_app
from edgefleet.fleet.bootstrap import prepare
from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.dashboard import routes
from edgefleet.fleet.db.engine import make_engine
from edgefleet.fleet.db.models import (
    CaptureDevice,
    CaptureEntry,
    CaptureFile,
    CaptureHour,
    DeploymentPlan,
    Device,
    DeviceModel,
    Fleet,
    HeartbeatSample,
    PackagingJob,
    PlanModel,
    Stage,
    StageDevice,
)
from edgefleet.fleet.settings import ServerSettings

PG_ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"
FLEET = "bench"
#: The model of the timed device's real captures, packaged with a drift baseline.
CAPTURED_MODEL, CAPTURED_VERSION = "windows", "1.0"
#: 2015-06-01 00:00 UTC: replayed data keeps its own dates.
JUNE_2015 = 1_433_116_800.0


def _fill_captures(url: str, devices: int, per_device: int) -> None:
    """Index rows as the capture index writes them: one batch file per device and day,
    ``per_device`` records per device, one in ten with an anomaly event."""
    engine = make_engine(url)
    now = time.time()
    with engine.begin() as conn:
        files: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        hours: dict[tuple[str, int], list[int]] = {}
        totals: list[dict[str, Any]] = []
        file_id = 0
        for i in range(devices):
            name = f"dev-{i:05d}"
            for k in range(per_device):
                at = JUNE_2015 + k * 3600.0
                if k % 24 == 0:
                    file_id += 1
                    files.append({"id": file_id, "key": f"{FLEET}/anomaly/{name}/{k}.jsonl",
                                  "size_bytes": 24 * 4000, "records": 24, "errors": 0,
                                  "error": None, "indexed_at": now})
                event = "anomaly" if k % 10 == 3 else None
                entries.append({"file_id": file_id, "line": k % 24 + 1, "offset": 0,
                                "length": 4000, "fleet": FLEET, "device": name,
                                "model_name": "anomaly", "model_version": "1.0",
                                "capture_id": f"{name}-{k}", "inference_time": at,
                                "hour": int(at // 3600), "sampled": False, "event": event})
                count = hours.setdefault((name, int(at // 3600)), [0, 0])
                count[0] += 1
                count[1] += event is not None
            totals.append({"device": name, "fleet": FLEET, "records": per_device,
                           "events": sum(1 for k in range(per_device) if k % 10 == 3),
                           "first_time": JUNE_2015,
                           "last_time": JUNE_2015 + (per_device - 1) * 3600.0,
                           "updated_at": now})
            if len(entries) >= 50_000:
                conn.execute(insert(CaptureFile), files)
                conn.execute(insert(CaptureEntry), entries)
                files, entries = [], []
        if entries:
            conn.execute(insert(CaptureFile), files)
            conn.execute(insert(CaptureEntry), entries)
        conn.execute(insert(CaptureHour), [
            {"device": device, "model_name": "anomaly", "model_version": "1.0", "hour": hour,
             "fleet": FLEET, "records": n, "events": e, "drift_rows": 0, "drift_counts": None}
            for (device, hour), (n, e) in hours.items()])
        conn.execute(insert(CaptureDevice), totals)
        if engine.dialect.name == "postgresql":  # ids were given: move the sequence past them
            conn.execute(text("SELECT setval(pg_get_serial_sequence('capture_files', 'id'), "
                              "(SELECT max(id) FROM capture_files))"))
    engine.dispose()


def _model(path: Path) -> Path:
    """An ONNX model of the wind-farm model's shape: input ``windows`` float32 [N, 24], output
    ``score`` float32 [N] (the row's mean)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["windows", "axes"], ["score"], keepdims=0)], "bench",
        [helper.make_tensor_value_info("windows", TensorProto.FLOAT, ["N", 24])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def _real_captures(capture_dir: Path, data_dir: Path, device: str, count: int) -> None:
    """``count`` hourly records of ``device`` through the agent's capture pipeline (Disk),
    the input drifting upwards over time, one in ten with an anomaly event."""
    rng = np.random.default_rng(3)
    service = CaptureService(AgentConfig.from_mapping({
        "sagemaker_edge_core_device_name": device,
        "sagemaker_edge_core_device_fleet_name": FLEET,
        "sagemaker_edge_core_capture_data_disk_path": str(capture_dir),
        "sagemaker_edge_local_data_root_path": str(data_dir),
        "sagemaker_edge_core_capture_data_push_period_seconds": 0.05,
        "sagemaker_edge_core_capture_data_batch_size": 24,
        "sagemaker_edge_core_capture_data_buffer_size": 2000}))
    service.start()
    for k in range(count):
        x = (rng.normal(size=(24, 24)) + k / count).astype(np.float32)
        aux = () if k % 10 != 3 else (CapturedAuxiliary(
            "event", AuxiliaryEncoding.JSON, b'{"event": "anomaly"}'),)
        service.submit(CaptureRequest(
            capture_id=f"{device}-{k}", model_alias=CAPTURED_MODEL,
            model_version=CAPTURED_VERSION, inference_time_ns=int(JUNE_2015 + k * 3600) * 10**9,
            input_tensors=(CapturedTensor("windows", 5, (24, 24), x.tobytes()),),
            output_tensors=(CapturedTensor("score", 5, (24,), x.mean(axis=1).tobytes()),),
            auxiliary_inputs=aux))
    service.close()


def _fill(url: str, devices: int, samples: int) -> None:
    engine = make_engine(url)
    now = time.time()
    rng = random.Random(7)
    with engine.begin() as conn:
        fleet_id = conn.execute(insert(Fleet).returning(Fleet.id), {
            "name": FLEET, "description": "", "output_location": "s3://b/p",
            "created_at": now}).scalar_one()
        rows: list[dict[str, Any]] = []
        models: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        seen: list[tuple[int, float, str]] = []
        for i in range(devices):
            kind = i % 50
            latest = None if kind == 0 else now - 3600 if kind <= 4 else now - rng.uniform(0, 60)
            rows.append({"id": i + 1, "name": f"dev-{i:05d}", "fleet_id": fleet_id,
                         "description": "", "access_key_id": f"EFDV{i:016d}",
                         "secret_enc": b"x" * 60, "registered_at": now - 86400,
                         "last_heartbeat_at": latest,
                         "agent_version": None if latest is None else "1.20261203",
                         "agent_metrics": None if latest is None else [
                             {"Dimension": "agent", "MetricName": "cpu-percent", "Value": 4.0},
                             {"Dimension": "agent", "MetricName": "rss-bytes", "Value": 9e7}]})
            if latest is None:
                continue
            version = "1.0" if i % 2 else "2.0"
            for model in ("anomaly", "power-curve"):
                models.append({"device_id": i + 1, "model_name": model,
                               "model_version": version, "latest_inference": latest,
                               "latest_sample_time": latest, "metrics": []})
            seen.append((i + 1, latest, version))
            status = "FAILED" if kind in (5, 6) else "INPROGRESS" if kind in (7, 8) else "DEPLOYED"
            results.append({"device_id": i + 1, "status": status, "updated_at": latest,
                            "status_message": "anomaly: checksum mismatch; rolled back, the "
                            "previous versions serve" if status == "FAILED" else ""})
        conn.execute(insert(Device), rows)
        conn.execute(insert(DeviceModel), models)
        for device_id, latest, version in seen:
            for k in range(samples):
                history.append({
                    "device_id": device_id, "at": latest - 60 * k, "interval_seconds": 60.0,
                    "agent": {"cpu-percent": rng.uniform(2, 9), "rss-bytes": 9e7 + k * 1e4,
                              "capture-spool-bytes": 1e5 * (k % 10), "restart-count": 0},
                    "models": {m: {"version": version, "inference-count": 600.0,
                                   "error-count": float(k % 7 == 0), "latency-p50-ms": 0.4,
                                   "latency-p99-ms": 2.0 + rng.random()}
                               for m in ("anomaly", "power-curve")}})
            if len(history) >= 50_000:
                conn.execute(insert(HeartbeatSample), history)
                history = []
        if history:
            conn.execute(insert(HeartbeatSample), history)
        job = conn.execute(insert(PackagingJob).returning(PackagingJob.id), {
            "name": "anomaly-v2", "model_name": "anomaly", "model_version": "2.0",
            "status": "COMPLETED", "status_message": "", "artifact_key": "k",
            "checksum_sha1": "0" * 40, "size_bytes": 1, "created_at": now,
            "completed_at": now}).scalar_one()
        plan = conn.execute(insert(DeploymentPlan).returning(DeploymentPlan.id), {
            "name": "upgrade", "fleet_id": fleet_id, "created_at": now}).scalar_one()
        conn.execute(insert(PlanModel), {"plan_id": plan, "model_handle": "anomaly",
                                         "packaging_job_id": job})
        stage = conn.execute(insert(Stage).returning(Stage.id), {
            "plan_id": plan, "name": "all", "position": 0, "deployment_name": "upgrade-all-1",
            "selection_type": "PERCENTAGE", "percentage": 100,
            "failure_handling_policy": "ROLLBACK_ON_FAILURE", "status": "INPROGRESS",
            "started_at": now - 600}).scalar_one()
        conn.execute(insert(StageDevice), [{**r, "stage_id": stage} for r in results])
    engine.dispose()


def _times(load: Callable[[], Any], loads: int, before: Callable[[], None] | None = None
           ) -> tuple[float, float]:
    took = []
    if before is None:
        load()  # warm-up: the first load fills caches and connection pools
    for _ in range(loads):
        if before is not None:
            before()
        start = time.perf_counter()
        answer = load()
        took.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, answer.text[:500]
    took.sort()
    return statistics.median(took), took[min(len(took) - 1, round(0.95 * (len(took) - 1)))]


def run(db: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-dashboard-") as tmp:
        pg_name = None
        if db == "postgresql":
            pg_name = f"edgefleet_bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{pg_name}"')
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_name}"
        else:
            url = f"sqlite:///{Path(tmp) / 'edgefleet.db'}"
        try:
            capture_dir = Path(tmp) / "capture"
            capture_dir.mkdir()
            settings = ServerSettings(data_dir=Path(tmp) / "server", database_url=url,
                                      capture_location=str(capture_dir),
                                      capture_scan_seconds=3600)
            engine = make_engine(url)
            prepare(engine, ServerKey.load_or_create(settings.resolved_server_key_file()),
                    settings.resolved_admin_token_file())
            engine.dispose()
            start = time.perf_counter()
            _fill(url, args.devices, args.samples)
            print(f"{db}: filled {args.devices:,} devices, {args.samples} samples each, "
                  f"in {time.perf_counter() - start:.1f} s")
            start = time.perf_counter()
            _fill_captures(url, args.devices, args.captures)
            print(f"{db}: {args.devices * args.captures:,} capture index rows in "
                  f"{time.perf_counter() - start:.1f} s")
            token = settings.resolved_admin_token_file().read_text().strip()
            device = f"dev-{args.devices // 2 + 1:05d}"
            with TestClient(create_app(settings)) as client:
                index = client.app.state.context.captures  # type: ignore[attr-defined]
                index.stop()  # indexed below, all at once, to time it
                headers = {"Authorization": f"Bearer {token}"}
                baseline = Path(tmp) / "training.npy"
                np.save(baseline, np.random.default_rng(1).normal(size=(5000, 24)).astype(
                    np.float32))
                model = _model(Path(tmp) / "windows.onnx")
                with model.open("rb") as m, baseline.open("rb") as b:
                    job = client.post("/api/v1/packaging-jobs", headers=headers, data={
                        "name": "windows-v1", "model_name": CAPTURED_MODEL,
                        "model_version": CAPTURED_VERSION}, files={
                        "model": ("windows.onnx", m), "baseline": ("training.npy", b)})
                assert job.json()["status"] == "COMPLETED", job.text
                _real_captures(capture_dir, Path(tmp) / "agent-data", device,
                               args.device_captures)
                start = time.perf_counter()
                scanned = index.scan_all()
                took = time.perf_counter() - start
                print(f"{db}: indexed {scanned.records:,} real records ({scanned.files} batch "
                      f"files, drift counts included) in {took:.2f} s: "
                      f"{scanned.records / took:,.0f} records/s")
                newest = client.get(f"/api/v1/devices/{device}/captures?limit=1",
                                     headers=headers).json()["page"]["captures"][0]["id"]
                client.post("/ui/login", data={"token": token})
                assert re.search("Log out", client.get("/").text)
                pages: list[tuple[str, str, Callable[[], None] | None]] = [
                    ("overview, page 1 (200 tiles)", "/", None),
                    ("overview, last page", f"/?page={args.devices // 200}", None),
                    ("overview, offline only", "/?state=offline", None),
                    ("overview fragment (live poll)", "/?fragment=1", None),
                    ("device page", f"/ui/devices/{device}", None),
                    ("device agent chart, 6 h, cold", f"/ui/devices/{device}/agent.svg",
                     routes._charts.clear),
                    ("device model chart, 6 h, cold",
                     f"/ui/devices/{device}/models/anomaly.svg", routes._charts.clear),
                    ("device agent chart, cached", f"/ui/devices/{device}/agent.svg", None),
                    ("device page, anomalies only", f"/ui/devices/{device}?event=anomaly",
                     None),
                    ("captured records chart, cold", f"/ui/devices/{device}/captures.svg",
                     lambda: (routes._charts.clear(), routes._drift.clear())),
                    ("drift chart, cold", f"/ui/devices/{device}/drift.svg",
                     lambda: (routes._charts.clear(), routes._drift.clear())),
                    ("capture record page ([24, 24] window)", f"/ui/captures/{newest}", None),
                    ("capture download, .npz", f"/ui/captures/{newest}/download?format=npz",
                     None),
                    ("deployments page", "/ui/deployments", None),
                    ("stage page (10,000 devices, 500 shown)", "/ui/deployments/upgrade/all",
                     None),
                ]
                print(f"{'page':<42} {'p50 ms':>8} {'p95 ms':>8}   ({args.loads} loads)")
                for label, path, before in pages:
                    p50, p95 = _times(lambda p=path: client.get(p), args.loads, before)
                    print(f"{label:<42} {p50:8.1f} {p95:8.1f}")
        finally:
            if pg_name is not None:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=60,
                        help="heartbeat-history samples per online device, a minute apart")
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--captures", type=int, default=100,
                        help="capture index rows per device (inserted in bulk)")
    parser.add_argument("--device-captures", type=int, default=720,
                        help="real captured records of the timed device (hourly)")
    args = parser.parse_args()
    for db in args.db or ["sqlite"]:
        run(db, args)


if __name__ == "__main__":
    main()
