"""Signed model packages, shared by the agent and the control plane.

A package is a flat ``<name>-<version>.tar.gz`` (or the folder it extracts to) holding the model
file, the JSON manifest ``sagemaker_edge_manifest`` and the detached signature
``sagemaker_edge_signature``; docs/package-format.md describes the format.

- :func:`build_package` writes a signed archive from an ONNX model;
- :func:`open_package` is what the agent's LoadModel calls: safe extraction, signature, chain and
  file checks, then the model file's path;
- :func:`init_keys` makes a root CA and a signing certificate for trying things out;
- ``edgefleet.package.cli`` holds the ``package`` and ``keys`` commands.

Modules: ``manifest`` (format, names, digests), ``signing`` (signature file, certificate chain),
``keys`` (test PKI), ``archive`` (write and safely extract), ``build``, ``loader``, ``cli``.
"""

from __future__ import annotations

from edgefleet.package.archive import DEFAULT_MAX_ARCHIVE_BYTES, extract_archive
from edgefleet.package.build import build_package
from edgefleet.package.keys import KeyFiles, init_keys
from edgefleet.package.loader import OpenedPackage, open_package, read_unverified
from edgefleet.package.manifest import (
    MANIFEST_NAME,
    MODEL_FILE,
    SIGNATURE_NAME,
    Manifest,
    PackageFile,
)
from edgefleet.package.signing import Signature

__all__ = [
    "DEFAULT_MAX_ARCHIVE_BYTES",
    "MANIFEST_NAME",
    "MODEL_FILE",
    "SIGNATURE_NAME",
    "KeyFiles",
    "Manifest",
    "OpenedPackage",
    "PackageFile",
    "Signature",
    "build_package",
    "extract_archive",
    "init_keys",
    "open_package",
    "read_unverified",
]
