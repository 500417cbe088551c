"""Building a signed package from an ONNX model (``edgefleet package build``), optionally with
the drift baseline of one of its inputs (:mod:`edgefleet.drift`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from cryptography import x509

from edgefleet.drift import BASELINE_FILE, DEFAULT_BINS, Baseline, build_baseline
from edgefleet.errors import InvalidArgument, NotFound, ResourceExhausted
from edgefleet.package.archive import write_archive
from edgefleet.package.files import open_regular
from edgefleet.package.manifest import (
    MANIFEST_NAME,
    MAX_BASELINE_BYTES,
    MODEL_FILE,
    SIGNATURE_NAME,
    Manifest,
    PackageFile,
    check_baseline,
    check_model_name,
    check_model_version,
)
from edgefleet.package.signing import SigningKey, load_signing_identity, sign_manifest
from edgefleet.runtimes import RuntimeOptions, load_runtime
from edgefleet.tensors import TensorSpec


def build_package(model_path: Path, *, name: str, version: str, key_path: Path,
                  cert_path: Path, out_dir: Path, baseline: Baseline | None = None) -> Path:
    """Package, sign and write ``<out_dir>/<name>-<version>.tar.gz``.

    The model is loaded once with ONNX Runtime to read its input and output tensor metadata
    (dynamic dimensions become -1), which proves that the agent can load it too. The archive
    holds ``model.onnx``, the manifest, the signature and, with ``baseline``,
    ``baseline.json`` (docs/package-format.md); it is written to a temporary file and renamed,
    so readers never see a partial archive. An existing archive of the same name is replaced.

    Args:
        model_path: a single-file ONNX model.
        name: model name, the agent API's alias pattern ``^[a-zA-Z0-9](-*[a-zA-Z0-9])*$``.
        version: model version, :data:`~edgefleet.package.manifest.VERSION_PATTERN`.
        key_path: PEM private key (ECDSA P-256 or Ed25519, unencrypted).
        cert_path: PEM certificate of that key, then any intermediate CA certificates.
        out_dir: folder the archive goes to; created if missing.
        baseline: the drift baseline of one model input (:func:`edgefleet.drift.build_baseline`
            or :func:`baseline_from_file`), listed in the manifest and so covered by the
            signature.

    Returns:
        The archive's path.

    Raises:
        InvalidArgument: bad name or version, unusable key or certificate files, or a baseline
            that does not fit the model (see :func:`~edgefleet.package.manifest.check_baseline`)
            or is larger than :data:`~edgefleet.package.manifest.MAX_BASELINE_BYTES`.
        NotFound: the model, key or certificate file does not exist.
        UnsupportedModel: the file is not an ONNX model ONNX Runtime can load, or uses tensor
            dtypes the agent API cannot carry.
        ResourceExhausted: not enough memory to load the model.
    """
    key, chain = load_signing_identity(key_path, cert_path)
    return build_signed(model_path, name=name, version=version, key=key, chain=chain,
                        out_dir=out_dir, baseline=baseline)


def build_signed(model_path: Path, *, name: str, version: str, key: SigningKey,
                 chain: tuple[x509.Certificate, ...], out_dir: Path,
                 baseline: Baseline | None = None) -> Path:
    """:func:`build_package` with the signing key and certificate chain already in memory
    (the control plane keeps its key encrypted in the database, never in a file).

    Raises:
        The errors of :func:`build_package` but those about key and certificate files.
    """
    check_model_name(name)
    check_model_version(version)
    inputs, outputs = _tensors(model_path)
    files = [PackageFile.of(model_path, MODEL_FILE)]
    extra: dict[str, Path | bytes] = {}
    if baseline is not None:
        data = check_baseline(baseline, inputs).to_json()
        if len(data) > MAX_BASELINE_BYTES:
            raise InvalidArgument(
                f"the drift baseline takes {len(data)} bytes, more than the "
                f"{MAX_BASELINE_BYTES} a package's {BASELINE_FILE} may have; use fewer bins")
        files.insert(0, PackageFile(BASELINE_FILE, hashlib.sha256(data).hexdigest(), len(data)))
        extra[BASELINE_FILE] = data
    manifest = Manifest(
        model_name=name, model_version=version, framework="onnx", model_file=MODEL_FILE,
        inputs=inputs, outputs=outputs, files=tuple(files),
        baseline=BASELINE_FILE if baseline is not None else None)
    manifest_bytes = manifest.to_json()
    signature = sign_manifest(manifest_bytes, key, chain)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{name}-{version}.tar.gz"
    # Manifest and signature first: the loader checks them before it extracts the rest. The
    # baseline before the model, so that reading it does not decompress the model.
    write_archive(archive, {MANIFEST_NAME: manifest_bytes, SIGNATURE_NAME: signature.to_json(),
                            **extra, MODEL_FILE: model_path})
    return archive


def _tensors(model_path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) of the ONNX model at ``model_path``, loaded once with ONNX Runtime."""
    if not model_path.is_file():
        raise NotFound(f"model file {model_path} does not exist")
    runtime = load_runtime("onnx", model_path, RuntimeOptions())
    try:
        return runtime.inputs, runtime.outputs
    finally:
        runtime.unload()


