"""build_package, the manifest format and the signing identity."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from support.models import mixed_model

from edgefleet.drift import BASELINE_FILE, Baseline, build_baseline
from edgefleet.errors import (
    InvalidArgument,
    NotFound,
    PackageError,
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
from edgefleet.package.build import baseline_from_file
from edgefleet.package.loader import read_baseline
from edgefleet.package.manifest import (
    check_baseline,
    check_model_name,
    check_model_version,
    file_sha256,
)
from edgefleet.tensors import TensorSpec


def test_archive_layout_and_manifest(archive: Path, model_path: Path) -> None:
    assert archive.name == "add-model-1.0.tar.gz"
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        manifest = json.loads(tar.extractfile(MANIFEST_NAME).read())  # type: ignore[union-attr]

    # Manifest and signature first: the loader checks them before it extracts the model.
    assert [m.name for m in members] == [MANIFEST_NAME, SIGNATURE_NAME, MODEL_FILE]
    assert all(m.isreg() and m.mode == 0o644 for m in members)
    assert manifest == {
        "format_version": 1,
        "metadata": {"model_name": "add-model", "model_version": "1.0"},
        "framework": "onnx",
        "model_file": MODEL_FILE,
        "inputs": [{"name": "x", "dtype": "FLOAT32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "dtype": "FLOAT32", "shape": [-1, 4]}],
        "files": {MODEL_FILE: {"sha256": file_sha256(model_path),
                               "size": model_path.stat().st_size}},
    }
    assert [p.name for p in archive.parent.iterdir()] == [archive.name]  # no temporary file


@pytest.mark.parametrize(("name", "version", "error"), [
    ("add_model", "1", "model name 'add_model' is not valid"),
    ("add.model", "1", "model name"),
    ("-add", "1", "model name"),
    ("", "1", "model name"),
    ("add", "", "model version"),
    ("add", "../1", "model version"),
    ("add", "1/2", "model version"),
])
def test_bad_name_or_version(tmp_path: Path, model_path: Path, keys: KeyFiles,
                             name: str, version: str, error: str) -> None:
    with pytest.raises(InvalidArgument, match=error):
        build_package(model_path, name=name, version=version, key_path=keys.signing_key,
                      cert_path=keys.signing_cert, out_dir=tmp_path)

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("good", ["a", "A1", "wind--power", "x" * 100])
def test_good_names(good: str) -> None:
    assert check_model_name(good) == good


@pytest.mark.parametrize("good", ["1", "1.4.0", "2024-06-01", "v2_rc.1", "a" * 64])
def test_good_versions(good: str) -> None:
    assert check_model_version(good) == good


def test_missing_files(tmp_path: Path, model_path: Path, keys: KeyFiles) -> None:
    with pytest.raises(NotFound, match="model file"):
        build_package(tmp_path / "none.onnx", name="m", version="1", key_path=keys.signing_key,
                      cert_path=keys.signing_cert, out_dir=tmp_path)
    with pytest.raises(NotFound, match="keys init"):
        build_package(model_path, name="m", version="1", key_path=tmp_path / "none.key",
                      cert_path=keys.signing_cert, out_dir=tmp_path)


def test_not_an_onnx_model(tmp_path: Path, keys: KeyFiles) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"definitely not protobuf")

    with pytest.raises(UnsupportedModel, match="not a loadable ONNX model"):
        build_package(bogus, name="m", version="1", key_path=keys.signing_key,
                      cert_path=keys.signing_cert, out_dir=tmp_path / "out")


def test_certificate_of_another_key(tmp_path: Path, model_path: Path, keys: KeyFiles,
                                    other_keys: KeyFiles) -> None:
    with pytest.raises(InvalidArgument, match="does not belong to the key"):
        build_package(model_path, name="m", version="1", key_path=keys.signing_key,
                      cert_path=other_keys.signing_cert, out_dir=tmp_path)


def test_unsupported_curve(tmp_path: Path, model_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    key_path, cert_path = write_self_signed(tmp_path, key)

    with pytest.raises(InvalidArgument, match="curve secp384r1"):
        build_package(model_path, name="m", version="1", key_path=key_path,
                      cert_path=cert_path, out_dir=tmp_path)


def write_self_signed(tmp_path: Path,
                      key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
                      issuer_key: ec.EllipticCurvePrivateKey | None = None,
                      issuer: x509.Name | None = None,
                      usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CODE_SIGNING,
                      ) -> tuple[Path, Path]:
    """Write ``key`` and a certificate for ``usage`` (self-signed unless an issuer is given)."""
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test signer")])
    signer = issuer_key or key
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                signer.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(signer, None if isinstance(signer, ed25519.Ed25519PrivateKey)
                  else hashes.SHA256()))
    key_path, cert_path = tmp_path / "test.key", tmp_path / "test.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def issued_by_root(tmp_path: Path, keys: KeyFiles,
                   key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
                   usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CODE_SIGNING,
                   ) -> tuple[Path, Path]:
    root_key = serialization.load_pem_private_key(keys.root_key.read_bytes(), password=None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    root = x509.load_pem_x509_certificate(keys.root_cert.read_bytes())
    return write_self_signed(tmp_path, key, root_key, root.subject, usage)


def test_ed25519_signer_is_accepted(tmp_path: Path, model_path: Path, keys: KeyFiles) -> None:
    key_path, cert_path = issued_by_root(tmp_path, keys, ed25519.Ed25519PrivateKey.generate())
    archive = build_package(model_path, name="m", version="1", key_path=key_path,
                            cert_path=cert_path, out_dir=tmp_path / "out")

    opened = open_package(archive, extract_root=tmp_path / "x",
                          root_certs_path=keys.root_certs_dir)

    assert opened.signed and opened.signer == "CN=test signer"


def test_certificate_for_another_purpose_is_untrusted(
        tmp_path: Path, model_path: Path, keys: KeyFiles) -> None:
    key_path, cert_path = issued_by_root(tmp_path, keys, ec.generate_private_key(ec.SECP256R1()),
                                         ExtendedKeyUsageOID.SERVER_AUTH)
    archive = build_package(model_path, name="m", version="1", key_path=key_path,
                            cert_path=cert_path, out_dir=tmp_path / "out")

    with pytest.raises(UntrustedSigner, match="not allowed to sign code"):
        open_package(archive, extract_root=tmp_path / "x", root_certs_path=keys.root_certs_dir)


def test_manifest_round_trip(package_dir: Path) -> None:
    data = (package_dir / MANIFEST_NAME).read_bytes()

    assert Manifest.from_json(data).to_json() == data


def manifest_document(package_dir: Path) -> dict[str, object]:
    document: dict[str, object] = json.loads((package_dir / MANIFEST_NAME).read_bytes())
    return document


@pytest.mark.parametrize(("path", "value", "error"), [
    (("metadata",), None, "field 'metadata' is missing"),
    (("metadata", "model_name"), None, "metadata: field 'model_name' is missing"),
    (("metadata", "model_name"), 7, "field 'model_name' must be a string, not an integer"),
    (("metadata", "model_name"), "a_b", "field 'model_name': model name 'a_b' is not valid"),
    (("format_version",), True, "'format_version' must be an integer, not a boolean"),
    (("framework",), None, "field 'framework' is missing"),
    (("model_file",), "other.onnx", "model_file 'other.onnx' is not listed in files"),
    (("model_file",), "../x", "field 'model_file'"),
    (("inputs",), {"x": 1}, "'inputs' must be an array, not an object"),
    (("outputs",), [7], r"outputs\[0\] must be a JSON object"),
    (("files", MODEL_FILE, "sha256"), "ABC", "files.model.onnx: field 'sha256' must be 64"),
    (("files", MODEL_FILE, "size"), -1, "'size' must be >= 0"),
    (("files", MODEL_FILE), [], "files: field 'model.onnx' must be an object, not an array"),
])
def test_malformed_manifest_names_the_field(
        package_dir: Path, path: tuple[str, ...], value: object, error: str) -> None:
    document = manifest_document(package_dir)
    parent: dict[str, object] = document
    for key in path[:-1]:
        child = parent[key]
        assert isinstance(child, dict)
        parent = child
    if value is None:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value

    with pytest.raises(PackageError, match=error):
        Manifest.from_json(json.dumps(document).encode())


def test_manifest_not_json() -> None:
    with pytest.raises(PackageError, match="not valid JSON"):
        Manifest.from_json(b"\xff{")


def test_newer_manifest_format_is_unsupported(package_dir: Path) -> None:
    document = manifest_document(package_dir)
    document["format_version"] = 2

    with pytest.raises(UnsupportedModel, match="upgrade edgefleet"):
        Manifest.from_json(json.dumps(document).encode())


# -- drift baseline -------------------------------------------------------------------------------

def training_inputs(rows: int = 200, features: int = 4) -> np.ndarray:
    """Training inputs of the conftest model's input x (float32 [batch, 4])."""
    return np.random.default_rng(3).normal(size=(rows, features)).astype(np.float32)


