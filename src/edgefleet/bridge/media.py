"""Input files to tensors and output tensors to files, laid out per the model's metadata.

Inputs, chosen by the URL's suffix:

- ``.bmp``, ``.png``, ``.jpg``, ``.jpeg``: an image, decoded with Pillow, converted to the
  model input's channel count (1: grey ``L``, 3: ``RGB``, 4: ``RGBA``; ``-1``: RGB), resized
  (bilinear) to its height and width (a ``-1`` keeps the image's own) and laid out as NCHW, NHWC,
  CHW or HWC (:func:`image_layout`). Pixel values are 0-255; float inputs get them multiplied by
  ``scale`` (default 1: unscaled), integer inputs get them as they are.
- ``.npy``: one array (``numpy.load``, pickles refused); ``.npz``: one array per input, keyed by
  input name. An array whose dtype differs from the model's is cast when numpy calls the cast
  ``same_kind`` (float64 to float32, int64 to int32), else refused.
- anything else: raw C-contiguous bytes in the model input's dtype (host byte order, what
  ``ndarray.tobytes()`` gives: the agent wire format); one ``-1`` dimension is inferred from
  the byte count.

Outputs: ``.npy`` (``numpy.save``), ``.npz`` (every output in one file, keyed by tensor name),
or raw bytes for any other suffix. A model with several outputs writes ``.npy`` and raw outputs
to one file per tensor: ``<stem>-<tensor name><suffix>`` beside the URL given.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any, Literal

import numpy as np

from edgefleet.bridge.paths import DataUrl
from edgefleet.bridge.protocol import InvalidParams
from edgefleet.tensors import TensorSpec

IMAGE_SUFFIXES = frozenset({".bmp", ".png", ".jpg", ".jpeg"})
Layout = Literal["NCHW", "NHWC", "CHW", "HWC"]
LAYOUTS: tuple[Layout, ...] = ("NCHW", "NHWC", "CHW", "HWC")
#: Channel counts an image converts to, and Pillow's mode for each.
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
#: Largest image decoded, in pixels (Pillow's own default bomb limit is about 89 M).
MAX_IMAGE_PIXELS = 100_000_000


def decode_inputs(data: bytes, suffix: str, inputs: Sequence[TensorSpec], *, param: str,
                  layout: str | None = None, scale: float = 1.0) -> list[tuple[str, np.ndarray]]:
    """The model's input tensors from one input file.

    Args:
        data: the file's bytes.
        suffix: its lower-case suffix (``".png"``, ``".npy"``, ...), which picks the decoder.
        inputs: the model's input metadata (DescribeModel), in order.
        param: the request parameter the file came from, for errors.
        layout: image layout override (``"NCHW"``, ``"NHWC"``, ``"CHW"``, ``"HWC"``).
        scale: factor applied to 0-255 pixel values of float image inputs.

    Returns:
        ``(input name, C-contiguous array)`` per model input.

    Raises:
        InvalidParams: the file does not decode, or does not fit the model's inputs.
    """
    if suffix == ".npz":
        return _npz_inputs(data, inputs, param)
    if len(inputs) != 1:
        names = ", ".join(spec.name for spec in inputs)
        raise InvalidParams(param, f"the model takes {len(inputs)} inputs ({names}); give them "
                            "in one .npz file keyed by input name")
    spec = inputs[0]
    if suffix in IMAGE_SUFFIXES:
        array = image_array(data, spec, param=param, layout=layout, scale=scale)
    elif suffix == ".npy":
        array = _fit(_load_npy(data, param), spec, param)
    else:
        array = raw_array(data, spec, param)
    return [(spec.name, np.ascontiguousarray(array))]


def _load_npy(data: bytes, param: str) -> np.ndarray:
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:  # numpy raises ValueError, OSError, EOFError, ...
        raise InvalidParams(param, f"is not a readable .npy file ({error})") from None
    if not isinstance(loaded, np.ndarray):
        raise InvalidParams(param, "is not a .npy file (an .npz archive?)")
    return loaded


def _npz_inputs(data: bytes, inputs: Sequence[TensorSpec],
                param: str) -> list[tuple[str, np.ndarray]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as error:
        raise InvalidParams(param, f"is not a readable .npz file ({error})") from None
    if len(inputs) == 1 and len(arrays) == 1:
        arrays = {inputs[0].name: next(iter(arrays.values()))}
    missing = [spec.name for spec in inputs if spec.name not in arrays]
    if missing:
        raise InvalidParams(param, f"lacks arrays for inputs {', '.join(missing)} (it holds "
                            f"{', '.join(sorted(arrays)) or 'none'})")
    return [(spec.name, np.ascontiguousarray(_fit(arrays[spec.name], spec, param)))
            for spec in inputs]


def _fit(array: np.ndarray, spec: TensorSpec, param: str) -> np.ndarray:
    """``array`` in ``spec``'s dtype when the cast is ``same_kind``; shapes are the agent's to
    check (it answers INVALID_ARGUMENT naming the expected shape)."""
    if array.dtype == spec.dtype:
        return array
    if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
        raise InvalidParams(param, f"holds {array.dtype} data; input {spec.name!r} takes "
                            f"{spec.dtype_name} ({spec.dtype})")
    return array.astype(spec.dtype)


def raw_array(data: bytes, spec: TensorSpec, param: str) -> np.ndarray:
    """Raw tensor bytes as ``spec``'s dtype and shape (one ``-1`` inferred from the length).

    Raises:
        InvalidParams: the byte count does not fit the shape, or several dimensions are dynamic.
    """
    itemsize = spec.dtype.itemsize
    dynamic = [i for i, d in enumerate(spec.shape) if d < 0]
    known = int(np.prod([d for d in spec.shape if d >= 0], dtype=np.int64))
    if len(dynamic) > 1:
        raise InvalidParams(param, f"is raw bytes, but input {spec.name!r} has shape "
                            f"{list(spec.shape)} with several dynamic dimensions; send a .npy "
                            "file that carries its shape")
    expected = known * itemsize
    if len(data) % itemsize or (not dynamic and len(data) != expected) or (
            dynamic and (known == 0 or (len(data) // itemsize) % known)):
        unit = "per step of the dynamic dimension" if dynamic else "in all"
        raise InvalidParams(param, f"holds {len(data)} bytes, which is not a whole "
                            f"{spec.dtype_name} tensor of shape {list(spec.shape)} "
                            f"({expected} bytes {unit})")
    shape = [d if d >= 0 else len(data) // itemsize // known for d in spec.shape]
    return np.frombuffer(data, dtype=spec.dtype).reshape(shape)


def image_layout(shape: Sequence[int], layout: str | None = None) -> Layout:
    """The image layout of an input ``shape`` (rank 4 with batch, rank 3 without).

    Channels are last unless dimension 1 (after the batch) is a channel count (1, 3 or 4) and
    the last dimension is not: ``[1, 3, 224, 224]`` is NCHW, ``[1, 224, 224, 3]`` NHWC.

    Raises:
        InvalidParams: (``layout``) the shape is not rank 3 or 4, or ``layout`` is not one of
            :data:`LAYOUTS` or does not fit the rank.
    """
    rank = len(shape)
    if rank not in (3, 4):
        raise InvalidParams("input_data_url", f"is an image, but the model input has shape "
                            f"{list(shape)}; images fit rank-3 (CHW, HWC) or rank-4 (NCHW, "
                            "NHWC) inputs")
    if layout is not None:
        if layout not in LAYOUTS or len(layout) != rank:
            fitting = [name for name in LAYOUTS if len(name) == rank]
            raise InvalidParams("layout", f"must be one of {', '.join(fitting)} for input "
                                f"shape {list(shape)}")
        return layout
    first, last = shape[rank - 3], shape[-1]
    channels_first = first in _MODES and last not in _MODES
    if rank == 4:
        return "NCHW" if channels_first else "NHWC"
    return "CHW" if channels_first else "HWC"


def image_array(data: bytes, spec: TensorSpec, *, param: str, layout: str | None = None,
                scale: float = 1.0) -> np.ndarray:
    """Decode an image into ``spec``'s shape, layout and dtype (see the module docstring).

    Raises:
        InvalidParams: not a decodable image, too many pixels, or an input shape no image fits.
    """
    from PIL import Image

    chosen = image_layout(spec.shape, layout)
    dims = dict(zip(chosen, spec.shape, strict=True))
    if dims.get("N", 1) not in (1, -1):
        raise InvalidParams(param, f"is one image, but input {spec.name!r} takes a batch of "
                            f"{dims['N']}; send a .npy file")
    channels = 3 if dims["C"] < 0 else dims["C"]
    if channels not in _MODES:
        raise InvalidParams(param, f"is an image, but input {spec.name!r} has {channels} "
                            f"channels in layout {chosen}; images give 1, 3 or 4")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as opened:
                if opened.width * opened.height > MAX_IMAGE_PIXELS:
                    raise InvalidParams(param, f"is a {opened.width}x{opened.height} image, more "
                                        f"than {MAX_IMAGE_PIXELS} pixels")
                image = opened.convert(_MODES[channels])
        except InvalidParams:
            raise
        except Exception as error:  # Pillow raises many kinds on corrupt or unknown files
            raise InvalidParams(param, f"is not a decodable image ({type(error).__name__}: "
                                f"{error})") from None
    height = image.height if dims["H"] < 0 else dims["H"]
    width = image.width if dims["W"] < 0 else dims["W"]
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels: np.ndarray = np.asarray(image, dtype=np.uint8).reshape(height, width, channels)
    if "C" in chosen[:-1] and chosen[-1] != "C":
        pixels = pixels.transpose(2, 0, 1)
    array: np.ndarray[Any, Any] = (pixels.astype(spec.dtype) * spec.dtype.type(scale)
                                   if spec.dtype.kind == "f" else pixels.astype(spec.dtype))
    if len(chosen) == 4:
        array = array[np.newaxis]
    return np.ascontiguousarray(array)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def encode_outputs(outputs: Sequence[tuple[str, np.ndarray]],
                   url: DataUrl) -> list[tuple[DataUrl, bytes, list[str]]]:
    """The files to write for ``outputs`` given the requested ``url``.

    Returns:
        ``(url, bytes, names of the tensors in it)`` per file: one file for a single output or
        for ``.npz``, else one per tensor named ``<stem>-<tensor name><suffix>``.
    """
    suffix = url.suffix
    if suffix == ".npz":
        # The .npz format is a zip of one .npy member per array, named <key>.npy (numpy's
        # format docs); written directly so that any tensor name is a valid key.
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for name, array in outputs:
                archive.writestr(f"{name}.npy", _encode(array, ".npy"))
        return [(url, buffer.getvalue(), [name for name, _ in outputs])]
    if len(outputs) == 1:
        name, array = outputs[0]
        return [(url, _encode(array, suffix), [name])]
    stem = PurePosixPath(url.name).name.removesuffix(PurePosixPath(url.name).suffix)
    files: list[tuple[DataUrl, bytes, list[str]]] = []
    used: set[str] = set()
    for index, (name, array) in enumerate(outputs):
        part = _UNSAFE.sub("_", name).strip(".") or f"output{index}"
        if part in used:
            part = f"{part}-{index}"
        used.add(part)
        files.append((url.sibling(f"{stem}-{part}{PurePosixPath(url.name).suffix}"),
                      _encode(array, suffix), [name]))
    return files


def _encode(array: np.ndarray, suffix: str) -> bytes:
    if suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()
    return np.ascontiguousarray(array).tobytes()
