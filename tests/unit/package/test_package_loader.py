"""open_package: what LoadModel accepts and, with a reason a person can act on, refuses."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgefleet.agent.config import AgentConfig
from edgefleet.agent.serving.service import AgentService
from edgefleet.drift import BASELINE_FILE, Baseline, build_baseline
from edgefleet.errors import (
    InvalidArgument,
    NotFound,
    PackageError,
    TamperedPackage,
    UnsignedPackage,
    UnsupportedModel,
    UntrustedSigner,
)
from edgefleet.package import (
    MANIFEST_NAME,
    MODEL_FILE,
    SIGNATURE_NAME,
    KeyFiles,
    Manifest,
    build_package,
    extract_archive,
    open_package,
)
from edgefleet.package.archive import write_archive
from edgefleet.package.files import open_regular
from edgefleet.package.loader import read_baseline
from edgefleet.package.manifest import MAX_BASELINE_BYTES
from edgefleet.package.signing import load_signing_identity, sign_manifest

Issue = Callable[[dt.datetime, dt.datetime], tuple[Path, Path]]


def test_archive_round_trip(tmp_path: Path, archive: Path, keys: KeyFiles) -> None:
    root = tmp_path / "extracted"

    opened = open_package(archive, extract_root=root, root_certs_path=keys.root_certs_dir)

    assert opened.signed and opened.extracted
    assert opened.signer == "CN=edgefleet package signer,O=edgefleet"
    assert (opened.model_name, opened.model_version, opened.framework) == (
        "add-model", "1.0", "onnx")
    assert opened.directory.parent == root.resolve()
    assert opened.directory.name.startswith("add-model-1.0-")
    assert opened.model_path == opened.directory / MODEL_FILE
    assert opened.model_path.is_file()
    assert [p.name for p in root.iterdir()] == [opened.directory.name]  # no partial folder


def test_each_archive_gets_its_own_folder(tmp_path: Path, archive: Path, keys: KeyFiles) -> None:
    first, second = (open_package(archive, extract_root=tmp_path / "x",
                                  root_certs_path=keys.root_certs_dir) for _ in range(2))

    assert first.directory != second.directory


def test_directory_round_trip(package_dir: Path, keys: KeyFiles, tmp_path: Path) -> None:
    opened = open_package(package_dir, extract_root=tmp_path / "unused",
                          root_certs_path=keys.root_certs_dir)

    assert opened.signed and not opened.extracted
    assert opened.directory == package_dir.resolve()
    assert opened.manifest is not None
    assert opened.manifest.inputs[0].shape == (-1, 4)
    assert not (tmp_path / "unused").exists()


def test_missing_path_is_not_found(tmp_path: Path, keys: KeyFiles) -> None:
    with pytest.raises(NotFound, match="no model package at"):
        open_package(tmp_path / "nope", extract_root=tmp_path, root_certs_path=keys.root_certs_dir)


def test_a_url_beyond_the_file_name_limit_is_invalid_argument(tmp_path: Path,
                                                               keys: KeyFiles) -> None:
    with pytest.raises(InvalidArgument, match="not a usable path") as caught:
        open_package(tmp_path / ("p" * 5000 + ".tar.gz"), extract_root=tmp_path,
                     root_certs_path=keys.root_certs_dir)
    assert len(caught.value.message) < 500  # the url is cut, not echoed whole


def test_an_archive_with_a_245_character_name_loads(tmp_path: Path, archive: Path,
                                                    keys: KeyFiles) -> None:
    long_name = tmp_path / ("a" * 238 + ".tar.gz")  # 245 characters
    shutil.copy(archive, long_name)
    opened = open_package(long_name, extract_root=tmp_path / "x",
                          root_certs_path=keys.root_certs_dir)
    assert opened.model_path.is_file()
    assert len(opened.directory.name.encode()) <= 255


def test_other_file_is_refused(tmp_path: Path, model_path: Path, keys: KeyFiles) -> None:
    with pytest.raises(PackageError, match="not a package archive"):
        open_package(model_path, extract_root=tmp_path, root_certs_path=keys.root_certs_dir)


def tamper_change(directory: Path) -> str:
    with (directory / MODEL_FILE).open("ab") as model:
        model.write(b"\0")
    return f"file '{MODEL_FILE}' was changed"


def tamper_same_size(directory: Path) -> str:
    model = directory / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[-1] ^= 1
    model.write_bytes(bytes(data))
    return f"file '{MODEL_FILE}' was changed"


def tamper_add(directory: Path) -> str:
    (directory / "extra.py").write_text("import os")
    return "file 'extra.py' was added"


def tamper_remove(directory: Path) -> str:
    (directory / MODEL_FILE).unlink()
    return f"file '{MODEL_FILE}' was removed"


def tamper_replace_with_link(directory: Path) -> str:
    model = directory / MODEL_FILE
    real = directory.parent / "elsewhere.onnx"
    model.rename(real)
    model.symlink_to(real)
    return "not a regular file"


def tamper_manifest(directory: Path) -> str:
    manifest = json.loads((directory / MANIFEST_NAME).read_bytes())
    manifest["metadata"]["model_version"] = "2.0"
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    return "signature does not match the manifest"


def tamper_manifest_removed(directory: Path) -> str:
    (directory / MANIFEST_NAME).unlink()
    return "the manifest was removed"


def tamper_signature_bytes(directory: Path) -> str:
    signature = json.loads((directory / SIGNATURE_NAME).read_bytes())
    value = bytearray(base64.b64decode(signature["signature"]))
    value[-1] ^= 1  # still valid DER, now the wrong number
    signature["signature"] = base64.b64encode(value).decode()
    (directory / SIGNATURE_NAME).write_text(json.dumps(signature))
    return "signature does not match"


def tamper_signature_garbage(directory: Path) -> str:
    (directory / SIGNATURE_NAME).write_bytes(b"\x00garbage")
    return f"{SIGNATURE_NAME} is damaged"


def tamper_signature_nested(directory: Path) -> str:
    # Deep enough for Python's json module to run out of stack (RecursionError), small
    # enough for the 1 MiB file limit: a signature is read before any trust check.
    (directory / SIGNATURE_NAME).write_bytes(b"[" * 100_000 + b"]" * 100_000)
    return f"{SIGNATURE_NAME} is damaged"


@pytest.mark.parametrize("tamper", [
    tamper_change, tamper_same_size, tamper_add, tamper_remove, tamper_replace_with_link,
    tamper_manifest, tamper_manifest_removed, tamper_signature_bytes, tamper_signature_garbage,
    tamper_signature_nested,
])
def test_tampered_package_is_refused(
        package_dir: Path, keys: KeyFiles, tmp_path: Path,
        tamper: Callable[[Path], str]) -> None:
    expected = tamper(package_dir)

    for allow_unsigned in (False, True):  # tampering is refused even in development mode
        with pytest.raises(TamperedPackage, match=expected):
            open_package(package_dir, extract_root=tmp_path, root_certs_path=keys.root_certs_dir,
                         allow_unsigned=allow_unsigned)


def test_unsigned_package(package_dir: Path, keys: KeyFiles, tmp_path: Path) -> None:
    (package_dir / SIGNATURE_NAME).unlink()

    with pytest.raises(UnsignedPackage, match="edgefleet_allow_unsigned_models"):
        open_package(package_dir, extract_root=tmp_path, root_certs_path=keys.root_certs_dir)
    opened = open_package(package_dir, extract_root=tmp_path,
                          root_certs_path=keys.root_certs_dir, allow_unsigned=True)

    assert not opened.signed and opened.signer is None
    assert opened.model_name == "add-model"


def test_unsigned_package_is_still_checked_for_changed_files(
        package_dir: Path, tmp_path: Path) -> None:
    (package_dir / SIGNATURE_NAME).unlink()
    tamper_change(package_dir)

    with pytest.raises(TamperedPackage, match="changed after the manifest was written"):
        open_package(package_dir, extract_root=tmp_path, root_certs_path=None,
                     allow_unsigned=True)


def test_bare_model_folder(tmp_path: Path, model_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(model_path, bare / MODEL_FILE)

    with pytest.raises(UnsignedPackage, match=r"bare model.onnx"):
        open_package(bare, extract_root=tmp_path, root_certs_path=None)
    opened = open_package(bare, extract_root=tmp_path, root_certs_path=None, allow_unsigned=True)

    assert opened.manifest is None and not opened.signed
    assert opened.model_path == bare.resolve() / MODEL_FILE
    assert (opened.model_name, opened.framework) == (None, "onnx")


def test_empty_folder_is_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"neither sagemaker_edge_manifest nor model.onnx"):
        open_package(tmp_path, extract_root=tmp_path, root_certs_path=None, allow_unsigned=True)


def test_untrusted_signer(archive: Path, other_keys: KeyFiles, tmp_path: Path) -> None:
    root = tmp_path / "extracted"

    with pytest.raises(UntrustedSigner, match="not trusted by the root certificates"):
        open_package(archive, extract_root=root, root_certs_path=other_keys.root_certs_dir)

    assert list(root.iterdir()) == []


def test_signed_package_without_configured_roots(
        package_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UntrustedSigner, match="sagemaker_edge_core_root_certs_path"):
        open_package(package_dir, extract_root=tmp_path, root_certs_path=None)
    opened = open_package(package_dir, extract_root=tmp_path, root_certs_path=None,
                          allow_unsigned=True)

    assert not opened.signed and opened.signer is None


@pytest.mark.parametrize(("start", "end"), [
    (dt.timedelta(days=-30), dt.timedelta(days=-1)),
    (dt.timedelta(days=1), dt.timedelta(days=30)),
], ids=["expired", "not-yet-valid"])
def test_certificate_outside_its_validity(
        tmp_path: Path, model_path: Path, keys: KeyFiles, signing_files: Issue,
        start: dt.timedelta, end: dt.timedelta) -> None:
    now = dt.datetime.now(dt.UTC)
    key_path, cert_path = signing_files(now + start, now + end)
    archive = build_package(model_path, name="add-model", version="1", key_path=key_path,
                            cert_path=cert_path, out_dir=tmp_path)

    with pytest.raises(UntrustedSigner, match="not valid at validation time"):
        open_package(archive, extract_root=tmp_path / "x", root_certs_path=keys.root_certs_dir)


@pytest.mark.parametrize(("content", "error"), [
    (b"", "does not exist"),
    (b"not a certificate", "not PEM"),
])
def test_bad_root_folder(package_dir: Path, tmp_path: Path, content: bytes, error: str) -> None:
    roots = tmp_path / "roots"
    if content:
        roots.mkdir()
        (roots / "bad.pem").write_bytes(content)

    with pytest.raises(UntrustedSigner, match=error):
        open_package(package_dir, extract_root=tmp_path, root_certs_path=roots)


def resign(directory: Path, keys: KeyFiles, document: dict[str, object]) -> None:
    """Replace the manifest with ``document`` and sign it with the trusted key."""
    manifest = (json.dumps(document) + "\n").encode()
    (directory / MANIFEST_NAME).write_bytes(manifest)
    key, chain = load_signing_identity(keys.signing_key, keys.signing_cert)
    (directory / SIGNATURE_NAME).write_bytes(sign_manifest(manifest, key, chain).to_json())


def test_non_onnx_framework_is_unsupported(
        package_dir: Path, keys: KeyFiles, tmp_path: Path) -> None:
    document = json.loads((package_dir / MANIFEST_NAME).read_bytes())
    document["framework"] = "tflite"
    resign(package_dir, keys, document)

    with pytest.raises(UnsupportedModel, match="'tflite' model"):
        open_package(package_dir, extract_root=tmp_path, root_certs_path=keys.root_certs_dir)


def test_signed_but_malformed_manifest_names_the_field(
        package_dir: Path, keys: KeyFiles, tmp_path: Path) -> None:
    document = json.loads((package_dir / MANIFEST_NAME).read_bytes())
    document["inputs"][0]["dtype"] = "COMPLEX64"
    resign(package_dir, keys, document)

    with pytest.raises(PackageError, match=r"inputs\[0\]: unknown dtype 'COMPLEX64'"):
        open_package(package_dir, extract_root=tmp_path, root_certs_path=keys.root_certs_dir)


@pytest.mark.parametrize(("manifest", "error"), [
    (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    (b'{"format_version": ' + b"7" * 5000 + b"}", "integer of more than"),
])
def test_pathological_manifest_json_is_a_package_error(
        package_dir: Path, keys: KeyFiles, tmp_path: Path, manifest: bytes, error: str) -> None:
    (package_dir / MANIFEST_NAME).write_bytes(manifest)
    key, chain = load_signing_identity(keys.signing_key, keys.signing_cert)
    (package_dir / SIGNATURE_NAME).write_bytes(sign_manifest(manifest, key, chain).to_json())

    with pytest.raises(PackageError, match=f"{MANIFEST_NAME} is not valid JSON.*{error}"):
        open_package(package_dir, extract_root=tmp_path, root_certs_path=keys.root_certs_dir)


def test_manifest_matches_built_package(package_dir: Path) -> None:
    manifest = Manifest.from_json((package_dir / MANIFEST_NAME).read_bytes())

    assert manifest.model_file == MODEL_FILE
    assert [f.name for f in manifest.files] == [MODEL_FILE]
    assert sorted(p.name for p in package_dir.iterdir()) == sorted(
        [MODEL_FILE, MANIFEST_NAME, SIGNATURE_NAME])


def test_tampered_archive_is_named_and_leaves_nothing_behind(
        tmp_path: Path, package_dir: Path, keys: KeyFiles) -> None:
    files: dict[str, Path | bytes] = {p.name: p for p in sorted(package_dir.iterdir())}
    files["extra.py"] = b"import os"
    tampered = tmp_path / "tampered.tar.gz"
    write_archive(tampered, files)
    root = tmp_path / "extracted"

    with pytest.raises(TamperedPackage) as caught:
        open_package(tampered, extract_root=root, root_certs_path=keys.root_certs_dir)

    assert caught.value.message.startswith(f"{tampered}: file 'extra.py' was added after signing")
    assert list(root.iterdir()) == []


def _opened_within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` on a daemon thread; the error it raised, failing if it is still running."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as error:  # handed to the test
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still blocked after {seconds} s (a FIFO was opened for reading)"
    return outcome[0]


def test_a_fifo_as_the_package_is_refused_at_once(tmp_path: Path, keys: KeyFiles) -> None:
    fifo = tmp_path / "x.tar.gz"
    os.mkfifo(fifo)

    error = _opened_within(5, lambda: open_package(
        fifo, extract_root=tmp_path / "extract", root_certs_path=keys.root_certs_dir))

    assert isinstance(error, PackageError) and "not a regular file" in str(error)
    assert list((tmp_path / "extract").glob("*")) == []  # no half-made folder left


@pytest.mark.parametrize("name", [MANIFEST_NAME, SIGNATURE_NAME, MODEL_FILE])
def test_a_fifo_inside_a_package_folder_is_refused_at_once(
        package_dir: Path, keys: KeyFiles, tmp_path: Path, name: str) -> None:
    (package_dir / name).unlink()
    os.mkfifo(package_dir / name)

    for allow in (False, True):
        error = _opened_within(5, functools.partial(
            open_package, package_dir, extract_root=tmp_path,
            root_certs_path=keys.root_certs_dir, allow_unsigned=allow))
        assert isinstance(error, PackageError), error
        assert "FIFO" in str(error) or "not a regular file" in str(error)


def test_open_regular_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")

    error = _opened_within(5, lambda: open_regular(tmp_path / "pipe"))

    assert isinstance(error, PackageError) and "is a FIFO" in str(error)
    (tmp_path / "file").write_bytes(b"content")
    with open_regular(tmp_path / "file") as file:
        assert file.read() == b"content"


def _archive_of(path: Path, files: dict[str, Path | bytes]) -> Path:
    write_archive(path, files)
    return path


@pytest.mark.parametrize("case", ["unsigned", "untrusted", "signature-replaced",
                                  "signature-removed"])
def test_nothing_is_extracted_before_the_signature_is_trusted(
        tmp_path: Path, package_dir: Path, keys: KeyFiles, other_keys: KeyFiles,
        monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    files: dict[str, Path | bytes] = {p.name: p for p in package_dir.iterdir()}
    if case == "unsigned":  # a bomb's worth of zeros, with neither manifest nor signature
        files = {MODEL_FILE: b"\0" * (1 << 20)}
    elif case == "untrusted":
        document = json.loads((package_dir / MANIFEST_NAME).read_bytes())
        resign(package_dir, other_keys, document)
        files = {p.name: p for p in package_dir.iterdir()}
    elif case == "signature-replaced":
        files[SIGNATURE_NAME] = b"{}"
    else:
        del files[MANIFEST_NAME]
    archive = _archive_of(tmp_path / "package.tar.gz", files)

    def extraction_must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("extract_archive ran before the package was trusted")
    monkeypatch.setattr("edgefleet.package.loader.extract_archive", extraction_must_not_run)

    with pytest.raises(PackageError) as caught:
        open_package(archive, extract_root=tmp_path / "extract",
                     root_certs_path=keys.root_certs_dir)
    assert type(caught.value) in (UnsignedPackage, UntrustedSigner, TamperedPackage)


def test_a_member_of_another_size_than_signed_is_refused(
        tmp_path: Path, package_dir: Path, keys: KeyFiles) -> None:
    files: dict[str, Path | bytes] = {p.name: p for p in package_dir.iterdir()}
    files[MODEL_FILE] = (package_dir / MODEL_FILE).read_bytes() + b"\0" * 4096
    archive = _archive_of(tmp_path / "grown.tar.gz", files)

    with pytest.raises(TamperedPackage, match=rf"file '{MODEL_FILE}' was changed after "
                                              r"signing \(it is \d+ bytes, the signed"):
        open_package(archive, extract_root=tmp_path / "extract",
                     root_certs_path=keys.root_certs_dir)
    assert list((tmp_path / "extract").iterdir()) == []


def test_archives_from_before_the_reorder_still_load(
        tmp_path: Path, package_dir: Path, keys: KeyFiles) -> None:
    # Archives written before the manifest came first: model, manifest, signature.
    order = [MODEL_FILE, MANIFEST_NAME, SIGNATURE_NAME]
    archive = _archive_of(tmp_path / "old.tar.gz", {n: package_dir / n for n in order})

    opened = open_package(archive, extract_root=tmp_path / "extract",
                          root_certs_path=keys.root_certs_dir)
    assert opened.signed and opened.model_path.is_file()


# -- packages with a drift baseline ---------------------------------------------------------------

@pytest.fixture
def baseline() -> Baseline:
    """A baseline of the conftest model's input x (float32 [batch, 4])."""
    x = np.random.default_rng(5).normal(size=(300, 4)).astype(np.float32)
    return build_baseline(x, tensor="x")


