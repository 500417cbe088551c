"""The agent's gRPC client, as the bridge uses it: one channel to the Unix socket, every call
with a deadline, every gRPC error turned into a JSON-RPC server error that carries the status.

The rpc names and messages are the SageMaker Edge Manager agent's (shared/spec/agent-api.md);
the stubs are :mod:`edgefleet.proto`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import numpy as np

from edgefleet.bridge.protocol import AGENT_ERROR, JsonRpcError
from edgefleet.proto import agent_pb2 as pb
from edgefleet.proto import agent_pb2_grpc as pb_grpc
from edgefleet.tensors import TensorSpec, data_type_from_numpy

#: Largest message sent or received, in bytes: the agent's default (1 GiB); images and raw
#: tensors of hundreds of MB are normal on edge devices.
MAX_MESSAGE_BYTES = 1 << 30


class AgentError(JsonRpcError):
    """The agent refused or failed a call (JSON-RPC :data:`AGENT_ERROR`, -32000).

    ``data``: ``rpc`` (e.g. ``"LoadModel"``), ``grpc_status`` (e.g. ``"NOT_FOUND"``),
    ``grpc_code`` (its number) and ``details`` (the agent's message).
    """

    def __init__(self, rpc: str, status: grpc.StatusCode, details: str) -> None:
        super().__init__(AGENT_ERROR, f"Agent error: {rpc}: {status.name}: {details}",
                         {"rpc": rpc, "grpc_status": status.name,
                          "grpc_code": status.value[0], "details": details})
        self.status = status


def spec_of(metadata: Any) -> TensorSpec:
    """A wire ``TensorMetadata`` as a :class:`TensorSpec` (name bytes decoded as UTF-8)."""
    name = metadata.name.decode(errors="replace") if isinstance(metadata.name, bytes) \
        else str(metadata.name)
    return TensorSpec(name=name, data_type=int(metadata.data_type),
                      shape=tuple(int(d) for d in metadata.shape))


class AgentClient:
    """Calls of one agent socket.

    Args:
        socket: the agent's Unix socket path (``edgefleet-agent -a SOCKET``).
        timeout: deadline of each call, in seconds.
    """

    def __init__(self, socket: Path, timeout: float) -> None:
        self.socket = socket
        self._timeout = timeout
        self._channel = grpc.insecure_channel(
            f"unix://{socket.absolute()}",
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
        self._stub = pb_grpc.AgentStub(self._channel)

    def close(self) -> None:
        """Close the channel (calls in flight fail with CANCELLED)."""
        self._channel.close()

    def call(self, rpc: str, request: Any) -> Any:
        """Call ``rpc`` (``"ListModels"``, ``"LoadModel"``, ...) with ``request``.

        Raises:
            AgentError: the agent answered with an error status, or could not be reached
                (UNAVAILABLE, the message names the socket) or did not answer in time
                (DEADLINE_EXCEEDED).
        """
        try:
            return getattr(self._stub, rpc)(request, timeout=self._timeout)
        except grpc.RpcError as error:
            status = error.code() if callable(getattr(error, "code", None)) else None
            details = error.details() if callable(getattr(error, "details", None)) else None
            status = status or grpc.StatusCode.UNKNOWN
            details = details or str(error)
            if status is grpc.StatusCode.UNAVAILABLE:
                details = (f"the agent at {self.socket} is not reachable ({details}); is "
                           "edgefleet-agent running with -a on that socket?")
            raise AgentError(rpc, status, details) from None

    def list_models(self) -> list[Any]:
        """Every loaded model (wire ``Model`` messages)."""
        return list(self.call("ListModels", pb.ListModelsRequest()).models)

    def describe(self, name: str) -> Any:
        """The wire ``Model`` of loaded model ``name``."""
        return self.call("DescribeModel", pb.DescribeModelRequest(name=name)).model

    def load(self, name: str, url: Path) -> Any:
        """Load the package at ``url`` (absolute) under alias ``name``; the wire ``Model``."""
        return self.call("LoadModel", pb.LoadModelRequest(name=name, url=str(url))).model

    def unload(self, name: str) -> None:
        """Unload model ``name``."""
        self.call("UnLoadModel", pb.UnLoadModelRequest(name=name))

    def predict(self, name: str, tensors: list[Any]) -> list[Any]:
        """Run model ``name`` on wire ``Tensor`` inputs; the output ``Tensor`` messages."""
        return list(self.call("Predict", pb.PredictRequest(name=name, tensors=tensors)).tensors)

    def capture(self, request: Any) -> None:
        """Send a wire ``CaptureDataRequest``."""
        self.call("CaptureData", request)

    def capture_status(self, capture_id: str) -> str:
        """The status name of capture ``capture_id``: SUCCESS, FAILURE or IN_PROGRESS."""
        reply = self.call("GetCaptureDataStatus",
                          pb.GetCaptureDataStatusRequest(capture_id=capture_id))
        return str(pb.CaptureDataStatus.Name(reply.status))


def to_tensor(name: str, array: np.ndarray) -> Any:
    """A wire ``Tensor`` with ``array``'s bytes, dtype and shape under ``name``.

    Raises:
        InvalidArgument: the dtype has no wire equivalent (bool, uint16, complex, ...).
    """
    return pb.Tensor(
        tensor_metadata=pb.TensorMetadata(name=name.encode(),
                                          data_type=data_type_from_numpy(array.dtype),
                                          shape=list(array.shape)),
        byte_data=np.ascontiguousarray(array).tobytes())


def from_tensor(tensor: Any) -> tuple[TensorSpec, np.ndarray]:
    """A wire output ``Tensor`` (``byte_data``, as the agent always answers) as an array."""
    spec = spec_of(tensor.tensor_metadata)
    return spec, np.frombuffer(tensor.byte_data, dtype=spec.dtype).reshape(spec.shape)
