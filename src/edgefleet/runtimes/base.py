"""The interface every model runtime implements.

A runtime wraps one loaded model. The agent calls :meth:`Runtime.predict` from many threads at
once, so implementations must be thread-safe (ONNX Runtime sessions are). Everything that can be
derived once per model (input names, dtypes, output metadata) is derived at load, never per call.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefleet.tensors import TensorSpec


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Settings a runtime applies when it loads a model.

    Attributes:
        intra_op_threads: threads one inference may use (0: the runtime's default).
    """

    intra_op_threads: int = 1


class Runtime(abc.ABC):
    """One loaded model, ready to predict.

    Subclasses load the model in ``__init__`` and raise ``UnsupportedModel`` (file is not a model
    this runtime can run, or it uses dtypes the wire cannot carry) or ``ResourceExhausted`` (out
    of memory). ``inputs`` and ``outputs`` describe the model; dynamic dimensions are -1.
    """

    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @abc.abstractmethod
    def predict(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model.

        Args:
            feeds: one array per model input, keyed by input name, with the declared dtype and
                a shape that matches the declared one (the caller checked both).

        Returns:
            One array per entry of ``outputs``, in that order.

        Raises:
            InvalidArgument: the model rejected the inputs (e.g. a dimension it cannot take).
            ResourceExhausted: out of memory.
        """

    @abc.abstractmethod
    def unload(self) -> None:
        """Release the model's memory. Called once, after the last ``predict`` has returned."""
