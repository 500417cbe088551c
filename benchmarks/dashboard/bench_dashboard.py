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
3. logs in through the login form and loads each page ``--loads`` times through the app
   (FastAPI's TestClient: routing, session check, queries, templates; no network), and prints
   p50 and p95 in milliseconds. Chart SVGs are timed cold (cache emptied before each load) and
   cached.

Usage::

    .venv/bin/python benchmarks/dashboard/bench_dashboard.py --devices 10000 --samples 60
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

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import insert

from edgefleet.fleet.app import create_app
from edgefleet.fleet.bootstrap import prepare
from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.dashboard import routes
from edgefleet.fleet.db.engine import make_engine
from edgefleet.fleet.db.models import (
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
            settings = ServerSettings(data_dir=Path(tmp) / "server", database_url=url)
            engine = make_engine(url)
            prepare(engine, ServerKey.load_or_create(settings.resolved_server_key_file()),
                    settings.resolved_admin_token_file())
            engine.dispose()
            start = time.perf_counter()
            _fill(url, args.devices, args.samples)
            print(f"{db}: filled {args.devices:,} devices, {args.samples} samples each, "
                  f"in {time.perf_counter() - start:.1f} s")
            token = settings.resolved_admin_token_file().read_text().strip()
            with TestClient(create_app(settings)) as client:
                client.post("/ui/login", data={"token": token})
                assert re.search("Log out", client.get("/").text)
                device = f"dev-{args.devices // 2 + 1:05d}"
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
    args = parser.parse_args()
    for db in args.db or ["sqlite"]:
        run(db, args)


if __name__ == "__main__":
    main()