def build_with(tmp_path: Path, model_path: Path, keys: KeyFiles, baseline: Baseline) -> Path:
    return build_package(model_path, name="add-model", version="1.0", key_path=keys.signing_key,
                         cert_path=keys.signing_cert, out_dir=tmp_path / "out",
                         baseline=baseline)


def test_a_baseline_is_listed_signed_and_read_back(tmp_path: Path, model_path: Path,
                                                   keys: KeyFiles) -> None:
    baseline = build_baseline(training_inputs(), tensor="x")

    archive = build_with(tmp_path, model_path, keys, baseline)

    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile(MANIFEST_NAME).read())  # type: ignore[union-attr]
        data = tar.extractfile(BASELINE_FILE).read()  # type: ignore[union-attr]
    assert names == [MANIFEST_NAME, SIGNATURE_NAME, BASELINE_FILE, MODEL_FILE]
    assert manifest["baseline"] == BASELINE_FILE
    assert manifest["files"][BASELINE_FILE] == {"sha256": hashlib.sha256(data).hexdigest(),
                                                "size": len(data)}
    assert Baseline.from_json(data) == baseline
    assert read_baseline(archive) == baseline
    assert Manifest.from_json(json.dumps(manifest).encode()).baseline == BASELINE_FILE


def test_a_package_without_baseline_has_none(archive: Path, package_dir: Path) -> None:
    assert read_baseline(archive) is None
    assert read_baseline(package_dir) is None
    assert Manifest.from_json((package_dir / MANIFEST_NAME).read_bytes()).baseline is None


