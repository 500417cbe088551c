"""Sinks (sinks.py). S3 here is moto, a mock: it checks the calls we make;
tests/integration/test_capture_s3.py is the evidence against a real store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from edgefleet.agent.capture.sinks import DiskSink, MemorySink, S3Sink
from edgefleet.agent.config import AgentConfig
from edgefleet.wire.capture import BatchFile

FILES = [BatchFile("f/m/2026/11/23/19/b.0.input.0.bin", b"\x00" * 10),
         BatchFile("f/m/2026/11/23/19/b.jsonl", b"{}\n")]


def test_disk_sink_writes_atomically_and_overwrites(tmp_path: Path) -> None:
    sink = DiskSink(tmp_path)
    sink.write(FILES)
    sink.write([BatchFile(FILES[1].key, b"[]\n")])
    folder = tmp_path / "f/m/2026/11/23/19"
    assert sorted(os.listdir(folder)) == ["b.0.input.0.bin", "b.jsonl"]
    assert (folder / "b.jsonl").read_bytes() == b"[]\n"
    assert sink.data_ref(FILES[0].key) == "b.0.input.0.bin"


def test_disk_sink_raises_when_a_folder_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a file where a folder should be")
    with pytest.raises(OSError):
        DiskSink(tmp_path).write(FILES)


@pytest.fixture
def s3_config() -> Iterator[AgentConfig]:
    with mock_aws():
        boto3.client("s3", region_name="eu-west-1").create_bucket(
            Bucket="captures", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield AgentConfig.from_mapping({
            "sagemaker_edge_core_capture_data_destination": "Cloud",
            "sagemaker_edge_provider_s3_bucket_name": "captures",
            "sagemaker_edge_core_region": "eu-west-1",
            "edgefleet_s3_access_key_id": "AKIDEXAMPLE",
            "edgefleet_s3_secret_access_key": "secret"})


def test_s3_sink_puts_objects_under_their_keys(s3_config: AgentConfig) -> None:
    sink = S3Sink.from_config(s3_config)
    sink.write(FILES)
    body = sink.client.get_object(Bucket="captures", Key=FILES[1].key)["Body"].read()
    assert body == b"{}\n"
    assert sink.data_ref(FILES[0].key) == f"s3://captures/{FILES[0].key}"
    assert sink.client.meta.region_name == "eu-west-1"
    assert "secret" not in sink.describe()


def test_memory_sink_fails_on_demand() -> None:
    sink = MemorySink()
    sink.failure = ConnectionError("down")
    with pytest.raises(ConnectionError):
        sink.write(FILES)
    assert sink.files == {}


def test_disk_sink_without_fsync_writes_the_same_files(tmp_path: Path) -> None:
    sink = DiskSink(tmp_path, fsync=False)
    sink.write(FILES)
    assert (tmp_path / FILES[1].key).read_bytes() == FILES[1].data
    assert not list(tmp_path.rglob(".*"))
