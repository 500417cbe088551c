"""Control-plane benchmark: sustained SendHeartbeat rate and latency, and fleet-report time.

Prints numbers; not a test. What it does, per database (SQLite file, PostgreSQL):

1. creates a fresh database (PostgreSQL: a new database, dropped at the end), bootstraps it, and
   bulk-inserts N registered devices straight into the tables (real encrypted credentials);
2. starts ``edgefleet server`` (uvicorn, ``--workers``) as a subprocess on 127.0.0.1;
3. heartbeats: ``--devices`` simulated devices (asyncio, ``--concurrency`` keep-alive
   connections with one request in flight each) send SendHeartbeat with two models and agent
   metrics for ``--seconds``. Requests are signed with botocore's SigV4Auth ahead of the timed
   run (a signature stays valid for the server's 5-minute skew), so that the load generator's
   CPU, on the same two cores, goes into sending rather than signing;
4. fleet report: bulk-inserts devices with heartbeats and models up to 10,000 and 100,000
   and times ``GET /api/v1/fleets/<fleet>/report`` (median of 5).

Usage::

    .venv/bin/python benchmarks/fleet/bench_fleet.py --db sqlite --db postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import insert

from edgefleet.fleet.bootstrap import prepare
from edgefleet.fleet.crypto import ServerKey, new_access_key_id, new_secret
from edgefleet.fleet.db.engine import make_engine, make_sessionmaker
from edgefleet.fleet.db.models import Device, DeviceModel, Fleet

PG_ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"
FLEET = "bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _add_devices(url: str, key: ServerKey, start: int, count: int, *,
                 with_heartbeats: bool) -> list[tuple[str, str, str]]:
    """Insert devices ``dev-<start>`` .. ``dev-<start+count-1>``; returns (name, akid, secret)."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = time.time()
    made: list[tuple[str, str, str]] = []
    with sessions.begin() as session:
        fleet_id = session.query(Fleet.id).filter(Fleet.name == FLEET).scalar()
        if fleet_id is None:
            fleet = Fleet(name=FLEET, description="benchmark", output_location="s3://b/p",
                          created_at=now)
            session.add(fleet)
            session.flush()
            fleet_id = fleet.id
    rng = random.Random(start)
    for chunk in range(start, start + count, 5000):
        rows: list[dict[str, Any]] = []
        models: list[dict[str, Any]] = []
        for i in range(chunk, min(chunk + 5000, start + count)):
            akid, secret = new_access_key_id(), new_secret()
            made.append((f"dev-{i:06d}", akid, secret))
            beat = now - rng.uniform(0, 1200) if with_heartbeats else None
            rows.append({"name": f"dev-{i:06d}", "fleet_id": fleet_id, "description": "",
                         "access_key_id": akid, "secret_enc": key.encrypt(secret.encode(), akid),
                         "registered_at": now, "last_heartbeat_at": beat,
                         "agent_version": rng.choice(["1.0.0", "1.1.0"]) if beat else None,
                         "agent_metrics": []})
        with sessions.begin() as session:
            session.execute(insert(Device), rows)
            if with_heartbeats:
                ids = dict(session.query(Device.name, Device.id).filter(
                    Device.name.in_([r["name"] for r in rows])).all())
                for r in rows:
                    for m in ("anomaly", "forecast"):
                        models.append({"device_id": ids[r["name"]], "model_name": m,
                                       "model_version": rng.choice(["1", "2"]),
                                       "latest_inference": now - rng.uniform(0, 1200),
                                       "latest_sample_time": now - rng.uniform(0, 3600),
                                       "metrics": []})
                session.execute(insert(DeviceModel), models)
    engine.dispose()
    return made


def _start_server(data_dir: Path, url: str, workers: int, access_log: bool) -> tuple[Any, str]:
    port = _free_port()
    log = (data_dir / "server.log").open("wb")
    args = [sys.executable, "-m", "edgefleet.fleet", "server", "--port", str(port), "--data-dir",
            str(data_dir), "--database-url", url, "--workers", str(workers), "--log-level",
            "warning"]
    if not access_log:
        args.append("--no-access-log")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"server did not start; see {data_dir / 'server.log'}")


def _server_cpu(pid: int) -> float:
    """User + system CPU seconds of the server and its worker processes."""
    parent = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [parent, *parent.children(recursive=True)])