@pytest.mark.parametrize(("baseline", "error"), [
    (build_baseline(training_inputs(), tensor="y"),
     "baseline is for input tensor 'y', but the model's inputs are 'x'"),
    (build_baseline(training_inputs(features=3), tensor="x"),
     r"3 features per row, but input 'x' of shape \[-1, 4\] has 4 .*shape \[rows, 4\]"),
])
def test_a_baseline_that_does_not_fit_the_model_is_refused(
        tmp_path: Path, model_path: Path, keys: KeyFiles, baseline: Baseline,
        error: str) -> None:
    with pytest.raises(InvalidArgument, match=error):
        build_with(tmp_path, model_path, keys, baseline)

    assert not (tmp_path / "out").exists()


def test_feature_counts_of_dynamic_inputs_are_not_checked() -> None:
    spec = TensorSpec("x", 5, (-1, -1, 3))

    baseline = build_baseline(training_inputs(features=7), tensor="x")

    assert check_baseline(baseline, [spec]) is baseline
    assert check_baseline(build_baseline(training_inputs(features=1)[:, 0], tensor="v"),
                          [TensorSpec("v", 5, (-1,))])


@pytest.mark.parametrize(("value", "error"), [
    ("other.json", "baseline 'other.json' is not listed in files"),
    (MODEL_FILE, "baseline 'model.onnx' is not listed in files .*or is the model file"),
    (7, "field 'baseline' must be a string, not an integer"),
    ("../baseline.json", "field 'baseline'"),
])
def test_a_bad_baseline_field_names_it(package_dir: Path, value: object, error: str) -> None:
    document = manifest_document(package_dir)
    document["baseline"] = value

    with pytest.raises(PackageError, match=error):
        Manifest.from_json(json.dumps(document).encode())


