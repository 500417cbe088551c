"""The gRPC adapter: SageMaker Edge Manager's ``AWS.SageMaker.Edge.Agent`` service on a socket.

This module only converts protobuf messages to the transport-free types of
:mod:`edgefleet.agent.types` and back, and maps :class:`~edgefleet.errors.EdgefleetError` to its
status code with the error's message as details. Behaviour lives in
:class:`~edgefleet.agent.serving.service.AgentService`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from edgefleet.agent.serving.service import AgentService
from edgefleet.agent.types import (
    AuxiliaryEncoding,
    AuxiliaryInput,
    ModelInfo,
    SharedMemoryRef,
    TensorInput,
)
from edgefleet.errors import EdgefleetError, InvalidArgument
from edgefleet.names import wire_name
from edgefleet.proto import agent_pb2 as pb
from edgefleet.proto import agent_pb2_grpc as pb_grpc
from edgefleet.tensors import TensorSpec

log = logging.getLogger(__name__)

#: The service name clients and health checks use.
SERVICE_NAME = "AWS.SageMaker.Edge.Agent"

Response = TypeVar("Response")

#: CaptureData's answer carries no fields; one instance serves every call (only read).
_CAPTURED = pb.CaptureDataResponse()


def _shared_memory(handle: Any) -> SharedMemoryRef:
    return SharedMemoryRef(segment_id=handle.segment_id, offset=handle.offset, size=handle.size)


def tensor_input(tensor: pb.Tensor) -> TensorInput:
    """Convert a wire ``Tensor`` (metadata optional, bytes inline or in shared memory).

    Raises:
        InvalidArgument: the name is not UTF-8 or longer than ``MAX_NAME_BYTES``, or the
            tensor carries no data.
    """
    name: str | None = None
    data_type: int | None = None
    shape: tuple[int, ...] | None = None
    if tensor.HasField("tensor_metadata"):
        metadata = tensor.tensor_metadata
        name = wire_name(metadata.name, "tensor name") or None
        data_type = metadata.data_type
        shape = tuple(metadata.shape)
    kind = tensor.WhichOneof("data")
    if kind == "byte_data":
        return TensorInput(name, data_type, shape, data=tensor.byte_data)
    if kind == "shared_memory_handle":
        return TensorInput(name, data_type, shape,
                           shared_memory=_shared_memory(tensor.shared_memory_handle))
    raise InvalidArgument(
        f"tensor {name or '(unnamed)'!r} carries no data: set byte_data or shared_memory_handle")


def auxiliary_input(aux: pb.AuxiliaryData) -> AuxiliaryInput:
    """Convert a wire ``AuxiliaryData``.

    Raises:
        InvalidArgument: unknown encoding, or a name longer than ``MAX_NAME_BYTES``.
    """
    name = wire_name(aux.name, "auxiliary data name")
    try:
        encoding = AuxiliaryEncoding(aux.encoding)
    except ValueError:
        raise InvalidArgument(
            f"auxiliary data {name!r}: unknown encoding {aux.encoding}; expected CSV, JSON, "
            f"NONE or BASE64") from None
    if aux.WhichOneof("data") == "shared_memory_handle":
        return AuxiliaryInput(name, encoding,
                              shared_memory=_shared_memory(aux.shared_memory_handle))
    return AuxiliaryInput(name, encoding, data=aux.byte_data)


def _metadata(spec: TensorSpec) -> pb.TensorMetadata:
    return pb.TensorMetadata(name=spec.name.encode(), data_type=spec.data_type,
                             shape=list(spec.shape))


def model_message(info: ModelInfo) -> pb.Model:
    """Convert a :class:`ModelInfo`; the alias is echoed as both ``name`` and ``handle``."""
    return pb.Model(
        url=info.url, name=info.alias, handle=info.alias,
        input_tensor_metadatas=[_metadata(spec) for spec in info.inputs],
        output_tensor_metadatas=[_metadata(spec) for spec in info.outputs],
    )


def _timestamp_ns(request: pb.CaptureDataRequest) -> int | None:
    if not request.HasField("inference_timestamp"):
        return None
    stamp = request.inference_timestamp
    if not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidArgument(
            f"inference_timestamp.nanos must be in 0..999999999, got {stamp.nanos}")
    return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)


class AgentServicer(pb_grpc.AgentServicer):  # type: ignore[misc]  # generated, untyped
    """Wire adapter over :class:`AgentService`; one method per rpc of the spec."""

    def __init__(self, service: AgentService) -> None:
        self._service = service

    def _call(self, context: grpc.ServicerContext, rpc: str,
              work: Callable[[], Response]) -> Response:
        try:
            return work()
        except Exception as error:
            self._abort(context, rpc, error)
        raise AssertionError("context.abort returned")  # pragma: no cover

    @staticmethod
    def _abort(context: grpc.ServicerContext, rpc: str, error: Exception) -> None:
        if isinstance(error, EdgefleetError):
            log.debug("%s refused: %s %s", rpc, error.code.name, error.message)
            context.abort(error.code, error.message)
        log.error("%s failed unexpectedly", rpc, exc_info=error)
        context.abort(grpc.StatusCode.INTERNAL,
                      f"{rpc} failed inside the agent; the agent log has the details")

    def Predict(self, request: pb.PredictRequest,
                context: grpc.ServicerContext) -> pb.PredictResponse:
        # The hot path, written out without the closure the other rpcs use.
        try:
            outputs = self._service.predict(
                request.name, [tensor_input(t) for t in request.tensors], request.handle)
        except Exception as error:
            self._abort(context, "Predict", error)
        reply = pb.PredictResponse()
        for out in outputs:
            # Filling fields in place costs about half of building nested messages.
            tensor = reply.tensors.add(byte_data=out.data)
            metadata = tensor.tensor_metadata
            metadata.name = out.name.encode()
            metadata.data_type = out.data_type
            metadata.shape.extend(out.shape)
        return reply

    def LoadModel(self, request: pb.LoadModelRequest,
                  context: grpc.ServicerContext) -> pb.LoadModelResponse:
        return self._call(context, "LoadModel", lambda: pb.LoadModelResponse(
            model=model_message(self._service.load_model(request.url, request.name,
                                                         request.handle))))

    def UnLoadModel(self, request: pb.UnLoadModelRequest,
                    context: grpc.ServicerContext) -> pb.UnLoadModelResponse:
        def work() -> pb.UnLoadModelResponse:
            self._service.unload_model(request.name, request.handle)
            return pb.UnLoadModelResponse()
        return self._call(context, "UnLoadModel", work)

    def ListModels(self, request: pb.ListModelsRequest,
                   context: grpc.ServicerContext) -> pb.ListModelsResponse:
        return self._call(context, "ListModels", lambda: pb.ListModelsResponse(
            models=[model_message(info) for info in self._service.list_models()]))

    def DescribeModel(self, request: pb.DescribeModelRequest,
                      context: grpc.ServicerContext) -> pb.DescribeModelResponse:
        return self._call(context, "DescribeModel", lambda: pb.DescribeModelResponse(
            model=model_message(self._service.describe_model(request.name, request.handle))))

    def CaptureData(self, request: pb.CaptureDataRequest,
                    context: grpc.ServicerContext) -> pb.CaptureDataResponse:
        # Hot too (one call per captured inference): no closure, no lists for empty fields.
        try:
            self._service.capture_data(
                model_name=request.model_name,
                model_handle=request.model_handle,
                capture_id=request.capture_id,
                inference_time_ns=_timestamp_ns(request),
                input_tensors=[tensor_input(t) for t in request.input_tensors],
                output_tensors=[tensor_input(t) for t in request.output_tensors]
                if request.output_tensors else (),
                auxiliary_inputs=[auxiliary_input(a) for a in request.inputs]
                if request.inputs else (),
                auxiliary_outputs=[auxiliary_input(a) for a in request.outputs]
                if request.outputs else (),
            )
        except Exception as error:
            self._abort(context, "CaptureData", error)
        return _CAPTURED

    def GetCaptureDataStatus(self, request: pb.GetCaptureDataStatusRequest,
                             context: grpc.ServicerContext) -> pb.GetCaptureDataStatusResponse:
        return self._call(context, "GetCaptureDataStatus", lambda: (
            pb.GetCaptureDataStatusResponse(
                status=int(self._service.capture_status(request.capture_id)))))


#: Each rpc's request and response messages (agent.proto); the servicer method has its name.
RPC_MESSAGES: dict[str, tuple[type[Any], type[Any]]] = {
    "Predict": (pb.PredictRequest, pb.PredictResponse),
    "LoadModel": (pb.LoadModelRequest, pb.LoadModelResponse),
    "UnLoadModel": (pb.UnLoadModelRequest, pb.UnLoadModelResponse),
    "ListModels": (pb.ListModelsRequest, pb.ListModelsResponse),
    "DescribeModel": (pb.DescribeModelRequest, pb.DescribeModelResponse),
    "CaptureData": (pb.CaptureDataRequest, pb.CaptureDataResponse),
    "GetCaptureDataStatus": (pb.GetCaptureDataStatusRequest, pb.GetCaptureDataStatusResponse),
}


class RateLimitedLog:
    """Logs a warning at most once per ``interval`` seconds, counting what it held back.

    For events a client can cause at any rate (undecodable requests): one line per event would
    let a broken client fill the disk with log.
    """

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self._log = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._held = 0

    def warning(self, message: str, *args: object) -> None:
        """Log ``message % args`` now, or count it if a line went out less than ``interval``
        seconds ago; the next line says how many were held back."""
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                self._held += 1
                return
            held, self._held, self._next = self._held, 0, now + self._interval
        if held:
            message += f" (and {held} more like it in the last {self._interval:.0f} s)"
        self._log.warning(message, *args)


_UNDECODABLE = RateLimitedLog(log)


def _raw_bytes_handler(rpc: str, method: Callable[[Any, grpc.ServicerContext], Any],
                       request_type: type[Any],
                       response_type: type[Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler that receives the request's bytes and parses them itself.

    grpcio's own deserialization of a request that fails to parse answers INTERNAL, logs a
    traceback per call and leaks about 15 KiB per call (grpcio 1.85; a bare server with
    generated stubs does the same). Parsing here answers INVALID_ARGUMENT, logs one
    rate-limited line, and keeps memory flat.
    """
    parse = request_type.FromString
    expected = request_type.DESCRIPTOR.full_name

    def handle(data: bytes, context: grpc.ServicerContext) -> Any:
        try:
            request = parse(data)
        except DecodeError:
            _UNDECODABLE.warning("%s: refused a request of %d bytes that is not a %s message",
                                 rpc, len(data), expected)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"the request is not a valid {expected} message (agent.proto); "
                          f"send it with stubs generated from the agent's .proto")
        return method(request, context)

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=None, response_serializer=response_type.SerializeToString)


