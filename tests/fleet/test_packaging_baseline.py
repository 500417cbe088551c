"""Packaging jobs with a drift baseline, through a real ``edgefleet server`` process: the REST
route, the admin client and the ``edgefleet packaging create --baseline`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support.fleet_server import Server, free_port, start_server, stop_server

from edgefleet.drift import build_baseline
from edgefleet.fleet.client import ApiError
from edgefleet.package.loader import read_baseline

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path / "data", free_port(), tmp_path / "server.log")
    yield running
    stop_server(running)


def training_inputs(rows: int = 300, features: int = 4) -> np.ndarray:
    """Training inputs of the conftest model's input x (float32 [1, 4])."""
    return np.random.default_rng(11).normal(size=(rows, features)).astype(np.float32)


def stored(server: Server, job: dict[str, object]) -> Path:
    """The package archive a job stored in the server's local object store."""
    return server.data_dir / "objects" / str(job["artifact"])


def test_a_npy_baseline_is_packaged(server: Server, tmp_path: Path, onnx_model: Path) -> None:
    x = training_inputs()
    np.save(tmp_path / "train.npy", x)

    job = server.admin.create_packaging_job("relu-1", "relu", "1.0", onnx_model,
                                            tmp_path / "train.npy")

    assert job["status"] == "COMPLETED", job
    assert read_baseline(stored(server, job)) == build_baseline(x, tensor="x")
    tensor_named = server.admin.create_packaging_job(
        "relu-2", "relu", "2.0", onnx_model, tmp_path / "train.npy", baseline_tensor="x")
    assert read_baseline(stored(server, tensor_named)) == build_baseline(x, tensor="x")
    plain = server.admin.create_packaging_job("relu-3", "relu", "3.0", onnx_model)
    assert plain["status"] == "COMPLETED" and read_baseline(stored(server, plain)) is None


def test_a_baseline_json_through_the_cli(server: Server, tmp_path: Path,
                                         onnx_model: Path) -> None:
    baseline = build_baseline(training_inputs(), tensor="x", bins=4)
    (tmp_path / "baseline.json").write_bytes(baseline.to_json())
    token = (server.data_dir / "admin-token").read_text().strip()

    done = subprocess.run(
        [sys.executable, "-m", "edgefleet.fleet", "packaging", "create", "relu-json",
         "--model-file", str(onnx_model), "--model-name", "relu", "--model-version", "1.0",
         "--baseline", str(tmp_path / "baseline.json")],
        env={**os.environ, "EDGEFLEET_SERVER_URL": server.url, "EDGEFLEET_ADMIN_TOKEN": token},
        capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "COMPLETED"
    assert read_baseline(stored(server, job)) == baseline


def test_a_bad_baseline_is_refused_or_fails_the_job(server: Server, tmp_path: Path,
                                                    onnx_model: Path) -> None:
    np.save(tmp_path / "three.npy", training_inputs(features=3))
    np.save(tmp_path / "few.npy", training_inputs(rows=10))
    (tmp_path / "train.csv").write_text("1,2,3,4\n")
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx model")
    np.save(tmp_path / "train.npy", training_inputs())

    # A baseline that does not fit the model: the job is recorded as FAILED, with the reason.
    misfit = server.admin.create_packaging_job("misfit", "relu", "1.0", onnx_model,
                                               tmp_path / "three.npy")
    assert misfit["status"] == "FAILED"
    assert "3 features per row, but input 'x' of shape [1, 4] has 4" in str(
        misfit["status_message"])
    other = server.admin.create_packaging_job("other", "relu", "1.0", onnx_model,
                                              tmp_path / "train.npy", baseline_tensor="q")
    assert other["status"] == "FAILED"
    assert "baseline is for input tensor 'q'" in str(other["status_message"])
    # A model that cannot be loaded fails the job with the model's reason, baseline or not.
    broken = server.admin.create_packaging_job("broken", "relu", "1.0", tmp_path / "junk.onnx",
                                               tmp_path / "train.npy")
    assert broken["status"] == "FAILED"
    assert "not a loadable ONNX model" in str(broken["status_message"])
    # An unreadable baseline: 400 before any job is recorded.
    for path, message in ((tmp_path / "few.npy", "at least 100 rows; got 10"),
                          (tmp_path / "train.csv", "neither a .npy array of training inputs"),
                          (tmp_path / "junk.npy", "not a readable .npy array")):
        with pytest.raises(ApiError) as refused:
            server.admin.create_packaging_job("refused", "relu", "1.0", onnx_model, path)
        assert refused.value.status == 400 and message in refused.value.message
    assert [j["name"] for j in server.admin.list_packaging_jobs()] == [
        "broken", "other", "misfit"]
