"""Transport-free request and response types of
:class:`~edgefleet.agent.serving.service.AgentService`.

The gRPC and JSON-RPC adapters convert their messages to and from these; nothing here knows about
protobuf. Field meanings follow shared/spec/agent-api.md. The captured values
(``CaptureRequest`` and its tensors and auxiliary data) live with the capture record format in
:mod:`edgefleet.wire.capture`, which the control plane reads too; they are re-exported here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edgefleet.tensors import TensorSpec
from edgefleet.wire.capture import AuxiliaryEncoding as AuxiliaryEncoding
from edgefleet.wire.capture import CapturedAuxiliary as CapturedAuxiliary
from edgefleet.wire.capture import CapturedTensor as CapturedTensor
from edgefleet.wire.capture import CaptureRequest as CaptureRequest


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
