"""Capture through a real ``edgefleet-agent`` process: kill -9 mid-stream, a full spool, a full
disk under the spool."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from support.agent_process import AgentProcess, start_agent
from support.captures import capture_config, capture_request, tensor
from support.credentials import CredentialsEndpoint
from support.disks import small_filesystem
from support.models import affine_reference
from support.packages import Packages, base_config
from support.polling import wait_for
from support.s3server import S3Server

from edgefleet.proto import agent_pb2 as pb
from edgefleet.wire.capture import read_batch_file

pytestmark = pytest.mark.slow


def load_affine(agent: AgentProcess, packages: Packages) -> None:
    agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="affine"))


def test_kill_9_during_a_capture_stream_loses_and_duplicates_nothing(
        packages: Packages, tmp_path: Path) -> None:
    s3 = S3Server(tmp_path / "seaweedfs")
    s3.start()
    try:
        s3.client().create_bucket(Bucket="captures")
        # Long period and large batches: many acknowledged captures wait in the spool at the kill.
        config = capture_config(
            packages, tmp_path, sagemaker_edge_core_capture_data_buffer_size=64,
            sagemaker_edge_core_capture_data_batch_size=40,
            sagemaker_edge_core_capture_data_push_period_seconds=2.0,
            **s3.agent_keys("captures"))
        agent = start_agent(config, tmp_path / "agent")
        load_affine(agent, packages)
        acknowledged: set[str] = set()
        attempted: set[str] = set()
        lock = threading.Lock()

        def client(number: int) -> None:
            # Clients 2 and 3 send 180 KB captures, which the spool keeps in payload files.
            rows = 5000 if number >= 2 else 1
            for i in range(100_000):
                capture_id = f"client{number}-{i}"
                with lock:
                    attempted.add(capture_id)
                try:
                    agent.stub.CaptureData(capture_request(capture_id, rows), timeout=10)
                except grpc.RpcError:
                    return  # the agent is gone
                with lock:
                    acknowledged.add(capture_id)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(3.0)
        agent.process.send_signal(signal.SIGKILL)
        for thread in threads:
            thread.join(30)
        agent.stop()
        assert len(acknowledged) > 100, agent.log()
        before = {r.request.capture_id for r in s3.records("captures")}
        assert acknowledged - before, "the kill should leave acknowledged captures in the spool"

        restarted = start_agent(config, tmp_path / "agent", force=True)
        deadline = time.monotonic() + 60
        while not acknowledged <= {r.request.capture_id for r in s3.records("captures")}:
            assert time.monotonic() < deadline, restarted.log()
            time.sleep(0.5)
        time.sleep(2.5)  # one more push period: anything else would show up now
        stored = [r.request.capture_id for r in s3.records("captures")]
        assert len(stored) == len(set(stored)), "a capture was stored twice"
        assert set(stored) <= attempted
        status = restarted.stub.GetCaptureDataStatus(
            pb.GetCaptureDataStatusRequest(capture_id=sorted(acknowledged)[0]))
        assert status.status == pb.SUCCESS
        assert "from before the restart" in restarted.log()
        waiting = acknowledged - before
        assert any(c.startswith(("client2-", "client3-")) for c in waiting), sorted(waiting)
        assert restarted.stop() == 0, restarted.log()
        assert not any((tmp_path / "data" / "capture" / "spool-payloads").iterdir())
    finally:
        s3.stop()


def test_full_spool_refuses_captures_and_predict_keeps_serving(
        packages: Packages, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on: the store is unreachable
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    config = capture_config(
        packages, tmp_path, edgefleet_capture_spool_max_bytes=1 << 16,
        edgefleet_capture_sampling={"affine": 1.0},
        sagemaker_edge_provider_s3_bucket_name="captures", edgefleet_s3_endpoint_url=dead,
        edgefleet_s3_access_key_id="key", edgefleet_s3_secret_access_key="secret")
    agent = start_agent(config, tmp_path / "agent")
    try:
        load_affine(agent, packages)
        accepted = 0
        with pytest.raises(grpc.RpcError) as refused:
            for i in range(100):
                agent.stub.CaptureData(capture_request(f"big-{i}", rows=500))  # 18 KB
                accepted += 1
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "spool" in refused.value.details()
        assert accepted >= 2
        x = np.random.default_rng(1).standard_normal((8, 4)).astype(np.float32)
        for _ in range(200):  # every Predict is sampled into a full spool, and still served
            reply = agent.stub.Predict(pb.PredictRequest(name="affine", tensors=[tensor("x", x)]))
            y = np.frombuffer(reply.tensors[0].byte_data, np.float32).reshape(8, 4)
            np.testing.assert_allclose(y, affine_reference(x)[0])
        time.sleep(1.0)
        assert "wait in the spool" in agent.log()
    finally:
        assert agent.stop() == 0, agent.log()


def test_full_disk_under_the_spool_refuses_then_delivers_everything(
        packages: Packages, tmp_path: Path) -> None:
    blocker = tmp_path / "destination"
    blocker.write_text("a file where the capture folder should be: delivery fails for now")
    with small_filesystem(tmp_path / "small", "3m") as small:
        config = base_config(
            packages, sagemaker_edge_db_enable=True,
            sagemaker_edge_local_data_root_path=str(small / "data"),
            sagemaker_edge_core_capture_data_disk_path=str(blocker / "capture"),
            edgefleet_capture_spool_max_bytes=1 << 30)  # the disk fills before the budget
        agent = start_agent(config, tmp_path / "agent")
        try:
            load_affine(agent, packages)
            accepted: list[str] = []
            with pytest.raises(grpc.RpcError) as refused:
                for i in range(200):  # 96 KB each: payload files beside the spool
                    agent.stub.CaptureData(capture_request(f"big-{i}", rows=2000), timeout=10)
                    accepted.append(f"big-{i}")
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, agent.log()
            assert "disk full" in refused.value.details()
            assert len(accepted) >= 5
            x = np.ones((2, 4), np.float32)
            reply = agent.stub.Predict(pb.PredictRequest(name="affine", tensors=[tensor("x", x)]))
            np.testing.assert_allclose(
                np.frombuffer(reply.tensors[0].byte_data, np.float32).reshape(2, 4),
                affine_reference(x)[0])
            for capture_id in accepted:
                status = agent.stub.GetCaptureDataStatus(
                    pb.GetCaptureDataStatusRequest(capture_id=capture_id))
                assert status.status == pb.IN_PROGRESS

            blocker.unlink()  # the destination is back: everything accepted drains
            deadline = time.monotonic() + 90
            for capture_id in accepted:
                while agent.stub.GetCaptureDataStatus(pb.GetCaptureDataStatusRequest(
                        capture_id=capture_id)).status != pb.SUCCESS:
                    assert time.monotonic() < deadline, agent.log()
                    time.sleep(0.2)
            records = [record for path in sorted(blocker.rglob("*.jsonl"))
                       for record in read_batch_file(path)]
            assert sorted(r.request.capture_id for r in records) == sorted(accepted)
            expected = capture_request("any", rows=2000)
            for record in records:
                np.testing.assert_array_equal(
                    record.input_arrays["x"],
                    np.frombuffer(expected.input_tensors[0].byte_data,
                                  np.float32).reshape(2000, 4))
            # The spool gave its space back: large captures are accepted again.
            agent.stub.CaptureData(capture_request("after", rows=2000), timeout=10)
            assert "disk full" in agent.log()
        finally:
            assert agent.stop() == 0, agent.log()


def test_the_agent_serves_while_the_credentials_endpoint_is_down(
        packages: Packages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Greengrass's token exchange service may start after the agent, or restart: boto3 fetches
    # credentials when an S3 client is made, which used to end the agent's start.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    endpoint = CredentialsEndpoint(available=False)
    for name, value in endpoint.environment().items():
        monkeypatch.setenv(name, value)
    s3 = S3Server(tmp_path / "seaweedfs")
    s3.start()
    try:
        s3.client().create_bucket(Bucket="captures")
        keys = s3.agent_keys("captures")
        del keys["edgefleet_s3_access_key_id"], keys["edgefleet_s3_secret_access_key"]
        config = capture_config(packages, tmp_path,
                                sagemaker_edge_core_capture_data_push_period_seconds=0.2,
                                **keys)
        agent = start_agent(config, tmp_path / "agent")
        try:
            load_affine(agent, packages)
            agent.stub.CaptureData(capture_request("while-down"), timeout=10)
            wait_for(lambda: endpoint.calls, 10, "a credentials request")
            assert s3.records("captures") == []

            endpoint.available = True
            wait_for(lambda: [r for r in s3.records("captures")
                              if r.request.capture_id == "while-down"], 60,
                     "the capture, once credentials are served", interval=0.3)
            assert agent.process.poll() is None
        finally:
            assert agent.stop() == 0, agent.log()[-4000:]
    finally:
        s3.stop()
        endpoint.stop()
