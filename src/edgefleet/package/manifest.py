"""The package manifest: a JSON file named ``sagemaker_edge_manifest``.

The file name and its ``metadata`` object with ``model_name`` and ``model_version`` come from
SageMaker Edge Manager's packaging jobs (shared/spec/agent-api.md, "Model package"); edgefleet
adds the framework, the model's input and output tensor metadata, the SHA-256 digest of every
other file of the package and, optionally, the file holding the drift baseline of one input
(:mod:`edgefleet.drift`). docs/package-format.md documents every field with an example.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgefleet import jsondoc
from edgefleet.drift import Baseline
from edgefleet.errors import EdgefleetError, InvalidArgument, PackageError, UnsupportedModel
from edgefleet.names import check_alias
from edgefleet.package.files import open_regular
from edgefleet.tensors import TensorSpec

#: Name of the manifest file, as SageMaker Edge Manager named it.
MANIFEST_NAME = "sagemaker_edge_manifest"

#: Name of the detached signature file (covers the manifest's exact bytes).
SIGNATURE_NAME = "sagemaker_edge_signature"

#: Name of the model file in packages that ``build_package`` writes, and the file that a bare,
#: unsigned folder must hold.
MODEL_FILE = "model.onnx"

#: Manifest format written by this version of edgefleet; readers refuse newer ones. The
#: optional ``baseline`` field did not change it: readers of version 1 ignore fields they do not
#: know, and the baseline file is listed in ``files`` like any other.
FORMAT_VERSION = 1

#: Model versions: a letter or digit, then up to 63 letters, digits, dots, underscores, hyphens.
#: Chosen so that ``<name>-<version>.tar.gz`` is always a safe single file name.
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

#: Largest manifest read, in bytes; real manifests are a few kilobytes.
MAX_MANIFEST_BYTES = 1 << 20

#: Largest drift baseline file read or written, in bytes. 4096 features of 100 bins take about
#: 20 MB; 10 bins, the default, a tenth of that.
MAX_BASELINE_BYTES = 32 << 20

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")

_T = TypeVar("_T")

#: Python types of parsed JSON -> the JSON names used in error messages.
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "an integer",
               float: "a number", bool: "a boolean", type(None): "null"}


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a valid model name: the agent API's alias rule.

    Raises:
        InvalidArgument: see :func:`edgefleet.names.check_alias`.
    """
    return check_alias(name)


def check_model_version(version: str) -> str:
    """Return ``version`` if it matches :data:`VERSION_PATTERN` (e.g. ``1.4.0``, ``2024-06-01``).

    Raises:
        InvalidArgument: it does not.
    """
    if not VERSION_PATTERN.fullmatch(version):
        raise InvalidArgument(
            f"model version {version!r} is not valid: start with a letter or digit, then use "
            f"up to 63 letters, digits, dots, underscores or hyphens (e.g. 1.4.0)")
    return version


def check_file_name(name: str) -> str:
    """Return ``name`` if it can name a file of a flat package.

    Raises:
        InvalidArgument: empty, ``.`` or ``..``, contains a slash or NUL, or is one of the
            package's own file names (manifest, signature).
    """
    if name in ("", ".", "..", MANIFEST_NAME, SIGNATURE_NAME) or "/" in name or "\0" in name:
        raise InvalidArgument(
            f"{name!r} cannot name a file of a package: packages are flat, so use a plain file "
            f"name other than {MANIFEST_NAME} and {SIGNATURE_NAME}")
    return name


def file_sha256(path: Path) -> str:
    """Return the SHA-256 digest of the file at ``path`` as 64 lowercase hex characters.

    Raises:
        PackageError: ``path`` is not a regular file (a FIFO, device, socket or folder).
        OSError: the file cannot be read.
    """
    with open_regular(path) as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


@dataclass(frozen=True, slots=True)
class PackageFile:
    """One file of a package other than the manifest and the signature.

    Attributes:
        name: file name inside the flat package.
        sha256: SHA-256 digest of its content, 64 lowercase hex characters.
        size: its length in bytes.
    """

    name: str
    sha256: str
    size: int

    @classmethod
    def of(cls, path: Path, name: str | None = None) -> PackageFile:
        """Describe the file at ``path``, stored in the package as ``name`` (default: its own).

        Raises:
            InvalidArgument: ``name`` cannot name a file of a flat package.
            OSError: the file cannot be read.
        """
        return cls(name=check_file_name(name or path.name), sha256=file_sha256(path),
                   size=path.stat().st_size)


