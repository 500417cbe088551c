"""``edgefleet package build|verify|inspect`` and ``edgefleet keys init`` through the CLI."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from edgefleet.cli import app
from edgefleet.drift import BASELINE_FILE, build_baseline
from edgefleet.package import MODEL_FILE, KeyFiles
from edgefleet.package.loader import read_baseline

runner = CliRunner()


def edgefleet(*args: str | Path) -> Result:
    return runner.invoke(app, [str(arg) for arg in args], env={"COLUMNS": "200"})


def failed(result: Result, message: str) -> None:
    """The command exited 1 with ``error: <message...>`` on stderr and no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ")
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_keys_init_writes_private_keys_0600_and_names_the_config_key(tmp_path: Path) -> None:
    directory = tmp_path / "k"

    result = edgefleet("keys", "init", directory)

    assert result.exit_code == 0, result.output
    for secret in ("root-ca.key", "signing.key"):
        assert stat.S_IMODE((directory / secret).stat().st_mode) == 0o600
    assert (directory / "root-certs" / "root-ca.pem").is_file()
    assert (directory / "signing.pem").is_file()
    assert ('"sagemaker_edge_core_root_certs_path": '
            f'"{(directory / "root-certs").resolve()}"') in result.stdout


def test_keys_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    directory = tmp_path / "k"
    assert edgefleet("keys", "init", directory).exit_code == 0
    before = (directory / "signing.key").read_bytes()

    failed(edgefleet("keys", "init", directory), "pass --force to replace them")
    assert (directory / "signing.key").read_bytes() == before

    assert edgefleet("keys", "init", directory, "--force").exit_code == 0
    assert (directory / "signing.key").read_bytes() != before


def test_build_verify_inspect(tmp_path: Path, model_path: Path, keys: KeyFiles) -> None:
    built = edgefleet("package", "build", model_path, "--name", "add-model", "--version", "2.1",
                      "--key", keys.signing_key, "--cert", keys.signing_cert,
                      "--out-dir", tmp_path)
    archive = tmp_path / "add-model-2.1.tar.gz"
    assert built.exit_code == 0, built.output
    assert str(archive) in built.stdout

    verified = edgefleet("package", "verify", archive, "--root-certs", keys.root_certs_dir)
    assert verified.exit_code == 0, verified.output
    assert "OK add-model 2.1: signed by CN=edgefleet package signer" in verified.stdout

    inspected = edgefleet("package", "inspect", archive)
    assert inspected.exit_code == 0, inspected.output
    for expected in ("add-model", "2.1", "onnx", "FLOAT32", "[-1, 4]", MODEL_FILE,
                     "CN=edgefleet package signer", "Not verified here"):
        assert expected in inspected.stdout


def test_inspect_a_folder(package_dir: Path) -> None:
    result = edgefleet("package", "inspect", package_dir)

    assert result.exit_code == 0, result.output
    assert "add-model" in result.stdout


def test_verify_refuses_tampered_package(package_dir: Path, keys: KeyFiles) -> None:
    (package_dir / "extra.bin").write_bytes(b"x")

    failed(edgefleet("package", "verify", package_dir, "--root-certs", keys.root_certs_dir),
           "file 'extra.bin' was added after signing")


def test_verify_refuses_untrusted_signer(archive: Path, other_keys: KeyFiles) -> None:
    failed(edgefleet("package", "verify", archive, "--root-certs", other_keys.root_certs_dir),
           "is not trusted by the root certificates")


def test_verify_refuses_unsigned_package(package_dir: Path, keys: KeyFiles) -> None:
    (package_dir / "sagemaker_edge_signature").unlink()

    failed(edgefleet("package", "verify", package_dir, "--root-certs", keys.root_certs_dir),
           "has no sagemaker_edge_signature")


@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_missing_package(tmp_path: Path, keys: KeyFiles, command: str) -> None:
    extra = ["--root-certs", str(keys.root_certs_dir)] if command == "verify" else []

    failed(edgefleet("package", command, tmp_path / "nope.tar.gz", *extra), "nope.tar.gz")


def test_inspect_a_folder_without_manifest(tmp_path: Path) -> None:
    failed(edgefleet("package", "inspect", tmp_path), "not a model package")


def test_build_errors_exit_1(tmp_path: Path, model_path: Path, keys: KeyFiles) -> None:
    failed(edgefleet("package", "build", model_path, "--name", "bad_name", "--version", "1",
                     "--key", keys.signing_key, "--cert", keys.signing_cert, "-o", tmp_path),
           "model name 'bad_name' is not valid")
    failed(edgefleet("package", "build", model_path, "--name", "ok", "--version", "1",
                     "--key", tmp_path / "none.key", "--cert", keys.signing_cert),
           "none.key does not exist")


