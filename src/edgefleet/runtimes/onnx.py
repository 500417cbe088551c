"""ONNX Runtime (CPU; other execution providers where installed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgefleet.errors import InvalidArgument, ResourceExhausted, UnsupportedModel
from edgefleet.runtimes.base import Runtime, RuntimeOptions
from edgefleet.tensors import ONNX_TYPES, TensorSpec


def _out_of_memory(message: str) -> bool:
    # onnxruntime raises one untyped error class; its allocation failures say so in the text.
    return "bad_alloc" in message or "Failed to allocate" in message


def _specs(nodes: list[Any], what: str) -> tuple[TensorSpec, ...]:
    specs = []
    for node in nodes:
        data_type = ONNX_TYPES.get(node.type)
        if data_type is None:
            raise UnsupportedModel(
                f"model {what} {node.name!r} has type {node.type}, which the agent API cannot "
                f"carry; supported: {', '.join(ONNX_TYPES)}")
        # Symbolic or unknown dimensions (strings, None) are dynamic: -1 on the wire.
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape)
        specs.append(TensorSpec(name=node.name, data_type=data_type, shape=shape))
    return tuple(specs)


class OnnxRuntime(Runtime):
    """A model run by ONNX Runtime.

    Threads are set explicitly and spinning is off: the gRPC threads share the cores, and ONNX
    Runtime's defaults (one spinning thread per core) cost ~40% more CPU per request there
    (shared/DESIGN.md, performance notes).

    Raises:
        UnsupportedModel: the file is not a valid ONNX model, or uses dtypes the wire lacks.
        ResourceExhausted: out of memory while loading.
    """

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        self.path = path
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session_options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=session_options, providers=ort.get_available_providers())
        except MemoryError:
            raise ResourceExhausted(f"not enough memory to load {path.name}") from None
        except Exception as error:  # onnxruntime raises its own untyped errors for bad files
            text = str(error)
            if _out_of_memory(text):
                raise ResourceExhausted(
                    f"not enough memory to load {path.name}: {text}") from None
            raise UnsupportedModel(f"{path.name} is not a loadable ONNX model: {text}") from None
        self.inputs = _specs(self._session.get_inputs(), "input")
        self.outputs = _specs(self._session.get_outputs(), "output")
        self._output_names = [spec.name for spec in self.outputs]

    def predict(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the session; see :meth:`Runtime.predict`."""
        try:
            results: list[np.ndarray] = self._session.run(self._output_names, feeds)
        except MemoryError:
            raise ResourceExhausted("out of memory during inference") from None
        except Exception as error:  # shape errors deep in the graph surface here
            text = str(error)
            if _out_of_memory(text):
                raise ResourceExhausted(f"out of memory during inference: {text}") from None
            raise InvalidArgument(f"the model rejected the inputs: {text}") from None
        return results

    def unload(self) -> None:
        """Drop the session; its memory is freed when the last reference goes."""
        del self._session
