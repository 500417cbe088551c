"""Sign the ONNX model into an edgefleet model package, as a fleet operator would.

Uses :mod:`edgefleet.package`: a demo root CA and signing certificate (``edgefleet keys init``),
then ``build_package`` writes ``<name>-<version>.tar.gz`` with the ``sagemaker_edge_manifest``
and its detached signature (docs/package-format.md). The agent trusts the root CA folder given
as ``sagemaker_edge_core_root_certs_path`` and refuses packages that do not chain to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgefleet.errors import EdgefleetError
from edgefleet.package import build_package, init_keys


class PackagingError(RuntimeError):
    """The package could not be built; the message says why."""


@dataclass(frozen=True)
class Package:
    """A built package.

    Attributes:
        path: the ``.tar.gz`` package, what LoadModel's ``url`` gets.
        root_certs: folder with the root CA certificate (PEM) the package chains to.
    """

    path: Path
    root_certs: Path


def build(model_path: Path, work_dir: Path, *, name: str, version: str) -> Package:
    """Create fresh demo keys under ``work_dir/keys`` and package ``model_path`` with them.

    Args:
        model_path: the ONNX file.
        work_dir: the demo's output folder; the package goes to ``work_dir/packages``.
        name: model name (the agent alias pattern ``^[a-zA-Z0-9](-*[a-zA-Z0-9])*$``).
        version: model version, e.g. ``"1.0"``.

    Raises:
        PackagingError: keys or package could not be written.
    """
    try:
        # Throwaway keys: a real fleet signs with its own PKI and keeps the root key offline.
        keys = init_keys(work_dir / "keys", force=True)
        path = build_package(model_path, name=name, version=version, key_path=keys.signing_key,
                             cert_path=keys.signing_cert, out_dir=work_dir / "packages")
    except (EdgefleetError, OSError) as error:
        raise PackagingError(f"cannot build the model package in {work_dir}: {error}") from error
    return Package(Path(path), keys.root_certs_dir)
