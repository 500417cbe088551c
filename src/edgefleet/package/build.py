"""Building a signed package from an ONNX model (``edgefleet package build``)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from edgefleet.errors import NotFound
from edgefleet.package.archive import write_archive
from edgefleet.package.manifest import (
    MANIFEST_NAME,
    MODEL_FILE,
    SIGNATURE_NAME,
    Manifest,
    PackageFile,
    check_model_name,
    check_model_version,
)
from edgefleet.package.signing import SigningKey, load_signing_identity, sign_manifest
from edgefleet.runtimes import RuntimeOptions, load_runtime


def build_package(model_path: Path, *, name: str, version: str, key_path: Path,
                  cert_path: Path, out_dir: Path) -> Path:
    """Package, sign and write ``<out_dir>/<name>-<version>.tar.gz``.

    The model is loaded once with ONNX Runtime to read its input and output tensor metadata
    (dynamic dimensions become -1), which proves that the agent can load it too. The archive
    holds ``model.onnx``, the manifest and the signature (docs/package-format.md); it is
    written to a temporary file and renamed, so readers never see a partial archive. An
    existing archive of the same name is replaced.

    Args:
        model_path: a single-file ONNX model.
        name: model name, the agent API's alias pattern ``^[a-zA-Z0-9](-*[a-zA-Z0-9])*$``.
        version: model version, :data:`~edgefleet.package.manifest.VERSION_PATTERN`.
        key_path: PEM private key (ECDSA P-256 or Ed25519, unencrypted).
        cert_path: PEM certificate of that key, then any intermediate CA certificates.
        out_dir: folder the archive goes to; created if missing.

    Returns:
        The archive's path.

    Raises:
        InvalidArgument: bad name or version, or unusable key or certificate files.
        NotFound: the model, key or certificate file does not exist.
        UnsupportedModel: the file is not an ONNX model ONNX Runtime can load, or uses tensor
            dtypes the agent API cannot carry.
        ResourceExhausted: not enough memory to load the model.
    """
    key, chain = load_signing_identity(key_path, cert_path)
    return build_signed(model_path, name=name, version=version, key=key, chain=chain,
                        out_dir=out_dir)


def build_signed(model_path: Path, *, name: str, version: str, key: SigningKey,
                 chain: tuple[x509.Certificate, ...], out_dir: Path) -> Path:
    """:func:`build_package` with the signing key and certificate chain already in memory
    (the control plane keeps its key encrypted in the database, never in a file).

    Raises:
        The errors of :func:`build_package` but those about key and certificate files.
    """
    check_model_name(name)
    check_model_version(version)
    if not model_path.is_file():
        raise NotFound(f"model file {model_path} does not exist")
    runtime = load_runtime("onnx", model_path, RuntimeOptions())
    inputs, outputs = runtime.inputs, runtime.outputs
    runtime.unload()
    manifest = Manifest(
        model_name=name, model_version=version, framework="onnx", model_file=MODEL_FILE,
        inputs=inputs, outputs=outputs, files=(PackageFile.of(model_path, MODEL_FILE),))
    manifest_bytes = manifest.to_json()
    signature = sign_manifest(manifest_bytes, key, chain)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{name}-{version}.tar.gz"
    # Manifest and signature first: the loader checks them before it extracts the rest.
    write_archive(archive, {MANIFEST_NAME: manifest_bytes, SIGNATURE_NAME: signature.to_json(),
                            MODEL_FILE: model_path})
    return archive