def test_unknown_manifest_fields_are_ignored(package_dir: Path) -> None:
    # Why the optional baseline field kept format_version 1: older readers skip unknown keys.
    document = manifest_document(package_dir)
    document["added_by_a_newer_edgefleet"] = {"any": ["thing"]}

    assert Manifest.from_json(json.dumps(document).encode()).model_file == MODEL_FILE


def test_manifest_round_trip_with_a_baseline(tmp_path: Path, model_path: Path,
                                             keys: KeyFiles) -> None:
    archive = build_with(tmp_path, model_path, keys, build_baseline(training_inputs(), tensor="x"))
    folder = tmp_path / "package"
    folder.mkdir()
    extract_archive(archive, folder)
    data = (folder / MANIFEST_NAME).read_bytes()

    assert Manifest.from_json(data).to_json() == data


def test_baseline_from_a_npy_of_the_only_input(tmp_path: Path, model_path: Path) -> None:
    x = training_inputs()
    np.save(tmp_path / "train.npy", x)

    baseline = baseline_from_file(tmp_path / "train.npy", model_path, bins=5)

    assert baseline == build_baseline(x, tensor="x", bins=5)


def test_baseline_from_a_ready_json(tmp_path: Path, model_path: Path) -> None:
    baseline = build_baseline(training_inputs(), tensor="x")
    (tmp_path / "baseline.json").write_bytes(baseline.to_json())

    assert baseline_from_file(tmp_path / "baseline.json", model_path) == baseline
    with pytest.raises(InvalidArgument, match="is for input tensor 'x', not 'z'"):
        baseline_from_file(tmp_path / "baseline.json", model_path, tensor="z")


def test_a_model_of_several_inputs_needs_the_tensor(tmp_path: Path) -> None:
    model = mixed_model(tmp_path / "mixed.onnx")  # inputs a and b, float32/int32 [2, 3]
    np.save(tmp_path / "b.npy", np.arange(600, dtype=np.int32).reshape(200, 3))

    with pytest.raises(InvalidArgument, match="the model has inputs 'a', 'b': name the one"):
        baseline_from_file(tmp_path / "b.npy", model)
    assert baseline_from_file(tmp_path / "b.npy", model, tensor="b").tensor == "b"


def test_baseline_file_refusals(tmp_path: Path, model_path: Path) -> None:
    with pytest.raises(NotFound, match=r"nope.npy does not exist; pass a .npy of training"):
        baseline_from_file(tmp_path / "nope.npy", model_path)
    (tmp_path / "train.csv").write_text("1,2,3,4\n")
    with pytest.raises(InvalidArgument, match=r"neither a .npy array .* numpy.save"):
        baseline_from_file(tmp_path / "train.csv", model_path)
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(InvalidArgument, match=r"junk.npy is not a readable .npy array"):
        baseline_from_file(tmp_path / "junk.npy", model_path)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 200, dtype=object))
    with pytest.raises(InvalidArgument, match="without pickled objects"):
        baseline_from_file(tmp_path / "objects.npy", model_path)
    with (tmp_path / "zipped.npy").open("wb") as out:
        np.savez(out, x=training_inputs())
    with pytest.raises(InvalidArgument, match=r"is an .npz archive"):
        baseline_from_file(tmp_path / "zipped.npy", model_path)
    np.save(tmp_path / "few.npy", training_inputs(rows=20))
    with pytest.raises(InvalidArgument, match="at least 100 rows; got 20"):
        baseline_from_file(tmp_path / "few.npy", model_path)
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(InvalidArgument, match="must hold a JSON object"):
        baseline_from_file(tmp_path / "bad.json", model_path)


def test_a_npy_header_that_claims_more_than_the_file_holds(tmp_path: Path,
                                                           model_path: Path) -> None:
    path = tmp_path / "lying.npy"
    with path.open("wb") as out:  # 16 TB declared, 64 bytes present: mapped, never allocated
        np.lib.format.write_array_header_1_0(
            out, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 12, 4)})
        out.write(b"\0" * 64)

    with pytest.raises(InvalidArgument, match=r"lying.npy is not a readable .npy array"):
        baseline_from_file(path, model_path)
