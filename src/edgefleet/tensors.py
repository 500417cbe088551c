"""Tensor metadata shared by the agent, the package format and the control plane.

The wire enum ``DataType`` (UINT8=0, INT16=1, INT32=2, INT64=3, FLOAT16=4, FLOAT32=5, FLOAT64=6)
comes from the SageMaker Edge Manager agent API (shared/spec/agent-api.md). Tensor bytes on the
wire are a C-contiguous array in host byte order, i.e. what ``numpy.ndarray.tobytes()`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefleet.errors import InvalidArgument

#: Wire enum value -> (name, numpy dtype), in the order of the ``DataType`` enum.
DATA_TYPES: tuple[tuple[str, np.dtype[np.generic]], ...] = (
    ("UINT8", np.dtype(np.uint8)),
    ("INT16", np.dtype(np.int16)),
    ("INT32", np.dtype(np.int32)),
    ("INT64", np.dtype(np.int64)),
    ("FLOAT16", np.dtype(np.float16)),
    ("FLOAT32", np.dtype(np.float32)),
    ("FLOAT64", np.dtype(np.float64)),
)

_BY_NAME = {name: index for index, (name, _) in enumerate(DATA_TYPES)}
_BY_DTYPE = {dtype: index for index, (_, dtype) in enumerate(DATA_TYPES)}

#: ONNX type strings (as onnxruntime reports them) -> wire enum value.
ONNX_TYPES: dict[str, int] = {
    "tensor(uint8)": 0,
    "tensor(int16)": 1,
    "tensor(int32)": 2,
    "tensor(int64)": 3,
    "tensor(float16)": 4,
    "tensor(float)": 5,
    "tensor(double)": 6,
}


def data_type_from_name(name: str) -> int:
    """Return the wire enum value for a dtype name such as ``"FLOAT32"``.

    Raises:
        InvalidArgument: the name is not one of the seven wire dtypes.
    """
    try:
        return _BY_NAME[name.upper()]
    except KeyError:
        raise InvalidArgument(
            f"unknown dtype {name!r}; expected one of {', '.join(_BY_NAME)}"
        ) from None


def data_type_from_numpy(dtype: np.dtype[np.generic]) -> int:
    """Return the wire enum value for a numpy dtype (native byte order).

    Raises:
        InvalidArgument: numpy dtype has no wire equivalent (e.g. bool, uint16, complex).
    """
    try:
        return _BY_DTYPE[np.dtype(dtype).newbyteorder("=")]
    except KeyError:
        raise InvalidArgument(
            f"dtype {np.dtype(dtype)} has no wire equivalent; expected one of "
            f"{', '.join(_BY_NAME)}"
        ) from None


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, dtype and shape of a model input or output.

    Attributes:
        name: the tensor's name in the model graph.
        data_type: wire enum value (index into ``DATA_TYPES``).
        shape: dimensions; ``-1`` marks a dynamic dimension (e.g. the batch size).
    """

    name: str
    data_type: int
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype[np.generic]:
        """The numpy dtype of this tensor."""
        return DATA_TYPES[self.data_type][1]

    @property
    def dtype_name(self) -> str:
        """The wire dtype name, e.g. ``"FLOAT32"``."""
        return DATA_TYPES[self.data_type][0]

    @property
    def is_static(self) -> bool:
        """True when no dimension is dynamic."""
        return all(d >= 0 for d in self.shape)

    def to_dict(self) -> dict[str, object]:
        """JSON form used in package manifests: ``{"name", "dtype", "shape"}``."""
        return {"name": self.name, "dtype": self.dtype_name, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TensorSpec:
        """Parse the manifest form written by :meth:`to_dict`.

        Raises:
            InvalidArgument: a key is missing or has the wrong type.
        """
        try:
            name = data["name"]
            dtype = data["dtype"]
            shape = data["shape"]
        except KeyError as missing:
            raise InvalidArgument(f"tensor metadata lacks key {missing}") from None
        if not isinstance(name, str) or not isinstance(dtype, str) or not isinstance(shape, list):
            raise InvalidArgument(
                "tensor metadata must be {'name': str, 'dtype': str, 'shape': [int, ...]}"
            )
        if not all(isinstance(d, int) and d >= -1 for d in shape):
            raise InvalidArgument(f"tensor {name!r}: shape entries must be integers >= -1")
        return cls(name=name, data_type=data_type_from_name(dtype), shape=tuple(shape))

    def content_type(self, shape: tuple[int, ...] | None = None) -> str:
        """The capture record's ``observedContentType``, e.g. ``Tensor[FLOAT32; 1, 6, 10, 10]``."""
        dims = self.shape if shape is None else shape
        return f"Tensor[{self.dtype_name}; {', '.join(str(d) for d in dims)}]"