@pytest.fixture
def baselined(tmp_path: Path, model_path: Path, keys: KeyFiles, baseline: Baseline) -> Path:
    """A signed ``drifty-1.0.tar.gz`` that carries ``baseline``."""
    return build_package(model_path, name="drifty", version="1.0", key_path=keys.signing_key,
                         cert_path=keys.signing_cert, out_dir=tmp_path / "out",
                         baseline=baseline)


def test_a_package_with_a_baseline_loads_and_serves(
        tmp_path: Path, baselined: Path, keys: KeyFiles, baseline: Baseline) -> None:
    opened = open_package(baselined, extract_root=tmp_path / "x",
                          root_certs_path=keys.root_certs_dir)

    assert opened.signed and opened.manifest is not None
    assert opened.manifest.baseline == BASELINE_FILE
    assert Baseline.from_json((opened.directory / BASELINE_FILE).read_bytes()) == baseline
    assert read_baseline(opened.directory) == baseline
    # The agent's own LoadModel path: open_package, then ONNX Runtime.
    service = AgentService(AgentConfig.from_mapping({
        "sagemaker_edge_core_root_certs_path": str(keys.root_certs_dir),
        "sagemaker_edge_local_data_root_path": str(tmp_path / "data")}))
    assert service.load_model(str(baselined), "drifty").version == "1.0"
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(service.predict_arrays("drifty", {"x": x})["y"],
                                  x + np.arange(4, dtype=np.float32))


