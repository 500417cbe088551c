"""The capture pipeline against a real S3-compatible store (SeaweedFS, see s3server.py)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.polling import wait_for
from support.s3server import S3Server

from edgefleet.agent.capture import CaptureService, RetryPolicy
from edgefleet.agent.capture.sinks import S3Sink
from edgefleet.agent.config import AgentConfig
from edgefleet.agent.types import (
    AuxiliaryEncoding,
    CapturedAuxiliary,
    CapturedTensor,
    CaptureRequest,
    CaptureStatus,
)
from edgefleet.errors import FailedPrecondition
from edgefleet.wire.capture import BatchFile, DeviceIdentity, encode_batch

# No skip when SeaweedFS is missing: it is a dev dependency, and S3 evidence must not vanish
# silently (S3Server says what to install).
pytestmark = pytest.mark.slow
FAST = RetryPolicy(initial=0.05, maximum=0.5)
_buckets = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    s3 = S3Server(tmp_path_factory.mktemp("seaweedfs"))
    s3.start()
    yield s3
    s3.stop()


def new_bucket(server: S3Server) -> str:
    name = f"captures-{next(_buckets)}"
    server.client().create_bucket(Bucket=name)
    return name


def config(tmp_path: Path, **keys: Any) -> AgentConfig:
    return AgentConfig.from_mapping({
        "sagemaker_edge_core_device_name": "edge-1",
        "sagemaker_edge_core_device_fleet_name": "windfarm",
        "sagemaker_edge_core_capture_data_disk_path": str(tmp_path / "capture"),
        "sagemaker_edge_local_data_root_path": str(tmp_path / "data"),
        "sagemaker_edge_core_capture_data_push_period_seconds": 0.2,
        **keys})


def request(capture_id: str, rows: int = 1) -> CaptureRequest:
    """A capture shaped like the wind-farm model's: windows of 6 features x 10 steps."""
    window = np.random.default_rng(len(capture_id)).standard_normal((rows, 6, 10))
    return CaptureRequest(
        capture_id=capture_id, model_alias="anomaly", model_version="1.0",
        inference_time_ns=time.time_ns() // 1000 * 1000,
        input_tensors=(CapturedTensor("window", 5, window.shape,
                                      window.astype(np.float32).tobytes()),),
        output_tensors=(CapturedTensor("score", 6, (rows, 1), np.ones((rows, 1)).tobytes()),),
        auxiliary_inputs=(CapturedAuxiliary("turbine", AuxiliaryEncoding.CSV, b"R80711\n"),))


def test_cloud_round_trip(server: S3Server, tmp_path: Path) -> None:
    bucket = new_bucket(server)
    service = CaptureService(config(
        tmp_path, sagemaker_edge_core_capture_data_destination="Cloud",
        sagemaker_edge_core_folder_prefix="site-a", **server.agent_keys(bucket)), retry=FAST)
    service.start()
    sent = [request("small"), request("large-" + "x" * 20, rows=100)]  # 240 B and 24 KB inputs
    for capture in sent:
        service.submit(capture)
    service.close()
    assert service.status("large-" + "x" * 20) is CaptureStatus.SUCCESS
    records = server.records(bucket)
    assert [r.request for r in records] == sent
    np.testing.assert_array_equal(records[1].input_arrays["window"].shape, (100, 6, 10))
    keys = sorted(server.objects(bucket))
    assert all(key.startswith("site-a/windfarm/anomaly/") for key in keys)
    assert any(key.endswith(".bin") for key in keys)  # the large input went to a raw object


def test_wrong_credentials_are_refused(server: S3Server, tmp_path: Path) -> None:
    bucket = new_bucket(server)
    keys = server.agent_keys(bucket) | {"edgefleet_s3_secret_access_key": "wrong"}
    service = CaptureService(config(
        tmp_path, sagemaker_edge_core_capture_data_destination="Cloud", **keys), retry=FAST)
    service.start()
    try:
        service.submit(request("c"))
        wait_for(lambda: service.metrics()["capture_destination_up"] == 0)
        with pytest.raises(FailedPrecondition, match="SignatureDoesNotMatch"):
            service.submit(request("d"))
        assert server.objects(bucket) == {}
    finally:
        service.close(timeout=0.2)


