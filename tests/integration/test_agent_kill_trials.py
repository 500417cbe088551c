"""kill -9 of the agent at random moments during captures and loads, many trials in a row.

Each trial starts the agent on the same data folder, loads a model, runs two capture clients
(durable mode: ``sagemaker_edge_db_enable``) and a client loading and unloading a second model,
and kills the agent with SIGKILL after a random 0.1-1.2 s. After the last trial a final agent
drains the spool. Then every acknowledged capture must be in the bucket exactly once, nothing
may be there that no client sent, the spool must pass ``PRAGMA integrity_check``, and no
extracted package may be left behind. ``pytest --long`` runs 60 trials instead of 10
(docs/reliability.md).
"""

from __future__ import annotations

import random
import signal
import sqlite3
import statistics
import threading
import time
from pathlib import Path

import grpc
import pytest
from support.agent_process import AgentProcess, start_agent
from support.captures import capture_config, capture_request
from support.packages import Packages
from support.s3server import S3Server

from edgefleet.agent.capture.service import SPOOL_FILE
from edgefleet.proto import agent_pb2 as pb

pytestmark = pytest.mark.slow

SHORT, LONG = 10, 60


def _trial(agent: AgentProcess, packages: Packages, number: int, kill_after: float,
           acknowledged: set[str], attempted: set[str], lock: threading.Lock) -> None:
    agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="affine"),
                         timeout=30)
    stop = threading.Event()

    def capture(client: int) -> None:
        for i in range(1_000_000):
            capture_id = f"t{number}-c{client}-{i}"
            with lock:
                attempted.add(capture_id)
            try:
                agent.stub.CaptureData(capture_request(capture_id, rows=1 + 200 * client),
                                       timeout=10)
            except grpc.RpcError:
                return  # killed
            with lock:
                acknowledged.add(capture_id)

    def reload() -> None:
        while not stop.is_set():
            try:
                agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.mixed), name="mixed"),
                                     timeout=10)
                agent.stub.UnLoadModel(pb.UnLoadModelRequest(name="mixed"), timeout=10)
            except grpc.RpcError:
                return

    threads = [threading.Thread(target=capture, args=(c,)) for c in range(2)]
    threads.append(threading.Thread(target=reload))
    for thread in threads:
        thread.start()
    time.sleep(kill_after)
    agent.process.send_signal(signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join(30)
    agent.stop()


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
        packages: Packages, tmp_path: Path, long_run: bool) -> None:
    trials = LONG if long_run else SHORT
    chance = random.Random(20261203)
    s3 = S3Server(tmp_path / "seaweedfs")
    s3.start()
    try:
        s3.client().create_bucket(Bucket="captures")
        config = capture_config(packages, tmp_path,
                                sagemaker_edge_core_capture_data_push_period_seconds=1.0,
                                **s3.agent_keys("captures"))
        acknowledged: set[str] = set()
        attempted: set[str] = set()
        lock = threading.Lock()
        starts = []
        for number in range(trials):
            begun = time.monotonic()
            agent = start_agent(config, tmp_path / "agent", force=True)
            starts.append(time.monotonic() - begun)
            _trial(agent, packages, number, chance.uniform(0.1, 1.2), acknowledged, attempted,
                   lock)

        final = start_agent(config, tmp_path / "agent", force=True)
        deadline = time.monotonic() + 120
        while not acknowledged <= {r.request.capture_id for r in s3.records("captures")}:
            assert time.monotonic() < deadline, final.log()[-4000:]
            time.sleep(0.5)
        time.sleep(2.0)  # one more push period: a duplicate would show up now
        stored = [r.request.capture_id for r in s3.records("captures")]
        print(f"\n{trials} kills: {len(acknowledged)} captures acknowledged, {len(stored)} "
              f"stored, {len(stored) - len(set(stored))} duplicates, "
              f"{len(acknowledged - set(stored))} lost; start to serving: median "
              f"{statistics.median(starts):.2f} s, max {max(starts):.2f} s")
        assert len(acknowledged) > 10 * trials, final.log()[-4000:]
        assert len(stored) == len(set(stored)), "a capture was stored twice"
        assert acknowledged <= set(stored) <= attempted
        assert final.stop() == 0, final.log()[-4000:]

        data = tmp_path / "data"
        with sqlite3.connect(data / SPOOL_FILE) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # The final run removed what the killed ones left extracted (DeploymentExecutor.restore)
        # and removed its own at its clean stop.
        assert list((data / "packages").glob("*")) == []
    finally:
        s3.stop()
