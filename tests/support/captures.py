"""Capture test data: captured tensors, and CaptureData requests of the affine test model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.agent.types import CapturedTensor
from edgefleet.proto import agent_pb2 as pb
from edgefleet.tensors import data_type_from_numpy
from support.models import affine_reference
from support.packages import Packages, base_config


def captured_tensor(name: str, array: np.ndarray) -> CapturedTensor:
    """``array`` as a captured tensor (C-contiguous bytes, its dtype and shape)."""
    return CapturedTensor(name, data_type_from_numpy(array.dtype), tuple(array.shape),
                          np.ascontiguousarray(array).tobytes())


def tensor(name: str, array: np.ndarray) -> pb.Tensor:
    return pb.Tensor(tensor_metadata=pb.TensorMetadata(name=name.encode(), data_type=pb.FLOAT32,
                                                       shape=list(array.shape)),
                     byte_data=array.astype(np.float32).tobytes())


def capture_request(capture_id: str, rows: int = 1) -> pb.CaptureDataRequest:
    x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    y, s = affine_reference(x)
    now = time.time_ns()
    return pb.CaptureDataRequest(
        model_name="affine", capture_id=capture_id,
        inference_timestamp=pb.Timestamp(seconds=now // 10**9, nanos=now % 10**9),
        input_tensors=[tensor("x", x)], output_tensors=[tensor("y", y), tensor("s", s)])


def capture_config(packages: Packages, tmp_path: Path, **keys: Any) -> dict[str, Any]:
    return base_config(packages, sagemaker_edge_db_enable=True,
                       sagemaker_edge_local_data_root_path=str(tmp_path / "data"),
                       sagemaker_edge_core_capture_data_destination="Cloud", **keys)