def test_build_output_folder_not_writable(tmp_path: Path, model_path: Path,
                                          keys: KeyFiles) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    failed(edgefleet("package", "build", model_path, "--name", "ok", "--version", "1",
                     "--key", keys.signing_key, "--cert", keys.signing_cert,
                     "-o", blocker / "out"), "Not a directory")


def test_missing_option_is_a_usage_error(model_path: Path) -> None:
    result = edgefleet("package", "build", model_path, "--name", "m")

    assert result.exit_code == 2
    assert "--version" in result.stderr


def test_help_explains_the_commands() -> None:
    result = edgefleet("package", "--help")

    assert result.exit_code == 0
    for command in ("build", "verify", "inspect"):
        assert command in result.stdout
    assert "sagemaker_edge_manifest" in result.stdout


def build_args(model_path: Path, keys: KeyFiles, out_dir: Path) -> list[str | Path]:
    return ["package", "build", model_path, "--name", "add-model", "--version", "3",
            "--key", keys.signing_key, "--cert", keys.signing_cert, "--out-dir", out_dir]


def test_build_with_a_npy_baseline_and_inspect_it(tmp_path: Path, model_path: Path,
                                                  keys: KeyFiles) -> None:
    x = np.random.default_rng(1).normal(size=(250, 4)).astype(np.float32)
    np.save(tmp_path / "train.npy", x)

    built = edgefleet(*build_args(model_path, keys, tmp_path), "--baseline",
                      tmp_path / "train.npy", "--baseline-bins", "5")

    assert built.exit_code == 0, built.output
    archive = tmp_path / "add-model-3.tar.gz"
    assert read_baseline(archive) == build_baseline(x, tensor="x", bins=5)
    inspected = edgefleet("package", "inspect", archive)
    assert inspected.exit_code == 0, inspected.output
    assert f"{BASELINE_FILE}: tensor x, 4 features, 250 rows" in inspected.stdout
    verified = edgefleet("package", "verify", archive, "--root-certs", keys.root_certs_dir)
    assert verified.exit_code == 0, verified.output
    assert "2 files match the manifest" in verified.stdout


def test_build_with_a_ready_baseline_json(tmp_path: Path, model_path: Path,
                                          keys: KeyFiles) -> None:
    baseline = build_baseline(np.arange(400.0).reshape(100, 4), tensor="x")
    (tmp_path / "baseline.json").write_bytes(baseline.to_json())

    built = edgefleet(*build_args(model_path, keys, tmp_path / "out"), "--baseline",
                      tmp_path / "baseline.json", "--baseline-tensor", "x")

    assert built.exit_code == 0, built.output
    assert read_baseline(tmp_path / "out" / "add-model-3.tar.gz") == baseline


def test_inspect_says_when_there_is_no_baseline(archive: Path) -> None:
    result = edgefleet("package", "inspect", archive)

    assert result.exit_code == 0, result.output
    assert " ".join(result.stdout.split()).count("baseline none") == 1


def test_baseline_errors_say_what_to_do(tmp_path: Path, model_path: Path,
                                        keys: KeyFiles) -> None:
    args = build_args(model_path, keys, tmp_path / "out")
    np.save(tmp_path / "three.npy", np.zeros((200, 3), np.float32))
    (tmp_path / "train.csv").write_text("1,2,3,4\n")

    failed(edgefleet(*args, "--baseline", tmp_path / "missing.npy"),
           "missing.npy does not exist; pass a .npy of training inputs (first dimension rows) "
           "or a baseline.json")
    failed(edgefleet(*args, "--baseline", tmp_path / "train.csv"),
           "is neither a .npy array of training inputs nor a baseline.json; save the training "
           "inputs with numpy.save")
    failed(edgefleet(*args, "--baseline", tmp_path / "three.npy"),
           "has 3 features per row, but input 'x' of shape [-1, 4] has 4 (the product of its "
           "dimensions after the first); compute it from training inputs of shape [rows, 4]")
    failed(edgefleet(*args, "--baseline", tmp_path / "three.npy", "--baseline-tensor", "q"),
           "baseline is for input tensor 'q', but the model's inputs are 'x'")
    failed(edgefleet(*args, "--baseline-tensor", "x"), "--baseline-tensor needs --baseline")
    failed(edgefleet(*args, "--baseline", tmp_path / "three.npy", "--baseline-bins", "1"),
           "bins must be 2 to 100")
    assert not (tmp_path / "out").exists()