def test_a_changed_baseline_is_tampering(tmp_path: Path, baselined: Path, keys: KeyFiles,
                                         baseline: Baseline) -> None:
    folder = tmp_path / "package"
    folder.mkdir()
    extract_archive(baselined, folder)
    changed = Baseline(baseline.tensor, baseline.feature_names, baseline.features,
                       baseline.rows + 1).to_json()
    (folder / BASELINE_FILE).write_bytes(changed)

    with pytest.raises(TamperedPackage, match=f"file '{BASELINE_FILE}' was changed"):
        open_package(folder, extract_root=tmp_path / "x", root_certs_path=keys.root_certs_dir)
    with pytest.raises(TamperedPackage, match=f"file '{BASELINE_FILE}' was changed"):
        read_baseline(folder)
    (folder / BASELINE_FILE).unlink()
    with pytest.raises(TamperedPackage, match=f"file '{BASELINE_FILE}' was removed"):
        read_baseline(folder)
    archive = _archive_of(tmp_path / "no-baseline.tar.gz", {
        n: folder / n for n in (MANIFEST_NAME, SIGNATURE_NAME, MODEL_FILE)})
    with pytest.raises(TamperedPackage, match=f"file '{BASELINE_FILE}' was removed"):
        read_baseline(archive)


def test_read_baseline_refusals(tmp_path: Path, model_path: Path) -> None:
    with pytest.raises(NotFound, match="no model package at"):
        read_baseline(tmp_path / "nope.tar.gz")
    with pytest.raises(PackageError, match="is not a package archive"):
        read_baseline(model_path)
    with pytest.raises(PackageError, match="has no sagemaker_edge_manifest"):
        read_baseline(tmp_path)
    unsigned = _archive_of(tmp_path / "bare.tar.gz", {MODEL_FILE: model_path})
    with pytest.raises(PackageError, match="has no sagemaker_edge_manifest"):
        read_baseline(unsigned)


