"""AgentService: the agent's behaviour, free of any transport.

The gRPC adapter (``grpc_server.py``) and the JSON-RPC bridge only convert messages and map
errors; everything the agent does lives here, and applications can use it in-process as a
library::

    service = AgentService(AgentConfig.from_mapping({...}))
    service.load_model("models/anomaly-1.0.tar.gz", "anomaly")
    outputs = service.predict_arrays("anomaly", {"input": windows})   # name -> numpy array

Every method raises the :mod:`edgefleet.errors` classes, whose ``code`` is the gRPC status the
SageMaker agent API documents for that case (shared/spec/agent-api.md).
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import psutil

from edgefleet.agent.config import AgentConfig
from edgefleet.agent.serving.registry import LoadedModel, ModelRegistry
from edgefleet.agent.serving.shm import SharedMemoryCache
from edgefleet.agent.types import (
    AuxiliaryInput,
    CapturedAuxiliary,
    CapturedTensor,
    CaptureRequest,
    CaptureStatus,
    ModelInfo,
    SharedMemoryRef,
    TensorInput,
    TensorOutput,
)
from edgefleet.errors import (
    EdgefleetError,
    FailedPrecondition,
    InvalidArgument,
    OutOfRange,
    ResourceExhausted,
    TensorMismatch,
    echo,
)
from edgefleet.names import check_alias
from edgefleet.package import open_package
from edgefleet.runtimes import RuntimeOptions, load_runtime
from edgefleet.tensors import DATA_TYPES, TensorSpec, data_type_from_numpy

log = logging.getLogger(__name__)

#: Longest capture id accepted (the spec: "up to 256 chars is plenty").
MAX_CAPTURE_ID_LENGTH = 256


class CaptureBackend(Protocol):
    """What AgentService needs of the capture pipeline (``edgefleet.agent.capture``)."""

    def submit(self, request: CaptureRequest) -> None:
        """Enqueue one capture; raise AlreadyExists, ResourceExhausted or FailedPrecondition."""

    def status(self, capture_id: str) -> CaptureStatus:
        """The capture's state; raise NotFound for unknown or expired ids."""


def _resolve_alias(name: str, handle: str) -> str:
    # Clients from 2020-2021 set only `name`; newer ones may set `handle`, which wins.
    return check_alias(handle or name)


