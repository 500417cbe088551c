"""Capture test data."""

from __future__ import annotations

import numpy as np

from edgefleet.agent.types import CapturedTensor
from edgefleet.tensors import data_type_from_numpy


def captured_tensor(name: str, array: np.ndarray) -> CapturedTensor:
    """``array`` as a captured tensor (C-contiguous bytes, its dtype and shape)."""
    return CapturedTensor(name, data_type_from_numpy(array.dtype), tuple(array.shape),
                          np.ascontiguousarray(array).tobytes())
