"""Shared fixtures: a tiny real ONNX model, two independent key sets, a built package."""

from __future__ import annotations

import datetime as dt
import gzip
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from onnx import TensorProto, helper, numpy_helper

from edgefleet.package import KeyFiles, build_package, extract_archive, init_keys
from edgefleet.package.keys import issue_signing_certificate

#: (header, content) pairs; the header's size is written as given, even when it lies.
Members = Sequence[tuple[tarfile.TarInfo, bytes]]


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """y = x + [0, 1, 2, 3]; x and y are float32 [batch, 4] with a dynamic batch."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    bias = numpy_helper.from_array(np.arange(4, dtype=np.float32), "bias")
    graph = helper.make_graph([helper.make_node("Add", ["x", "bias"], ["y"])], "add", [x], [y],
                              [bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime the project supports
    path = tmp_path_factory.mktemp("model") / "add.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    """The trusted root and its signing certificate."""
    return init_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    """A second, unrelated root CA and signing certificate (untrusted by ``keys``' root)."""
    return init_keys(tmp_path_factory.mktemp("other-keys"))


@pytest.fixture
def archive(tmp_path: Path, model_path: Path, keys: KeyFiles) -> Path:
    """A freshly built, signed ``add-model-1.0.tar.gz``."""
    return build_package(model_path, name="add-model", version="1.0", key_path=keys.signing_key,
                         cert_path=keys.signing_cert, out_dir=tmp_path / "out")


@pytest.fixture
def package_dir(tmp_path: Path, archive: Path) -> Path:
    """The extracted folder of ``archive``."""
    directory = tmp_path / "package"
    directory.mkdir()
    extract_archive(archive, directory)
    return directory


@pytest.fixture
def signing_files(tmp_path: Path, keys: KeyFiles) -> Callable[..., tuple[Path, Path]]:
    """Issue a signing certificate under ``keys``' root, valid from ``start`` to ``end``.

    Returns (key path, certificate path).
    """
    root_key = serialization.load_pem_private_key(keys.root_key.read_bytes(), password=None)
    root_cert = x509.load_pem_x509_certificate(keys.root_cert.read_bytes())
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)

    def issue(start: dt.datetime, end: dt.datetime) -> tuple[Path, Path]:
        key, cert = issue_signing_certificate(
            root_key, root_cert, common_name="dated signer", not_before=start, not_after=end)
        key_path, cert_path = tmp_path / "dated.key", tmp_path / "dated.pem"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key_path, cert_path

    return issue


@pytest.fixture
def write_tar_gz(tmp_path: Path) -> Callable[[Members], Path]:
    """Write a hand-made ``.tar.gz`` (PAX headers) byte by byte, lying headers included."""

    def write(members: Members) -> Path:
        path = tmp_path / "crafted.tar.gz"
        with gzip.open(path, "wb") as out:
            for info, content in members:
                out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
                out.write(content + b"\0" * (-len(content) % tarfile.BLOCKSIZE))
            out.write(b"\0" * 2 * tarfile.BLOCKSIZE)
        return path

    return write

