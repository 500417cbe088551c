"""Opening a package for loading: extraction, signature, chain and file checks in one call.

This is what the agent's LoadModel does with its ``url`` before it hands the model file to a
runtime. The checks, in order (docs/package-format.md, "Verification"):

1. an archive's manifest and signature are read into memory and checked first (steps 2 and 3),
   then only the files the manifest lists, at their listed sizes, are extracted safely into a
   fresh folder (:mod:`edgefleet.package.archive`), where every check runs again;
2. the signature must match the manifest's exact bytes (else ``TamperedPackage``);
3. the signing certificate must chain to a root certificate (else ``UntrustedSigner``);
4. the manifest must parse, name a framework this device runs (else ``UnsupportedModel``);
5. the folder must hold exactly the files the manifest lists, with their SHA-256 digests
   (else ``TamperedPackage`` naming the file).

:func:`read_baseline` reads a package's drift baseline (``baseline.json``) without extracting.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from edgefleet.drift import Baseline
from edgefleet.errors import (
    InvalidArgument,
    NotFound,
    PackageError,
    TamperedPackage,
    UnsignedPackage,
    UnsupportedModel,
    UntrustedSigner,
    echo,
)
from edgefleet.package.archive import DEFAULT_MAX_ARCHIVE_BYTES, extract_archive, read_members
from edgefleet.package.files import open_regular
from edgefleet.package.manifest import (
    MANIFEST_NAME,
    MAX_BASELINE_BYTES,
    MAX_MANIFEST_BYTES,
    MODEL_FILE,
    SIGNATURE_NAME,
    Manifest,
    check_baseline,
    file_sha256,
)
from edgefleet.package.signing import Signature
from edgefleet.runtimes import RUNTIMES

#: File name endings of package archives.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
#: Longest part of an archive's name kept in the names of the folders it extracts to, in bytes
#: (a file name holds at most 255; the rest is a prefix and a random suffix).
MAX_STEM_BYTES = 160

_ALLOW_UNSIGNED_HINT = ("set edgefleet_allow_unsigned_models to true in the agent config only "
                        "for development")


@dataclass(frozen=True, slots=True)
class OpenedPackage:
    """A package that passed every check, ready for a runtime.

    Attributes:
        directory: absolute path of the package folder.
        model_path: absolute path of the model file inside it.
        manifest: the parsed manifest; None for a bare folder holding only ``model.onnx``
            (accepted only when unsigned packages are allowed).
        signed: True when the signature was checked against trusted root certificates.
        signer: subject of the trusted signing certificate (RFC 4514), None when not ``signed``.
        extracted: True when :func:`open_package` extracted an archive into ``directory``; the
            caller owns that folder and removes it when the model is unloaded.
    """

    directory: Path
    model_path: Path
    manifest: Manifest | None
    signed: bool
    signer: str | None
    extracted: bool

    @property
    def model_name(self) -> str | None:
        """``metadata.model_name`` of the manifest, None for a bare folder."""
        return self.manifest.model_name if self.manifest else None

    @property
    def model_version(self) -> str | None:
        """``metadata.model_version`` of the manifest, None for a bare folder."""
        return self.manifest.model_version if self.manifest else None

    @property
    def framework(self) -> str:
        """The runtime for ``model_path``; ``"onnx"`` for a bare folder."""
        return self.manifest.framework if self.manifest else "onnx"


def open_package(url: Path, *, extract_root: Path, root_certs_path: Path | None,
                 allow_unsigned: bool = False,
                 max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES) -> OpenedPackage:
    """Check the package at ``url`` and return where its model file is.

    ``url`` is a package folder (what SageMaker's LoadModel took) or a ``.tar.gz``/``.tgz``
    archive. An archive is extracted into a temporary folder under ``extract_root``, checked,
    then renamed to a fresh ``<archive name>-<random hex>`` folder; on any error the temporary
    folder is removed, so no half-extracted or unchecked package is ever left behind.

    A present signature is always checked. Without ``allow_unsigned``, a package must be signed
    by a certificate chaining to a root in ``root_certs_path``. With it, unsigned packages and
    bare folders holding a ``model.onnx`` are accepted, and a signed package whose signature
    matches is accepted without a chain check when ``root_certs_path`` is None (``signed`` is
    then False). Listed files are checked against their digests in every case.

    Args:
        url: package folder or archive; relative paths resolve against the working directory.
        extract_root: folder for extracted archives (created if missing).
        root_certs_path: folder of trusted PEM root certificates, or None if not configured.
        allow_unsigned: accept packages without a (trusted) signature.
        max_archive_bytes: cap on an archive's total uncompressed size, in bytes.

    Raises:
        NotFound: nothing at ``url``.
        UnsignedPackage: no signature (or no manifest) and ``allow_unsigned`` is false.
        TamperedPackage: a file was changed, added or removed, or the signature does not match.
        UntrustedSigner: the signing certificate does not chain to a root (unknown CA, expired,
            not yet valid), or no root certificates are configured.
        UnsafeArchive: the archive holds something other than flat regular files, or is too big.
        UnsupportedModel: the framework has no runtime here, or the manifest is too new.
        PackageError: anything else that makes it not a package (corrupt archive, malformed
            manifest, ...); the message says what.
    """
    label = echo(str(url))  # what messages show of the url: a client may send any length
    try:
        exists = url.exists()
    except OSError as error:  # ENAMETOOLONG and the like: no such path can exist here
        raise InvalidArgument(f"url {label!r} is not a usable path: "
                              f"{error.strerror}") from None
    if not exists:
        raise NotFound(f"no model package at {label} (resolved against {Path.cwd()})")
    if url.is_dir():
        return _open_directory(url.resolve(), label=label, root_certs_path=root_certs_path,
                               allow_unsigned=allow_unsigned, extracted=False)
    if not url.is_file():  # a FIFO would block the reader for ever; extraction checks again
        raise PackageError(
            f"{label} is not a regular file (a FIFO, device or socket); pass a package folder "
            f"or a .tar.gz built with `edgefleet package build`")
    if not url.name.endswith(ARCHIVE_SUFFIXES):
        raise PackageError(
            f"{label} is a file but not a package archive; pass a package folder or a .tar.gz "
            f"built with `edgefleet package build`")
    # The folders' names add a prefix and a random suffix to the stem: keep them in the
    # 255-byte limit of a file name whatever the archive's own name.
    stem = url.name.removesuffix(".tgz").removesuffix(".tar.gz")
    stem = stem.encode()[:MAX_STEM_BYTES].decode(errors="ignore")
    extract_root.mkdir(parents=True, exist_ok=True)
    # Trust first: the manifest and the signature, read into memory and checked, say which
    # files may be extracted and how big each is; nothing unchecked reaches the disk.
    head = read_members(url, (MANIFEST_NAME, SIGNATURE_NAME), max_member_bytes=MAX_MANIFEST_BYTES,
                        max_bytes=max_archive_bytes)
    listed: dict[str, int] | None = None
    if MANIFEST_NAME in head:
        _check_trust(head[MANIFEST_NAME], head.get(SIGNATURE_NAME), label=label,
                     root_certs_path=root_certs_path, allow_unsigned=allow_unsigned)
        manifest = Manifest.from_json(head[MANIFEST_NAME])
        listed = {f.name: f.size for f in manifest.files}
        listed.update((name, len(data)) for name, data in head.items())
    elif SIGNATURE_NAME in head:
        raise TamperedPackage(
            f"{label} has a {SIGNATURE_NAME} but no {MANIFEST_NAME}: the manifest was "
            f"removed; get a fresh copy of the package")
    elif not allow_unsigned:
        raise UnsignedPackage(
            f"{label} has no {MANIFEST_NAME} and no {SIGNATURE_NAME}; package and sign the "
            f"model with `edgefleet package build`, or {_ALLOW_UNSIGNED_HINT}")
    partial = Path(tempfile.mkdtemp(prefix=f".{stem}-", suffix=".partial", dir=extract_root))
    try:
        extract_archive(url, partial, max_bytes=max_archive_bytes, listed=listed,
                        label=label)
        opened = _open_directory(partial.resolve(), label=label,
                                 root_certs_path=root_certs_path, allow_unsigned=allow_unsigned,
                                 extracted=True)
        directory = partial.resolve().with_name(f"{stem}-{uuid.uuid4().hex[:12]}")
        os.rename(partial, directory)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return replace(opened, directory=directory, model_path=directory / opened.model_path.name)


def _open_directory(directory: Path, *, label: str, root_certs_path: Path | None,
                    allow_unsigned: bool, extracted: bool) -> OpenedPackage:
    """Check a package folder; ``label`` names the package in messages (the path given)."""
    manifest_path = directory / MANIFEST_NAME
    signature_path = directory / SIGNATURE_NAME
    if not manifest_path.exists():
        if signature_path.exists():
            raise TamperedPackage(
                f"{label} has a {SIGNATURE_NAME} but no {MANIFEST_NAME}: the manifest was "
                f"removed; get a fresh copy of the package")
        return _open_bare(directory, label=label, allow_unsigned=allow_unsigned,
                          extracted=extracted)
    manifest_bytes = _read_small(manifest_path)
    signed, signer = _check_trust(
        manifest_bytes, _read_small(signature_path) if signature_path.exists() else None,
        label=label, root_certs_path=root_certs_path, allow_unsigned=allow_unsigned)
    manifest = Manifest.from_json(manifest_bytes)
    if manifest.framework.lower() not in RUNTIMES:
        raise UnsupportedModel(
            f"{label} holds a {manifest.framework!r} model; this device runs "
            f"{', '.join(sorted(RUNTIMES))} models: package an ONNX export of it")
    _check_files(directory, manifest, label=label, signed=signature_path.exists())
    return OpenedPackage(directory=directory, model_path=directory / manifest.model_file,
                         manifest=manifest, signed=signed, signer=signer, extracted=extracted)


def _check_trust(manifest: bytes, signature_file: bytes | None, *, label: str,
                 root_certs_path: Path | None, allow_unsigned: bool) -> tuple[bool, str | None]:
    """Check the signature over ``manifest`` and its signer: (signed, signer's subject).

    Raises:
        TamperedPackage: the signature file is damaged or does not match the manifest.
        UntrustedSigner: the signer does not chain to a root, or no roots are configured.
        UnsignedPackage: no signature and ``allow_unsigned`` is false.
    """
    if signature_file is None:
        if not allow_unsigned:
            raise UnsignedPackage(
                f"{label} has no {SIGNATURE_NAME}; sign it (`edgefleet package build --key "
                f"... --cert ...`), or {_ALLOW_UNSIGNED_HINT}")
        return False, None
    signature = Signature.from_json(signature_file)
    signature.check(manifest)
    if root_certs_path is not None:
        return True, signature.check_chain(root_certs_path)
    if not allow_unsigned:
        raise UntrustedSigner(
            f"{label} is signed by {signature.signer!r}, but no root certificates are "
            f"configured to check the signer against; set "
            f"sagemaker_edge_core_root_certs_path to a folder of PEM root certificates")
    return False, None


def _open_bare(directory: Path, *, label: str, allow_unsigned: bool,
               extracted: bool) -> OpenedPackage:
    model_path = directory / MODEL_FILE
    if not model_path.is_file():
        raise PackageError(
            f"{label} is not a model package: it has neither {MANIFEST_NAME} nor "
            f"{MODEL_FILE}; build one with `edgefleet package build`")
    if not allow_unsigned:
        raise UnsignedPackage(
            f"{label} holds a bare {MODEL_FILE} with no manifest and no signature; package "
            f"and sign it with `edgefleet package build`, or {_ALLOW_UNSIGNED_HINT}")
    return OpenedPackage(directory=directory, model_path=model_path, manifest=None,
                         signed=False, signer=None, extracted=extracted)


def _read_small(path: Path, limit: int = MAX_MANIFEST_BYTES) -> bytes:
    with open_regular(path) as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise PackageError(
            f"{path} is larger than {limit} bytes; it is not a package's {path.name}")
    return data


def _check_files(directory: Path, manifest: Manifest, *, label: str, signed: bool) -> None:
    since = "signing" if signed else "the manifest was written"
    advice = "get a fresh copy of the package, or rebuild it"
    listed = {f.name: f for f in manifest.files}
    present = {entry.name for entry in directory.iterdir()} - {MANIFEST_NAME, SIGNATURE_NAME}
    if added := sorted(present - listed.keys()):
        raise TamperedPackage(
            f"{label}: {_names(added)} added after {since} (not listed in the manifest); "
            f"delete what was added, or {advice}")
    if removed := sorted(listed.keys() - present):
        raise TamperedPackage(f"{label}: {_names(removed)} removed after {since}; {advice}")
    for name, listed_file in sorted(listed.items()):
        path = directory / name
        if path.is_symlink() or not path.is_file():
            raise TamperedPackage(
                f"{label}: {name!r} is not a regular file (a link or folder replaced it "
                f"after {since}); {advice}")
        if path.stat().st_size != listed_file.size or file_sha256(path) != listed_file.sha256:
            raise TamperedPackage(
                f"{label}: file {name!r} was changed after {since} (its size or SHA-256 "
                f"differs from the manifest's); {advice}")


def _names(names: list[str]) -> str:
    """``file 'a' was`` or ``files 'a', 'b' were``."""
    quoted = ", ".join(repr(name) for name in names)
    return f"file {quoted} was" if len(names) == 1 else f"files {quoted} were"


def read_unverified(directory: Path) -> tuple[Manifest, Signature | None]:
    """Parse a package folder's manifest and signature file without checking anything.

    For display only (``edgefleet package inspect``): nothing here says the package is intact
    or trusted; :func:`open_package` does.

    Raises:
        NotFound: the folder has no manifest.
        PackageError: the manifest is malformed (the message names the field).
        TamperedPackage: the signature file is damaged.
        UnsupportedModel: the manifest's format version is newer than this edgefleet reads.
    """
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        raise NotFound(
            f"{directory} has no {MANIFEST_NAME}, so it is not a model package; build one with "
            f"`edgefleet package build`")
    signature_path = directory / SIGNATURE_NAME
    signature = (Signature.from_json(_read_small(signature_path))
                 if signature_path.exists() else None)
    return Manifest.from_json(_read_small(manifest_path)), signature


def read_baseline(archive: Path, *,
                  max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES) -> Baseline | None:
    """The drift baseline of a package (the file its manifest's ``baseline`` names), or None
    when the package has none.

    Only the manifest and the baseline are read, each held to a size cap
    (:data:`~edgefleet.package.manifest.MAX_MANIFEST_BYTES`,
    :data:`~edgefleet.package.manifest.MAX_BASELINE_BYTES`); nothing is written to disk. The
    baseline must have the size and SHA-256 the manifest lists and fit the model's inputs. The
    signature is **not** checked here: :func:`open_package` does that before a package is
    trusted.

    Args:
        archive: a package archive (``.tar.gz``/``.tgz``) or the folder it extracts to.
        max_archive_bytes: cap on the archive's total uncompressed size, in bytes.

    Raises:
        NotFound: nothing at ``archive``.
        PackageError: not a package archive or folder, no manifest, a malformed manifest or
            baseline (the message names the field), or a baseline over its size cap or for
            an input the model does not have.
        TamperedPackage: the listed baseline is missing or differs from the manifest's size
            or SHA-256.
        UnsafeArchive: the archive breaks the extraction rules (:mod:`edgefleet.package.archive`).
        UnsupportedModel: the manifest's format version is newer than this edgefleet reads.
    """
    label = echo(str(archive))
    if not archive.exists():
        raise NotFound(f"no model package at {label}")
    if archive.is_dir():
        if not (archive / MANIFEST_NAME).is_file():
            raise PackageError(f"{label} has no {MANIFEST_NAME}, so it is not a model package; "
                               f"build one with `edgefleet package build`")
        manifest = Manifest.from_json(_read_small(archive / MANIFEST_NAME))
        if manifest.baseline is None:
            return None
        path = archive / manifest.baseline
        data = _read_small(path, MAX_BASELINE_BYTES) if path.exists() else None
    else:
        if not archive.name.endswith(ARCHIVE_SUFFIXES):
            raise PackageError(f"{label} is not a package archive (.tar.gz or .tgz) or folder")
        head = read_members(archive, (MANIFEST_NAME,), max_member_bytes=MAX_MANIFEST_BYTES,
                            max_bytes=max_archive_bytes)
        if MANIFEST_NAME not in head:
            raise PackageError(f"{label} has no {MANIFEST_NAME}, so it is not a model package; "
                               f"build one with `edgefleet package build`")
        manifest = Manifest.from_json(head[MANIFEST_NAME])
        if manifest.baseline is None:
            return None
        data = read_members(archive, (manifest.baseline,), max_member_bytes=MAX_BASELINE_BYTES,
                            max_bytes=max_archive_bytes).get(manifest.baseline)
    name = manifest.baseline
    if data is None:
        raise TamperedPackage(f"{label}: file {name!r} was removed after the manifest was "
                              f"written; get a fresh copy of the package, or rebuild it")
    listed = next(f for f in manifest.files if f.name == name)
    if len(data) != listed.size or hashlib.sha256(data).hexdigest() != listed.sha256:
        raise TamperedPackage(
            f"{label}: file {name!r} was changed after the manifest was written (its size or "
            f"SHA-256 differs from the manifest's); get a fresh copy of the package")
    try:
        return check_baseline(Baseline.from_json(data), manifest.inputs)
    except InvalidArgument as error:
        raise PackageError(f"{label}: {error.message}; rebuild the package") from None
