"""Replay windows through the model: over gRPC to the edge agent, or in-process.

A *scorer* maps a float32 batch of windows ``[n, F]`` to ``(expected [n, E], score [n])`` (see
:mod:`windfarm.model` for the layouts). :class:`AgentScorer` is what a real application on the
turbine controller would do: one ``Predict`` call per batch on the agent's Unix socket, with the
SageMaker Edge Manager wire format (tensor bytes in ``byte_data``, outputs reshaped by their
``tensor_metadata.shape``). :class:`OnnxScorer` runs the same ONNX file in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgefleet.proto import agent_pb2, agent_pb2_grpc
from windfarm.data import Windows
from windfarm.model import EXPECTED_NAME, INPUT_NAME, SCORE_NAME

Scorer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

#: numpy dtype of each wire ``DataType`` value (shared/spec/agent-api.md, "Enums").
_WIRE_DTYPES = {
    agent_pb2.UINT8: np.uint8, agent_pb2.INT16: np.int16, agent_pb2.INT32: np.int32,
    agent_pb2.INT64: np.int64, agent_pb2.FLOAT16: np.float16, agent_pb2.FLOAT32: np.float32,
    agent_pb2.FLOAT64: np.float64,
}


def _decode(tensor: agent_pb2.Tensor) -> np.ndarray:
    meta = tensor.tensor_metadata
    array = np.frombuffer(tensor.byte_data, dtype=_WIRE_DTYPES[meta.data_type])
    return array.reshape(tuple(meta.shape))


class AgentScorer:
    """Score windows with ``Predict`` calls to an edge agent.

    Args:
        channel: a gRPC channel to the agent (``grpc.insecure_channel("unix://" + socket)``).
        model: the alias the model was loaded under.
        timeout: seconds per call.
    """

    def __init__(self, channel: grpc.Channel, model: str, *, timeout: float = 30.0) -> None:
        self._stub = agent_pb2_grpc.AgentStub(channel)
        self._model = model
        self._timeout = timeout

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Send one ``Predict`` with ``x`` (float32 ``[n, F]``) and return the decoded outputs."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        request = agent_pb2.PredictRequest(name=self._model, tensors=[agent_pb2.Tensor(
            tensor_metadata=agent_pb2.TensorMetadata(
                name=INPUT_NAME.encode(), data_type=agent_pb2.FLOAT32, shape=list(x.shape)),
            byte_data=x.tobytes(),
        )])
        response = self._stub.Predict(request, timeout=self._timeout)
        outputs = {t.tensor_metadata.name.decode(): _decode(t) for t in response.tensors}
        return outputs[EXPECTED_NAME], outputs[SCORE_NAME]


class OnnxScorer:
    """Score windows with onnxruntime in this process (tests, and the agent-free check)."""

    def __init__(self, model_path: Path) -> None:
        import onnxruntime

        self._session = onnxruntime.InferenceSession(
            str(model_path), providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on ``x`` (float32 ``[n, F]``)."""
        expected, score = self._session.run(
            [EXPECTED_NAME, SCORE_NAME], {INPUT_NAME: np.asarray(x, dtype=np.float32)})
        return expected, score


def day_batches(windows: Windows) -> list[np.ndarray]:
    """Group window indices into one batch per turbine and UTC day, in time order.

    Returns:
        Index arrays into ``windows``; each batch is what one turbine sends in one day.
    """
    days = pd.DatetimeIndex(windows.start).normalize().to_numpy()
    order = np.lexsort((windows.start, days, windows.turbine))
    keys = np.stack([windows.turbine[order].astype(str), days[order].astype(str)], axis=1)
    boundaries = np.flatnonzero((keys[1:] != keys[:-1]).any(axis=1)) + 1
    return np.split(order, boundaries)


def replay(windows: Windows, scorer: Scorer, *, console: Console | None = None,
           ) -> tuple[np.ndarray, np.ndarray]:
    """Score every window, one batch per turbine-day, with a progress bar.

    Returns:
        ``(expected [n, E], score [n])`` aligned with ``windows``.
    """
    batches = day_batches(windows)
    score = np.empty(len(windows.x), dtype=np.float32)
    expected: np.ndarray | None = None
    with Progress(
        TextColumn("Replaying 2015 through Predict"), BarColumn(), MofNCompleteColumn(),
        TextColumn("turbine-days"), TimeElapsedColumn(), console=console, transient=True,
    ) as progress:
        task = progress.add_task("replay", total=len(batches))
        for batch in batches:
            batch_expected, batch_score = scorer(windows.x[batch])
            if expected is None:
                expected = np.empty((len(windows.x), batch_expected.shape[1]), dtype=np.float32)
            expected[batch] = batch_expected
            score[batch] = batch_score
            progress.advance(task)
    if expected is None:
        raise ValueError("no windows to replay")
    return expected, score