class AgentService:
    """The agent's operations: load, unload, list, describe, predict, capture.

    Args:
        config: validated agent configuration.
        registry: the model registry (a new one by default).
        capture: the capture pipeline; ``None`` makes CaptureData answer FAILED_PRECONDITION.
        shared_memory: cache of System V shared memory attachments (a new one by default).
    """

    def __init__(self, config: AgentConfig, *, registry: ModelRegistry | None = None,
                 capture: CaptureBackend | None = None,
                 shared_memory: SharedMemoryCache | None = None) -> None:
        self.config = config
        self.registry = registry or ModelRegistry()
        self.capture = capture
        self.shared_memory = shared_memory or SharedMemoryCache()
        self._runtime_options = RuntimeOptions(intra_op_threads=config.edgefleet_intra_op_threads)
        self._extract_root = config.sagemaker_edge_local_data_root_path / "packages"
        self._sampling = dict(config.edgefleet_capture_sampling)
        self._random = random.Random()
        self._clock_skew_ns = int(config.edgefleet_capture_clock_skew_seconds * 1e9)

    # -- models -----------------------------------------------------------------------------------
    def load_model(self, url: str, name: str, handle: str = "") -> ModelInfo:
        """Load the package at ``url`` under the alias ``handle or name``.

        ``url`` is an extracted package directory or a ``.tar.gz`` package (relative paths
        resolve against the working directory).

        Raises:
            InvalidArgument: bad alias or empty url.
            AlreadyExists: the alias is in use.
            NotFound: nothing at ``url``.
            PackageError: unsigned, tampered, untrusted or unsafe package; unsupported model
                (all FAILED_PRECONDITION).
            ResourceExhausted: not enough memory.
        """
        alias = _resolve_alias(name, handle)
        if not url:
            raise InvalidArgument("no url given: set `url` to the model package's directory "
                                  "or .tar.gz file")
        self.registry.reserve(alias)
        try:
            model = self.open_model(url, alias)
        except BaseException:
            self.registry.release_reservation(alias)
            raise
        self.registry.publish(model)
        log.info("loaded model %r version %r from %s", alias, model.info.version, echo(url))
        return model.info

    def open_model(self, url: str, alias: str) -> LoadedModel:
        """Verify, extract and load the package at ``url`` without publishing it.

        The deployment executor uses this to prepare a new version before swapping it in;
        :meth:`load_model` publishes at once.

        Raises:
            The errors of :meth:`load_model`, except AlreadyExists.
        """
        package = open_package(
            Path(url),
            extract_root=self._extract_root,
            root_certs_path=self.config.sagemaker_edge_core_root_certs_path,
            allow_unsigned=self.config.edgefleet_allow_unsigned_models,
            max_archive_bytes=self.config.edgefleet_max_package_bytes,
        )
        try:
            needed = package.model_path.stat().st_size * 2
            available = psutil.virtual_memory().available
            if needed > available:
                raise ResourceExhausted(
                    f"model {alias!r} needs about {needed >> 20} MiB, only {available >> 20} "
                    f"MiB are available; unload another model first")
            runtime = load_runtime(package.framework, package.model_path, self._runtime_options)
        except BaseException:
            if package.extracted:
                shutil.rmtree(package.directory, ignore_errors=True)
            raise
        info = ModelInfo(alias=alias, url=url, version=package.model_version or "",
                         inputs=runtime.inputs, outputs=runtime.outputs)
        return LoadedModel(info=info, runtime=runtime,
                           extracted_to=package.directory if package.extracted else None)

    def unload_model(self, name: str, handle: str = "") -> None:
        """Unload a model, waiting for its predictions in flight.

        Raises:
            InvalidArgument: bad alias.
            NotFound: no model under that alias.
        """
        alias = _resolve_alias(name, handle)
        self.registry.unload(alias)
        log.info("unloaded model %r", alias)

    def list_models(self) -> list[ModelInfo]:
        """Every loaded model with its input and output metadata, sorted by alias."""
        return [model.info for model in self.registry.models()]

    def describe_model(self, name: str, handle: str = "") -> ModelInfo:
        """One loaded model.

        Raises:
            InvalidArgument: bad alias.
            NotFound: no model under that alias.
        """
        return self.registry.get(handle or name).info

    # -- predict ----------------------------------------------------------------------------------
    def predict(self, name: str, inputs: Sequence[TensorInput],
                handle: str = "") -> list[TensorOutput]:
        """Run a model on tensors as a client sent them.

        Missing tensor metadata is filled from the model's declared input at the same position.

        Returns:
            One output per model output, with actual shapes and C-contiguous host-order bytes.

        Raises:
            InvalidArgument: bad alias; ``TensorMismatch`` for a wrong tensor count, name, dtype,
                shape or byte length (the message names the tensor, what was sent and what the
                model expects).
            NotFound: model not loaded, or a shared memory segment does not exist.
            ResourceExhausted: out of memory during inference.
        """
        # The hot path: the registry validates the alias only when no model has it.
        model = self.registry.checkout(handle or name)
        try:
            feeds = self._feeds(model, inputs)
            results = self._run(model, feeds)
            outputs = [_output(spec, array) for spec, array in zip(model.info.outputs, results,
                                                                   strict=True)]
            rate = self._sampling.get(model.info.alias)
            if rate and self._random.random() < rate:
                self._sample(model, feeds, outputs)
        finally:
            self.registry.checkin(model)
        return outputs

    def predict_arrays(self, name: str, feeds: Mapping[str, np.ndarray],
                       handle: str = "") -> dict[str, np.ndarray]:
        """In-process convenience: numpy arrays in, output name -> numpy array out.

        Raises:
            The same errors as :meth:`predict`.
        """
        inputs = [TensorInput(name=key, data_type=data_type_from_numpy(array.dtype),
                              shape=tuple(array.shape),
                              data=np.ascontiguousarray(array).tobytes())
                  for key, array in feeds.items()]
        return {out.name: np.frombuffer(out.data, DATA_TYPES[out.data_type][1]).reshape(out.shape)
                for out in self.predict(name, inputs, handle)}

    def _run(self, model: LoadedModel, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        started = time.perf_counter()
        try:
            results = model.runtime.predict(feeds)
        except BaseException:
            model.stats.record(time.perf_counter() - started, ok=False)
            raise
        model.stats.record(time.perf_counter() - started, ok=True)
        return results

    def _feeds(self, model: LoadedModel, inputs: Sequence[TensorInput]) -> dict[str, np.ndarray]:
        specs = model.info.inputs
        if len(inputs) != len(specs):
            raise TensorMismatch(
                f"model {model.info.alias!r} takes {len(specs)} input tensor(s) "
                f"({_names(specs)}), got {len(inputs)}")
        feeds: dict[str, np.ndarray] = {}
        for position, tensor in enumerate(inputs):
            spec = self._input_spec(model, position, tensor)
            if spec.name in feeds:
                raise TensorMismatch(f"input tensor {spec.name!r} was sent twice")
            feeds[spec.name] = self._array(tensor, spec)
        return feeds

    @staticmethod
    def _input_spec(model: LoadedModel, position: int, tensor: TensorInput) -> TensorSpec:
        if tensor.name is None:
            return model.info.inputs[position]
        found = model.inputs_by_name.get(tensor.name)
        if found is None:
            raise TensorMismatch(
                f"model {model.info.alias!r} has no input tensor {tensor.name!r}; its inputs are "
                f"{_names(model.info.inputs)}")
        return found[1]

    def _array(self, tensor: TensorInput, spec: TensorSpec) -> np.ndarray:
        if tensor.data_type is not None and tensor.data_type != spec.data_type:
            sent = DATA_TYPES[tensor.data_type][0] if 0 <= tensor.data_type < len(DATA_TYPES) \
                else f"unknown dtype {tensor.data_type}"
            raise TensorMismatch(
                f"input tensor {spec.name!r}: sent dtype {sent}, the model expects "
                f"{spec.dtype_name}")
        dtype = spec.dtype
        shape = _check_shape(spec, tensor.shape, _sent_bytes(tensor), dtype.itemsize)
        if tensor.shared_memory is not None:
            return self.shared_memory.view(tensor.shared_memory, dtype, shape, spec.name)
        data = tensor.data if tensor.data is not None else b""
        expected = math.prod(shape) * dtype.itemsize
        if len(data) != expected:
            raise TensorMismatch(
                f"input tensor {spec.name!r}: sent {len(data)} bytes, shape {list(shape)} x "
                f"{spec.dtype_name} needs {expected} bytes")
        return np.frombuffer(data, dtype=dtype).reshape(shape)

    def _sample(self, model: LoadedModel, feeds: Mapping[str, np.ndarray],
                outputs: Sequence[TensorOutput]) -> None:
        # Sampling never fails a prediction: a full buffer or a missing pipeline is only logged.
        if self.capture is None:
            return
        request = CaptureRequest(
            capture_id=f"sample-{uuid.uuid4()}",
            model_alias=model.info.alias,
            model_version=model.info.version,
            inference_time_ns=time.time_ns(),
            input_tensors=tuple(
                CapturedTensor(name=key, data_type=data_type_from_numpy(array.dtype),
                               shape=tuple(array.shape), data=array.tobytes())
                for key, array in feeds.items()),
            output_tensors=tuple(
                CapturedTensor(name=out.name, data_type=out.data_type, shape=out.shape,
                               data=out.data) for out in outputs),
            sampled=True,
        )
        try:
            self.capture.submit(request)
        except EdgefleetError as error:
            log.debug("sampled capture of %r dropped: %s", model.info.alias, error.message)

    # -- capture ----------------------------------------------------------------------------------
    def capture_data(self, *, model_name: str, capture_id: str, inference_time_ns: int | None,
                     input_tensors: Sequence[TensorInput] = (),
                     output_tensors: Sequence[TensorInput] = (),
                     auxiliary_inputs: Sequence[AuxiliaryInput] = (),
                     auxiliary_outputs: Sequence[AuxiliaryInput] = (),
                     model_handle: str = "") -> None:
        """Validate one capture and hand it to the capture pipeline; returns at once.

        Args:
            inference_time_ns: nanoseconds since the Unix epoch; ``None`` means now.

        Raises:
            InvalidArgument: bad capture id, alias or tensor.
            NotFound: model not loaded.
            OutOfRange: the timestamp lies beyond the allowed clock skew in the future.
            AlreadyExists: the capture id is still known.
            ResourceExhausted: the capture buffer or spool is full.
            FailedPrecondition: capture is not configured, or the Cloud destination is
                unreachable and there is no local spool.
        """
        _check_capture_id(capture_id)
        alias = model_handle or model_name
        model = self.registry.get(alias)  # validates the alias only when nothing has it
        now_ns = time.time_ns()
        if inference_time_ns is None:
            inference_time_ns = now_ns
        if inference_time_ns < 0:
            raise OutOfRange(
                f"inference_timestamp lies before 1970-01-01 ({inference_time_ns / 1e9:.0f} s); "
                f"send the inference time in seconds since the Unix epoch")
        if inference_time_ns > now_ns + self._clock_skew_ns:
            ahead = (inference_time_ns - now_ns) / 1e9
            raise OutOfRange(
                f"inference_timestamp lies {ahead:.1f} s in the future (allowed: "
                f"{self.config.edgefleet_capture_clock_skew_seconds:g} s); check the device "
                f"clock")
        if self.capture is None:
            raise FailedPrecondition("capture is not enabled on this agent")
        info = model.info
        request = CaptureRequest(
            capture_id=capture_id,
            model_alias=alias,
            model_version=info.version,
            inference_time_ns=inference_time_ns,
            input_tensors=self._captured(input_tensors, info.inputs, "input"),
            output_tensors=self._captured(output_tensors, info.outputs, "output"),
            auxiliary_inputs=tuple(self._auxiliary(aux) for aux in auxiliary_inputs)
            if auxiliary_inputs else (),
            auxiliary_outputs=tuple(self._auxiliary(aux) for aux in auxiliary_outputs)
            if auxiliary_outputs else (),
        )
        self.capture.submit(request)

    def capture_status(self, capture_id: str) -> CaptureStatus:
        """The state of a capture: IN_PROGRESS, SUCCESS or FAILURE.

        Raises:
            InvalidArgument: empty capture id, or longer than ``MAX_CAPTURE_ID_LENGTH`` (no
                such id can have been captured).
            NotFound: unknown or expired capture id.
            FailedPrecondition: capture is not enabled.
        """
        if not capture_id:
            raise InvalidArgument("capture_id is empty: pass the id given to CaptureData")
        _check_capture_id(capture_id)
        if self.capture is None:
            raise FailedPrecondition("capture is not enabled on this agent")
        return self.capture.status(capture_id)

    def _captured(self, tensors: Sequence[TensorInput], declared: Sequence[TensorSpec],
                  kind: str) -> tuple[CapturedTensor, ...]:
        if not tensors:
            return ()
        captured = []
        for position, tensor in enumerate(tensors):
            name, data_type, shape = tensor.name, tensor.data_type, tensor.shape
            if name is None or data_type is None or shape is None:
                if position >= len(declared):
                    raise InvalidArgument(
                        f"captured {kind} tensor #{position} has no tensor_metadata and the "
                        f"model declares no {kind} at that position; send name, data_type and "
                        f"shape")
                fallback = declared[position]
                name = fallback.name if name is None else name
                data_type = fallback.data_type if data_type is None else data_type
                shape = fallback.shape if shape is None else shape
            label = name
            if not 0 <= data_type < len(DATA_TYPES):
                raise InvalidArgument(f"captured tensor {label!r}: unknown dtype {data_type}")
            if any(d < 0 for d in shape):
                raise InvalidArgument(
                    f"captured tensor {label!r}: shape {list(shape)} has a negative dimension; "
                    f"send the actual shape")
            dtype = DATA_TYPES[data_type][1]
            if tensor.shared_memory is not None:
                data = self.shared_memory.view(tensor.shared_memory, dtype, shape,
                                               name).tobytes()
            else:
                data = tensor.data or b""
                expected = math.prod(shape) * dtype.itemsize
                if len(data) != expected:
                    raise InvalidArgument(
                        f"captured tensor {label!r}: sent {len(data)} bytes, shape {list(shape)}"
                        f" x {DATA_TYPES[data_type][0]} needs {expected} bytes")
            captured.append(CapturedTensor(name=name, data_type=data_type, shape=shape,
                                           data=data))
        return tuple(captured)

    def _auxiliary(self, aux: AuxiliaryInput) -> CapturedAuxiliary:
        if aux.shared_memory is not None:
            ref = aux.shared_memory
            if not ref.size:
                raise InvalidArgument(
                    f"auxiliary data {aux.name!r} in shared memory needs `size` (bytes): it has "
                    f"no shape to derive it from")
            view = self.shared_memory.view(
                SharedMemoryRef(ref.segment_id, ref.offset, ref.size), np.dtype(np.uint8),
                (ref.size,), aux.name)
            return CapturedAuxiliary(name=aux.name, encoding=aux.encoding, data=view.tobytes())
        return CapturedAuxiliary(name=aux.name, encoding=aux.encoding, data=aux.data or b"")

    # -- lifecycle --------------------------------------------------------------------------------
    def close(self, timeout: float | None = 30.0) -> None:
        """Unload every model (waiting for predictions in flight) and detach shared memory."""
        self.registry.close(timeout)
        self.shared_memory.close()


def _names(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{spec.name} {spec.content_type()}" for spec in specs) or "none"


def _sent_bytes(tensor: TensorInput) -> int | None:
    if tensor.shared_memory is not None:
        return tensor.shared_memory.size or None
    return len(tensor.data) if tensor.data is not None else None


def _check_shape(spec: TensorSpec, shape: tuple[int, ...] | None, nbytes: int | None,
                 itemsize: int) -> tuple[int, ...]:
    if shape is None:
        if spec.is_static:
            return spec.shape
        # Without metadata, one dynamic dimension (typically the batch) follows from the
        # byte count; more than one cannot be told apart.
        known = math.prod(d for d in spec.shape if d >= 0) * itemsize
        if spec.shape.count(-1) == 1 and nbytes is not None and known and nbytes % known == 0:
            return tuple(nbytes // known if d < 0 else d for d in spec.shape)
        raise TensorMismatch(
            f"input tensor {spec.name!r} has no shape and the model's shape "
            f"{list(spec.shape)} cannot be derived from {nbytes} bytes; send tensor_metadata "
            f"with the shape")
    if len(shape) != len(spec.shape) or any(
            d < 0 or (want >= 0 and d != want) for d, want in zip(shape, spec.shape, strict=True)):
        raise TensorMismatch(
            f"input tensor {spec.name!r}: sent shape {list(shape)}, the model expects "
            f"{list(spec.shape)} (-1: any size)")
    return shape


def _check_capture_id(capture_id: str) -> None:
    """The one rule for capture ids, in CaptureData and GetCaptureDataStatus alike.

    Raises:
        InvalidArgument: empty, or longer than ``MAX_CAPTURE_ID_LENGTH`` characters.
    """
    if not capture_id or len(capture_id) > MAX_CAPTURE_ID_LENGTH:
        raise InvalidArgument(
            f"capture_id must be 1 to {MAX_CAPTURE_ID_LENGTH} characters, got "
            f"{len(capture_id)}")


def _output(spec: TensorSpec, array: np.ndarray) -> TensorOutput:
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    data_type = spec.data_type if array.dtype == spec.dtype else data_type_from_numpy(array.dtype)
    return TensorOutput(name=spec.name, data_type=data_type, shape=tuple(array.shape),
                        data=array.tobytes())