@dataclass(frozen=True, slots=True)
class Manifest:
    """The parsed ``sagemaker_edge_manifest`` of a package.

    Attributes:
        model_name: the model's name (``metadata.model_name``), an agent API alias.
        model_version: the model's version (``metadata.model_version``).
        framework: the runtime that runs ``model_file``; ``"onnx"`` for packages edgefleet
            builds.
        model_file: name of the model file among ``files``.
        inputs: the model's input tensors; dynamic dimensions are -1.
        outputs: the model's output tensors; dynamic dimensions are -1.
        files: every file of the package except the manifest and the signature, by name.
        baseline: name of the drift baseline file among ``files`` (``baseline.json``,
            :data:`edgefleet.drift.BASELINE_FILE`), None when the package has none.
    """

    model_name: str
    model_version: str
    framework: str
    model_file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    files: tuple[PackageFile, ...]
    baseline: str | None = None

    def to_json(self) -> bytes:
        """The manifest file's bytes: UTF-8 JSON, sorted keys, two-space indent, final newline;
        ``baseline`` only when there is one."""
        document: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "metadata": {"model_name": self.model_name, "model_version": self.model_version},
            "framework": self.framework,
            "model_file": self.model_file,
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
            "files": {f.name: {"sha256": f.sha256, "size": f.size} for f in self.files},
        }
        if self.baseline is not None:
            document["baseline"] = self.baseline
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse the manifest file's bytes.

        Raises:
            PackageError: not JSON, or a field is missing or has the wrong type or value; the
                message names the field.
            UnsupportedModel: ``format_version`` is newer than this edgefleet understands.
        """
        try:
            document = jsondoc.loads(data)
        except ValueError as error:
            raise PackageError(
                f"{MANIFEST_NAME} is not valid JSON ({error}); rebuild the package with "
                f"`edgefleet package build`") from None
        root = _Fields(document, MANIFEST_NAME)
        version = root.get("format_version", int)
        if version > FORMAT_VERSION or version < 1:
            raise UnsupportedModel(
                f"{MANIFEST_NAME} has format_version {version}; this edgefleet reads versions "
                f"1 to {FORMAT_VERSION}: upgrade edgefleet on this device")
        metadata = _Fields(root.get("metadata", dict), "metadata")
        files = _Fields(root.get("files", dict), "files")
        manifest = cls(
            model_name=metadata.checked("model_name", check_model_name),
            model_version=metadata.checked("model_version", check_model_version),
            framework=root.get("framework", str),
            model_file=root.checked("model_file", check_file_name),
            inputs=_tensors(root.get("inputs", list), "inputs"),
            outputs=_tensors(root.get("outputs", list), "outputs"),
            files=tuple(_package_file(name, files.get(name, dict))
                        for name in sorted(files.document)),
            baseline=(root.checked("baseline", check_file_name) if "baseline" in root.document
                      else None),
        )
        listed = {f.name for f in manifest.files}
        if manifest.model_file not in listed:
            raise PackageError(
                f"{MANIFEST_NAME}: model_file {manifest.model_file!r} is not listed in files; "
                f"rebuild the package")
        if manifest.baseline is not None and (manifest.baseline not in listed
                                              or manifest.baseline == manifest.model_file):
            raise PackageError(
                f"{MANIFEST_NAME}: baseline {manifest.baseline!r} is not listed in files (or is "
                f"the model file); rebuild the package")
        return manifest


def check_baseline(baseline: Baseline, inputs: Sequence[TensorSpec]) -> Baseline:
    """Return ``baseline`` if it fits one of the model's ``inputs``.

    The baseline's ``tensor`` must name an input, and its feature count must equal the product
    of that input's dimensions after the first (the rows) when they are all static; with a
    dynamic one (-1) the count cannot be checked before inference.

    Raises:
        InvalidArgument: no input of that name, or another feature count; the message names
            the model's inputs or the input's shape.
    """
    spec = next((s for s in inputs if s.name == baseline.tensor), None)
    if spec is None:
        names = ", ".join(repr(s.name) for s in inputs) or "none"
        raise InvalidArgument(
            f"the drift baseline is for input tensor {baseline.tensor!r}, but the model's "
            f"inputs are {names}; compute the baseline from training inputs of one of them")
    dims = spec.shape[1:]
    if all(d >= 0 for d in dims) and math.prod(dims) != len(baseline.features):
        raise InvalidArgument(
            f"the drift baseline has {len(baseline.features)} features per row, but input "
            f"{spec.name!r} of shape {list(spec.shape)} has {math.prod(dims)} (the product of "
            f"its dimensions after the first); compute it from training inputs of shape "
            f"[rows{''.join(f', {d}' for d in dims)}]")
    return baseline


class _Fields:
    """Typed access to one JSON object of the manifest; errors name the field's path."""

    def __init__(self, document: object, path: str) -> None:
        if not isinstance(document, dict):
            raise PackageError(
                f"{path} must be a JSON object, not {_JSON_TYPES.get(type(document), '?')}")
        self.document: dict[str, Any] = document
        self.path = path

    def get(self, key: str, kind: type[_T]) -> _T:
        """The value at ``key``, which must be of type ``kind`` (bool never counts as int)."""
        if key not in self.document:
            raise PackageError(f"{self.path}: field {key!r} is missing; rebuild the package")
        value = self.document[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise PackageError(
                f"{self.path}: field {key!r} must be {_JSON_TYPES[kind]}, not "
                f"{_JSON_TYPES.get(type(value), '?')}; rebuild the package")
        return value

    def checked(self, key: str, check: Callable[[str], str]) -> str:
        """The string at ``key`` after ``check`` (which raises InvalidArgument) accepts it."""
        try:
            return check(self.get(key, str))
        except InvalidArgument as error:
            raise PackageError(f"{self.path}: field {key!r}: {error.message}") from None


def _tensors(items: list[Any], field: str) -> tuple[TensorSpec, ...]:
    specs = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PackageError(f"{MANIFEST_NAME}: {field}[{index}] must be a JSON object")
        try:
            specs.append(TensorSpec.from_dict(item))
        except EdgefleetError as error:
            raise PackageError(f"{MANIFEST_NAME}: {field}[{index}]: {error.message}") from None
    return tuple(specs)


def _package_file(name: str, entry: dict[str, Any]) -> PackageFile:
    fields = _Fields(entry, f"files.{name}")
    try:
        check_file_name(name)
    except InvalidArgument as error:
        raise PackageError(f"{MANIFEST_NAME}: files: {error.message}") from None
    sha256 = fields.get("sha256", str)
    if not _SHA256_HEX.fullmatch(sha256):
        raise PackageError(
            f"{fields.path}: field 'sha256' must be 64 lowercase hex characters")
    size = fields.get("size", int)
    if size < 0:
        raise PackageError(f"{fields.path}: field 'size' must be >= 0")
    return PackageFile(name=name, sha256=sha256, size=size)