def test_a_listed_baseline_that_is_not_one_is_a_package_error(
        tmp_path: Path, package_dir: Path, keys: KeyFiles) -> None:
    junk = b'{"format_version": 1, "tensor": "x", "rows": 0}'
    (package_dir / BASELINE_FILE).write_bytes(junk)
    document = json.loads((package_dir / MANIFEST_NAME).read_bytes())
    document["baseline"] = BASELINE_FILE
    document["files"][BASELINE_FILE] = {"sha256": hashlib.sha256(junk).hexdigest(),
                                        "size": len(junk)}
    resign(package_dir, keys, document)

    with pytest.raises(PackageError, match="'rows' must be a positive integer; rebuild"):
        read_baseline(package_dir)
    # The loader itself checks only digests: the agent loads the model regardless.
    assert open_package(package_dir, extract_root=tmp_path / "x",
                        root_certs_path=keys.root_certs_dir).signed


def test_a_baseline_over_the_size_cap_is_refused(tmp_path: Path, package_dir: Path,
                                                 keys: KeyFiles) -> None:
    big = b" " * (MAX_BASELINE_BYTES + 1)
    (package_dir / BASELINE_FILE).write_bytes(big)
    document = json.loads((package_dir / MANIFEST_NAME).read_bytes())
    document["baseline"] = BASELINE_FILE
    document["files"][BASELINE_FILE] = {"sha256": hashlib.sha256(big).hexdigest(),
                                        "size": len(big)}
    resign(package_dir, keys, document)
    archive = _archive_of(tmp_path / "big.tar.gz", {
        n: package_dir / n for n in (MANIFEST_NAME, SIGNATURE_NAME, BASELINE_FILE, MODEL_FILE)})

    for package in (package_dir, archive):
        with pytest.raises(PackageError, match=f"more than the {MAX_BASELINE_BYTES}|larger than"):
            read_baseline(package)
