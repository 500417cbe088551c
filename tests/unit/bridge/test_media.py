"""Input files to tensors (images with Pillow, .npy, .npz, raw bytes) and outputs to files."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from edgefleet.bridge.media import decode_inputs, encode_outputs, image_layout, raw_array
from edgefleet.bridge.paths import DataUrl
from edgefleet.bridge.protocol import InvalidParams
from edgefleet.tensors import TensorSpec

FLOAT32, UINT8, INT32 = 5, 0, 2


def png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


#: A 4x6 RGB image whose pixel (y, x) is (y, x, 7).
PIXELS = np.stack([*np.meshgrid(np.arange(4), np.arange(6), indexing="ij"),
                   np.full((4, 6), 7)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize(("shape", "layout"), [
    ((1, 3, 224, 224), "NCHW"), ((1, 224, 224, 3), "NHWC"), ((-1, 3, -1, -1), "NCHW"),
    ((-1, -1, -1, 3), "NHWC"), ((3, 32, 32), "CHW"), ((32, 32, 1), "HWC"),
    ((1, 1, 28, 28), "NCHW"), ((1, 28, 28, 1), "NHWC"), ((1, 3, 4, 3), "NHWC")])
def test_layout_from_shape(shape: tuple[int, ...], layout: str) -> None:
    assert image_layout(shape) == layout


def test_layout_override_and_refusals() -> None:
    assert image_layout((1, 3, 4, 3), "NCHW") == "NCHW"
    with pytest.raises(InvalidParams, match="`layout`"):
        image_layout((1, 3, 4, 3), "CHW")
    with pytest.raises(InvalidParams, match="rank"):
        image_layout((1, 4))


def test_image_nchw_float_keeps_pixels() -> None:
    spec = TensorSpec("x", FLOAT32, (1, 3, 4, 6))
    [(name, array)] = decode_inputs(png(PIXELS), ".png", [spec], param="input_data_url")
    assert name == "x" and array.dtype == np.float32 and array.shape == (1, 3, 4, 6)
    np.testing.assert_array_equal(array[0], PIXELS.transpose(2, 0, 1).astype(np.float32))
    assert array.flags.c_contiguous


def test_image_nhwc_uint8_and_scale() -> None:
    [(_, array)] = decode_inputs(png(PIXELS), ".png", [TensorSpec("x", UINT8, (1, 4, 6, 3))],
                                 param="p")
    np.testing.assert_array_equal(array[0], PIXELS)
    [(_, scaled)] = decode_inputs(png(PIXELS), ".png",
                                  [TensorSpec("x", FLOAT32, (4, 6, 3))], param="p", scale=0.5)
    np.testing.assert_allclose(scaled, PIXELS / 2)


def test_image_is_resized_and_converted() -> None:
    grey = decode_inputs(png(PIXELS, "BMP"), ".bmp", [TensorSpec("x", FLOAT32, (1, 1, 8, 12))],
                         param="p")[0][1]
    assert grey.shape == (1, 1, 8, 12)
    own_size = decode_inputs(png(PIXELS, "JPEG"), ".jpg", [TensorSpec("x", UINT8,
                                                                      (-1, -1, -1, 4))],
                             param="p")[0][1]
    assert own_size.shape == (1, 4, 6, 4)


@pytest.mark.parametrize(("data", "shape", "match"), [
    (b"not an image", (1, 3, 4, 6), "not a decodable image"),
    (png(PIXELS)[:40], (1, 3, 4, 6), "not a decodable image"),
    (png(PIXELS), (2, 3, 4, 6), "batch of 2"),
    (png(PIXELS), (1, 5, 4, 6), "channels"),
    (png(PIXELS), (4, 6), "rank"),
])
def test_image_refusals(data: bytes, shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(InvalidParams, match=match):
        decode_inputs(data, ".png", [TensorSpec("x", FLOAT32, shape)], param="input_data_url")


def test_npy_is_cast_same_kind_only() -> None:
    spec = TensorSpec("x", FLOAT32, (-1, 4))
    [(_, array)] = decode_inputs(npy(np.ones((2, 4))), ".npy", [spec], param="p")
    assert array.dtype == np.float32
    with pytest.raises(InvalidParams, match="complex128"):
        decode_inputs(npy(np.ones((2, 4), complex)), ".npy", [spec], param="p")
    with pytest.raises(InvalidParams, match=r"\.npy"):
        decode_inputs(b"garbage", ".npy", [spec], param="p")
    with pytest.raises(InvalidParams, match=r"\.npy"):  # pickled objects are refused
        decode_inputs(npy(np.array([{"a": 1}], dtype=object)), ".npy", [spec], param="p")


def test_npz_inputs_by_name() -> None:
    specs = [TensorSpec("a", FLOAT32, (2, 3)), TensorSpec("b", INT32, (2, 3))]
    buffer = io.BytesIO()
    np.savez(buffer, b=np.zeros((2, 3), np.int32), a=np.ones((2, 3), np.float32))
    arrays = decode_inputs(buffer.getvalue(), ".npz", specs, param="p")
    assert [name for name, _ in arrays] == ["a", "b"]
    with pytest.raises(InvalidParams, match="takes 2 inputs"):
        decode_inputs(npy(np.ones((2, 3))), ".npy", specs, param="p")
    buffer = io.BytesIO()
    np.savez(buffer, a=np.ones((2, 3), np.float32))
    with pytest.raises(InvalidParams, match="lacks arrays for inputs b"):
        decode_inputs(buffer.getvalue(), ".npz", specs, param="p")


def test_raw_bytes() -> None:
    data = np.arange(8, dtype=np.float32).tobytes()
    np.testing.assert_array_equal(raw_array(data, TensorSpec("x", FLOAT32, (-1, 4)), "p"),
                                  np.arange(8, dtype=np.float32).reshape(2, 4))
    assert raw_array(data, TensorSpec("x", FLOAT32, (2, 4)), "p").shape == (2, 4)
    for bad, shape in ((data[:-1], (-1, 4)), (data[:16], (2, 4)), (data, (-1, 3)),
                       (data, (-1, -1))):
        with pytest.raises(InvalidParams, match="`input_data_url`"):
            raw_array(bad, TensorSpec("x", FLOAT32, shape), "input_data_url")


def test_encode_one_output() -> None:
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    [(url, data, names)] = encode_outputs([("y", y)], DataUrl("file", "out.npy"))
    assert url == DataUrl("file", "out.npy") and names == ["y"]
    np.testing.assert_array_equal(np.load(io.BytesIO(data)), y)
    [(_, raw, _)] = encode_outputs([("y", y)], DataUrl("file", "out.data"))
    assert raw == y.tobytes()


def test_encode_several_outputs() -> None:
    outputs = [("y", np.ones(2, np.float32)), ("out/0:1", np.zeros(3)), ("y", np.ones(1))]
    files = encode_outputs(outputs, DataUrl("s3", "r/pred.npy"))
    assert [str(url) for url, _, _ in files] == [
        "s3:///r/pred-y.npy", "s3:///r/pred-out_0_1.npy", "s3:///r/pred-y-2.npy"]
    [(url, data, names)] = encode_outputs(outputs[:2], DataUrl("file", "all.npz"))
    assert url == DataUrl("file", "all.npz")
    assert names == ["y", "out/0:1"]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["y.npy", "out/0:1.npy"]
    with np.load(io.BytesIO(data)) as loaded:
        np.testing.assert_array_equal(loaded["out/0:1"], np.zeros(3))