def test_disk_with_periodic_upload(server: S3Server, tmp_path: Path) -> None:
    bucket = new_bucket(server)
    service = CaptureService(config(
        tmp_path, sagemaker_edge_core_capture_data_periodic_upload=True,
        sagemaker_edge_core_capture_data_periodic_upload_period_seconds=0.3,
        **server.agent_keys(bucket)), retry=FAST)
    service.start()
    sent = [request(f"c{i}", rows=1 + 20 * (i % 2)) for i in range(6)]
    for capture in sent:
        service.submit(capture)
    wait_for(lambda: len(server.records(bucket)) == 6)
    wait_for(lambda: not any(p.is_file() for p in (tmp_path / "capture").rglob("*")))
    service.close()
    assert [r.request for r in server.records(bucket)] == sent
    assert service.metrics()["capture_uploaded_files_total"] >= 4


def test_store_down_for_a_while_then_back(tmp_path: Path) -> None:
    s3 = S3Server(tmp_path / "seaweedfs")
    s3.start()
    try:
        bucket = new_bucket(s3)
        service = CaptureService(config(
            tmp_path, sagemaker_edge_core_capture_data_destination="Cloud",
            sagemaker_edge_db_enable=True, **s3.agent_keys(bucket)), retry=FAST)
        service.start()
        for i in range(20):
            service.submit(request(f"before-{i}"))
        wait_for(lambda: service.metrics()["capture_stored_total"] == 20)
        s3.stop()
        for i in range(100):  # accepted while the store is away: the spool holds them
            service.submit(request(f"during-{i}", rows=1 + i % 50))
        wait_for(lambda: service.metrics()["capture_delivery_failures_total"] >= 2)
        assert service.metrics()["capture_spool_records"] > 0
        s3.start()
        wait_for(lambda: service.metrics()["capture_spool_records"] == 0, timeout=60)
        service.close()
        ids = [r.request.capture_id for r in s3.records(bucket)]
        assert sorted(ids) == sorted([f"before-{i}" for i in range(20)]
                                     + [f"during-{i}" for i in range(100)])
    finally:
        s3.stop()


def _raw_batch(count: int) -> list[BatchFile]:
    """A batch whose ``count`` payloads all go to raw objects (embed limit 0)."""
    return encode_batch([request(f"raw-{i}") for i in range(count // 3)], key="f/m/b.jsonl",
                        device=DeviceIdentity("f", "d"), embed_limit=0,
                        data_ref=lambda key: key)


def test_s3_sink_puts_payloads_concurrently_and_the_batch_file_last(
        server: S3Server, tmp_path: Path) -> None:
    bucket = new_bucket(server)
    sink = S3Sink.from_config(config(tmp_path, edgefleet_s3_upload_concurrency=4,
                                     **server.agent_keys(bucket)))
    files = _raw_batch(12)
    # The first two payload PUTs wait for each other: with one PUT at a time this barrier
    # breaks (and the write fails) instead of passing.
    overlap = threading.Barrier(2, timeout=10)
    order: list[str] = []

    def before_put(params: dict[str, Any], **_: Any) -> None:
        order.append(params["Key"])
        if len(order) <= 2:
            overlap.wait()

    sink.client.meta.events.register("provide-client-params.s3.PutObject", before_put)
    try:
        sink.write(files)
    finally:
        sink.close()
    assert order[-1] == "f/m/b.jsonl" and len(order) == len(files)
    stored = server.objects(bucket)
    assert stored == {file.key: file.data for file in files}


def test_s3_sink_failed_payload_put_keeps_the_batch_file_back(
        server: S3Server, tmp_path: Path) -> None:
    bucket = new_bucket(server)
    sink = S3Sink.from_config(config(tmp_path, **server.agent_keys(bucket)))
    files = _raw_batch(6)
    refused = files[2].key

    def before_put(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == refused:
            raise ConnectionError(f"simulated network failure for {refused}")

    sink.client.meta.events.register("provide-client-params.s3.PutObject", before_put)
    try:
        with pytest.raises(ConnectionError, match="simulated"):
            sink.write(files)
    finally:
        sink.close()
    stored = server.objects(bucket)
    assert "f/m/b.jsonl" not in stored and refused not in stored
    assert len(stored) == len(files) - 2  # every other payload was stored
