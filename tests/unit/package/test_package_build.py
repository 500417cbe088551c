"""build_package, the manifest format and the signing identity."""

from __future__ import annotations

import datetime as dt
import json
import tarfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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
    open_package,
)
from edgefleet.package.manifest import check_model_name, check_model_version, file_sha256


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
