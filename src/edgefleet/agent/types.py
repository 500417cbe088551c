"""Transport-free request and response types of
:class:`~edgefleet.agent.serving.service.AgentService`.

The gRPC and JSON-RPC adapters convert their messages to and from these; nothing here knows about
protobuf. Field meanings follow shared/spec/agent-api.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from edgefleet.tensors import TensorSpec


@dataclass(frozen=True, slots=True)
class SharedMemoryRef:
    """A tensor's bytes in a System V shared memory segment.

    Attributes:
        segment_id: the id ``shmget`` returned.
        offset: byte offset of the tensor in the segment.
        size: byte count; 0 means "shape x dtype size" (what clients usually send).
    """

    segment_id: int
    offset: int = 0
    size: int = 0


@dataclass(frozen=True, slots=True)
class TensorInput:
    """A tensor as a client sent it: metadata may be missing, bytes inline or in shared memory.

    Attributes:
        name: tensor name, or ``None`` when the client sent no metadata (then the model's
            declared input at the same position applies).
        data_type: wire dtype enum value (see ``edgefleet.tensors.DATA_TYPES``) or ``None``.
        shape: dimensions as sent, or ``None``.
        data: C-contiguous bytes in host byte order, when sent inline (``byte_data``).
        shared_memory: where the bytes are, when sent in shared memory.
    """

    name: str | None
    data_type: int | None
    shape: tuple[int, ...] | None
    data: bytes | None = None
    shared_memory: SharedMemoryRef | None = None


@dataclass(frozen=True, slots=True)
class TensorOutput:
    """A result tensor: full metadata and C-contiguous bytes in host byte order.

    Attributes:
        name: output name from the model.
        data_type: wire dtype enum value.
        shape: actual dimensions (no -1).
        data: ``shape`` x dtype size bytes.
    """

    name: str
    data_type: int
    shape: tuple[int, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What ListModels and DescribeModel tell about a loaded model.

    Attributes:
        alias: the name the model was loaded under (``name`` and ``handle`` on the wire).
        url: the package path LoadModel was given.
        version: the package's model version ("" for an unversioned bare model).
        inputs, outputs: declared tensor metadata; dynamic dimensions are -1.
    """

    alias: str
    url: str
    version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


class AuxiliaryEncoding(enum.IntEnum):
    """Encoding of auxiliary capture data; wire values from the spec's ``Encoding`` enum."""

    CSV = 0
    JSON = 1
    NONE = 2
    BASE64 = 3


@dataclass(frozen=True, slots=True)
class AuxiliaryInput:
    """Auxiliary capture data as a client sent it (bytes inline or in shared memory)."""

    name: str
    encoding: AuxiliaryEncoding
    data: bytes | None = None
    shared_memory: SharedMemoryRef | None = None


class CaptureStatus(enum.IntEnum):
    """State of one capture; wire values from the spec's ``CaptureDataStatus`` enum."""

    FAILURE = 0
    SUCCESS = 1
    IN_PROGRESS = 2
    NOT_FOUND = 3


@dataclass(frozen=True, slots=True)
class CapturedTensor:
    """A tensor captured by value (shared memory already copied out).

    Attributes:
        name: tensor name.
        data_type: wire dtype enum value.
        shape: dimensions.
        data: C-contiguous bytes in host byte order.
    """

    name: str
    data_type: int
    shape: tuple[int, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class CapturedAuxiliary:
    """Auxiliary data captured by value."""

    name: str
    encoding: AuxiliaryEncoding
    data: bytes


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    """One validated capture, ready for the capture pipeline.

    Attributes:
        capture_id: the client's id (non-empty, at most 256 chars).
        model_alias: the loaded model's alias.
        model_version: that model's package version.
        inference_time_ns: inference time, nanoseconds since the Unix epoch (UTC).
        input_tensors, output_tensors: captured tensors.
        auxiliary_inputs, auxiliary_outputs: captured auxiliary data.
        sampled: True when the agent captured a Predict call by itself (sampling), False when
            the client called CaptureData.
    """

    capture_id: str
    model_alias: str
    model_version: str
    inference_time_ns: int
    input_tensors: tuple[CapturedTensor, ...] = ()
    output_tensors: tuple[CapturedTensor, ...] = ()
    auxiliary_inputs: tuple[CapturedAuxiliary, ...] = ()
    auxiliary_outputs: tuple[CapturedAuxiliary, ...] = field(default=())
    sampled: bool = False
