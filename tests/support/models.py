"""Small real ONNX models built with onnx.helper, for tests (no weights downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 18)]


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def affine_model(path: Path, scale: float = 2.0, bias: float = 1.0) -> Path:
    """x float32 [-1, 4] -> y = x * scale + bias (float32 [-1, 4]), s = sum(y, axis=1) [-1]."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["scaled"]),
         helper.make_node("Add", ["scaled", "bias"], ["y"]),
         helper.make_node("ReduceSum", ["y", "axes"], ["s"], keepdims=0)],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch"])],
        initializer=[numpy_helper.from_array(np.array(scale, np.float32), "scale"),
                     numpy_helper.from_array(np.array(bias, np.float32), "bias"),
                     numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    return _save(graph, path)


def affine_reference(x: np.ndarray, scale: float = 2.0,
                     bias: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`affine_model` computes, in numpy."""
    y = (x * np.float32(scale) + np.float32(bias)).astype(np.float32)
    return y, y.sum(axis=1, dtype=np.float32)


def mixed_model(path: Path) -> Path:
    """a float32 [2, 3] and b int32 [2, 3] -> out float64 [2, 3] = float64(a + float(b))."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["a", "bf"], ["sum"]),
         helper.make_node("Cast", ["sum"], ["out"], to=TensorProto.DOUBLE)],
        "mixed",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("b", TensorProto.INT32, [2, 3])],
        [helper.make_tensor_value_info("out", TensorProto.DOUBLE, [2, 3])],
    )
    return _save(graph, path)


def image_model(path: Path) -> Path:
    """x float32 [1, 3, 224, 224] -> m float32 [1, 3] = per-channel mean, y = x * 0.5 + 0.25."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
         helper.make_node("Mul", ["x", "half"], ["h"]),
         helper.make_node("Add", ["h", "quarter"], ["y"])],
        "image",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, 3]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 224, 224])],
        initializer=[numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
                     numpy_helper.from_array(np.array(0.5, np.float32), "half"),
                     numpy_helper.from_array(np.array(0.25, np.float32), "quarter")],
    )
    return _save(graph, path)