def add_agent_service(servicer: AgentServicer, server: grpc.Server) -> None:
    """Register the Agent service's rpcs on ``server``, each parsing its own request bytes.

    Replaces the generated ``add_AgentServicer_to_server``, whose handlers let grpcio parse
    requests (see :func:`_raw_bytes_handler` for why not).
    """
    handlers = {rpc: _raw_bytes_handler(rpc, getattr(servicer, rpc), request, response)
                for rpc, (request, response) in RPC_MESSAGES.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME,
                                                                          handlers),))
    # Found without the generic lookup; grpc-stubs do not know this grpcio 1.65+ method yet.
    server.add_registered_method_handlers(SERVICE_NAME, handlers)  # type: ignore[attr-defined]


def build_server(service: AgentService, *, workers: int, max_message_bytes: int,
                 extra: Sequence[Callable[[grpc.Server], None]] = ()
                 ) -> tuple[grpc.Server, health.HealthServicer]:
    """A gRPC server with the Agent service and the standard ``grpc.health.v1`` service.

    The caller binds it (``server.add_insecure_port("unix:" + path)``) and starts it. Health
    starts as NOT_SERVING; the caller flips it once the socket is ready.

    Args:
        workers: threads serving calls; more than the expected concurrency, since a thread is
            held for the whole call.
        max_message_bytes: largest message received or sent (clients send 80 MB and more).
        extra: functions adding more services to the server (e.g. JSON-RPC, metrics).
    """
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers,
                                                    thread_name_prefix="grpc"),
                         options=options)
    add_agent_service(AgentServicer(service), server)
    health_servicer = health.HealthServicer()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for add in extra:
        add(server)
    return server, health_servicer