def _presign(base: str, devices: list[tuple[str, str, str]], per_device: int
             ) -> list[bytes]:
    """Complete HTTP/1.1 SendHeartbeat requests (headers and body), signed by botocore."""
    host = base.removeprefix("http://")
    signed = []
    now = time.time()
    for round_ in range(per_device):
        for name, akid, secret in devices:
            signer = SigV4Auth(Credentials(akid, secret), "sagemaker", "us-east-1")
            body = json.dumps({
                "DeviceName": name, "DeviceFleetName": FLEET, "AgentVersion": "1.2.0",
                "AgentMetrics": [{"Dimension": "agent", "MetricName": "cpu-percent",
                                  "Value": 3.0, "Timestamp": now + round_}],
                "Models": [{"ModelName": m, "ModelVersion": "3", "LatestInference": now,
                            "LatestSampleTime": now,
                            "ModelMetrics": [{"Dimension": "model", "MetricName": "latency-ms",
                                              "Value": 0.5, "Timestamp": now}]}
                           for m in ("anomaly", "forecast")]}).encode()
            request = AWSRequest(method="POST", url=f"{base}/SendHeartbeat", data=body,
                                 headers={"Content-Type": "application/json"})
            signer.add_auth(request)
            head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
            signed.append(f"POST /SendHeartbeat HTTP/1.1\r\nHost: {host}\r\n{head}"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return signed


async def _heartbeats(base: str, signed: list[bytes], concurrency: int,
                      seconds: float) -> tuple[int, list[float], int]:
    """``concurrency`` keep-alive connections, each sending one request at a time.

    A minimal HTTP/1.1 client on asyncio streams: the load generator shares the two cores with
    the server, so it must cost little CPU per request (httpx costs about 1 ms).
    """
    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def connection(worker: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        i = worker
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            writer.write(signed[i % len(signed)])
            i += concurrency
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
        writer.close()

    await asyncio.gather(*(connection(w) for w in range(concurrency)))
    return len(latencies), latencies, errors


def _report_time(base: str, token: str) -> float:
    times = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                      timeout=60) as client:
        for _ in range(5):
            t0 = time.perf_counter()
            answer = client.get(f"/api/v1/fleets/{FLEET}/report")
            times.append(time.perf_counter() - t0)
            answer.raise_for_status()
    return statistics.median(times)


def run(db: str, args: argparse.Namespace) -> None:
    """Run every measurement on one database kind and print the results."""
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        data_dir = Path(tmp)
        pg_name = None
        if db == "postgresql":
            pg_name = f"edgefleet_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{pg_name}"')
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_name}"
        else:
            url = f"sqlite:///{data_dir / 'edgefleet.db'}"
        key = ServerKey.load_or_create(data_dir / "server.key")
        engine = make_engine(url)
        prepare(engine, key, data_dir / "admin-token")
        engine.dispose()
        token = (data_dir / "admin-token").read_text().strip()
        devices = _add_devices(url, key, 0, args.devices, with_heartbeats=False)
        process, base = _start_server(data_dir, url, args.workers, args.access_log)
        try:
            per_device = max(2, int((args.seconds + 2) * 2500 / len(devices)) + 1)
            signed = _presign(base, devices, per_device)
            asyncio.run(_heartbeats(base, signed, args.concurrency, 2.0))  # warm-up
            cpu_before = _server_cpu(process.pid)
            count, latencies, errors = asyncio.run(
                _heartbeats(base, signed, args.concurrency, args.seconds))
            cpu_per_beat = (_server_cpu(process.pid) - cpu_before) / count * 1000
            latencies.sort()

            def p(q: float) -> float:
                return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
            print(f"[{db}] heartbeats: {count / args.seconds:.0f}/s over {args.seconds:.0f} s, "
                  f"{args.devices} devices, {args.concurrency} in flight, workers="
                  f"{args.workers}; latency p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, "
                  f"max {latencies[-1] * 1000:.1f} ms; errors {errors}; server CPU "
                  f"{cpu_per_beat:.2f} ms per heartbeat", flush=True)
            have = args.devices
            for target in args.report_sizes:
                _add_devices(url, key, have, target - have, with_heartbeats=True)
                have = target
                print(f"[{db}] fleet report over {target} devices: "
                      f"{_report_time(base, token) * 1000:.0f} ms (median of 5, HTTP end to end)",
                      flush=True)
        finally:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
            if pg_name is not None:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def main() -> None:
    """Parse options and run the benchmark on each requested database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--report-sizes", type=int, nargs="*", default=[10_000, 100_000])
    args = parser.parse_args()
    for db in args.db or ["sqlite", "postgresql"]:
        print(f"[{db}] load average before: {os.getloadavg()[0]:.2f} (other work on the "
              "machine shares its two cores)", flush=True)
        run(db, args)


if __name__ == "__main__":
    main()
