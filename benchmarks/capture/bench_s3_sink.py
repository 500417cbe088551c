"""S3 sink: time to store one batch with large payloads, one PUT at a time vs concurrent PUTs.

A batch of 600 KB captures (every payload a raw object) goes to a local SeaweedFS. Each PUT is
held ``--rtt-ms`` longer before it is sent (a botocore event hook), to stand for the round trip
to a remote store that a local server lacks. Prints seconds per batch and payloads per second.

    .venv/bin/python benchmarks/capture/bench_s3_sink.py [--captures 50] [--rtt-ms 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.agent.capture.sinks import S3Sink
from edgefleet.agent.config import AgentConfig
from edgefleet.agent.types import CapturedTensor, CaptureRequest
from edgefleet.wire.capture import DeviceIdentity, encode_batch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from support.s3server import S3Server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captures", type=int, default=50, help="600 KB captures per batch")
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="added wait per PUT")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    args = parser.parse_args()
    data = np.ones(153_600, np.float32).tobytes()
    requests = [CaptureRequest(f"c{i}", "bench", "1", time.time_ns(),
                               (CapturedTensor("x", 1, (1, 153_600), data),))
                for i in range(args.captures)]
    with tempfile.TemporaryDirectory() as folder:
        s3 = S3Server(Path(folder))
        s3.start()
        try:
            s3.client().create_bucket(Bucket="bench")
            print(f"{args.captures} captures of 600 KB per batch, +{args.rtt_ms:g} ms per PUT")
            print(f"{'concurrency':>11} {'s/batch':>8} {'payloads/s':>10}")
            for concurrency in args.concurrency:
                config = AgentConfig.from_mapping({
                    "sagemaker_edge_core_capture_data_destination": "Cloud",
                    "edgefleet_s3_upload_concurrency": concurrency,
                    "sagemaker_edge_local_data_root_path": folder,
                    **s3.agent_keys("bench")})
                sink = S3Sink.from_config(config)

                def hold(**_: Any) -> None:
                    time.sleep(args.rtt_ms / 1000)

                sink.client.meta.events.register("before-send.s3.PutObject", hold)
                files = encode_batch(requests, key=f"bench/c{concurrency}.jsonl",
                                     device=DeviceIdentity("f", "d"), embed_limit=0,
                                     data_ref=sink.data_ref)
                started = time.perf_counter()
                sink.write(files)
                elapsed = time.perf_counter() - started
                sink.close()
                print(f"{concurrency:11d} {elapsed:8.2f} {args.captures / elapsed:10.0f}")
        finally:
            s3.stop()


if __name__ == "__main__":
    main()
