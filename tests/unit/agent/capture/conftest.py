"""Shared helpers of the capture pipeline's unit tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.captures import captured_tensor
from support.polling import wait_for

from edgefleet.agent.config import AgentConfig
from edgefleet.agent.types import (
    AuxiliaryEncoding,
    CapturedAuxiliary,
    CaptureRequest,
)

#: 2026-11-23T19:12:31.123456Z, a whole number of microseconds.
INFERENCE_TIME_NS = 1_795_461_151_123_456_000


def _capture(capture_id: str, *, model: str = "anomaly", size: int = 6,
            time_ns: int = INFERENCE_TIME_NS, sampled: bool = False) -> CaptureRequest:
    values = np.arange(size, dtype=np.float32).reshape(1, size)
    return CaptureRequest(
        capture_id=capture_id, model_alias=model, model_version="1.0",
        inference_time_ns=time_ns,
        input_tensors=(captured_tensor("input", values),),
        output_tensors=(captured_tensor("score", np.array([[0.5]], dtype=np.float64)),),
        auxiliary_inputs=(CapturedAuxiliary("site", AuxiliaryEncoding.JSON, b'{"turbine":1}'),),
        auxiliary_outputs=(CapturedAuxiliary("note", AuxiliaryEncoding.CSV, b"a,b\n1,2\n"),),
        sampled=sampled)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., AgentConfig]:
    """Builds an AgentConfig with capture keys under ``tmp_path``; keyword arguments override."""
    def build(**overrides: Any) -> AgentConfig:
        keys: dict[str, Any] = {
            "sagemaker_edge_core_device_name": "edge-1",
            "sagemaker_edge_core_device_fleet_name": "windfarm",
            "sagemaker_edge_core_capture_data_disk_path": str(tmp_path / "capture"),
            "sagemaker_edge_local_data_root_path": str(tmp_path / "data"),
            "sagemaker_edge_core_capture_data_buffer_size": 30,
            "sagemaker_edge_core_capture_data_batch_size": 10,
            "sagemaker_edge_core_capture_data_push_period_seconds": 0.2,
        }
        keys.update(overrides)
        return AgentConfig.from_mapping(keys)
    return build


@pytest.fixture
def make_capture() -> Callable[..., CaptureRequest]:
    """``make_capture(id, model=, size=, time_ns=, sampled=)``: a capture with one float32 input
    of ``size`` values, one float64 output, JSON and CSV auxiliary data."""
    return _capture


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(condition, timeout=5.0)``: poll every 10 ms, fail after ``timeout`` s."""
    return lambda condition, timeout=5.0: wait_for(condition, timeout, interval=0.01)