def baseline_from_file(path: Path, model_path: Path, *, tensor: str | None = None,
                       bins: int = DEFAULT_BINS) -> Baseline:
    """The drift baseline that ``path`` gives, for :func:`build_package`.

    Args:
        path: by its suffix, either a ``.npy`` array of training inputs of one model input
            (``numpy.save``; first dimension the rows, the rest the features, any real dtype;
            pickled objects are refused) or a ready ``.json`` baseline
            (:meth:`edgefleet.drift.Baseline.to_json`, at most
            :data:`~edgefleet.package.manifest.MAX_BASELINE_BYTES`).
        model_path: the ONNX model; loaded only to find its only input when ``tensor`` is not
            given for a ``.npy``.
        tensor: the model input the training inputs are for (default: the model's only input);
            for a ``.json``, the tensor it must name.
        bins: quantile bins per feature for a ``.npy`` (2 to 100); a ``.json`` has its own.

    Raises:
        NotFound: ``path`` (or, when it is read, the model) does not exist.
        InvalidArgument: neither ``.npy`` nor ``.json``, not a readable array or baseline, the
            model has several inputs and ``tensor`` is not given, the ``.json`` is for another
            tensor, or :func:`edgefleet.drift.build_baseline` refuses the array (too few rows,
            too many features, bad ``bins``).
        UnsupportedModel: the model cannot be loaded to find its input.
        ResourceExhausted: not enough memory for the training inputs.
    """
    if not path.exists():
        raise NotFound(f"baseline file {path} does not exist; pass a .npy of training inputs "
                       f"(first dimension rows) or a {BASELINE_FILE}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        with open_regular(path) as file:
            data = file.read(MAX_BASELINE_BYTES + 1)
        if len(data) > MAX_BASELINE_BYTES:
            raise InvalidArgument(f"baseline file {path.name} is larger than "
                                  f"{MAX_BASELINE_BYTES} bytes; use fewer bins or features")
        baseline = Baseline.from_json(data)
        if tensor is not None and baseline.tensor != tensor:
            raise InvalidArgument(
                f"baseline file {path.name} is for input tensor {baseline.tensor!r}, not "
                f"{tensor!r}; name its own tensor or none")
        return baseline
    if suffix != ".npy":
        raise InvalidArgument(
            f"baseline file {path.name} is neither a .npy array of training inputs nor a "
            f"{BASELINE_FILE}; save the training inputs with numpy.save('inputs.npy', x)")
    if not path.is_file():
        raise InvalidArgument(f"baseline file {path} is not a regular file")
    try:
        # Mapped, not read: a header that claims more than the file holds fails here.
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InvalidArgument(
            f"baseline file {path.name} is not a readable .npy array ({error}); write it "
            f"with numpy.save, without pickled objects") from None
    if not isinstance(array, np.ndarray):  # np.load reads .npz archives whatever the suffix
        raise InvalidArgument(f"baseline file {path.name} is an .npz archive, not one array; "
                              f"save the training inputs with numpy.save")
    if tensor is None:
        inputs = _tensors(model_path)[0]
        if len(inputs) != 1:
            raise InvalidArgument(
                f"the model has inputs {', '.join(repr(s.name) for s in inputs)}: name the "
                f"one the training inputs are for (--baseline-tensor, or the form field "
                f"baseline_tensor)")
        tensor = inputs[0].name
    try:
        return build_baseline(array, tensor=tensor, bins=bins)
    except MemoryError:
        raise ResourceExhausted(
            f"not enough memory to read the training inputs in {path.name}; pass fewer "
            f"rows") from None
