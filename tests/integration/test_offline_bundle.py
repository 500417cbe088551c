"""scripts/build-offline-bundle: a wheelhouse for devices without network.

For this machine's platform: build the bundle from this checkout (pip downloads every dependency
from the index pip is configured with), check its SHA-256 sums, install it into a fresh virtual
environment with pip's configuration and network shut out, and run the installed agent: its
``--version`` and a real LoadModel and Predict over its socket. For aarch64 only a dry
resolution (wheel metadata, no wheel downloaded). Skipped only when the index is unreachable.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import support.agent_process as agent_process
from support.agent_process import start_agent
from support.packages import signed_affine

from edgefleet.proto import agent_pb2 as pb
from edgefleet.version import to_agent_version

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build-offline-bundle"


@pytest.fixture(scope="module")
def index() -> None:
    """Skip when pip cannot reach its package index (PyPI or the configured mirror)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "grpcio",
                            "--timeout", "15", "--retries", "1"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"pip's package index is unreachable: {probe.stderr.strip()[-300:]}")


def _offline_env(**extra: str) -> dict[str, str]:
    """The environment without pip's settings: no configured index, find-links or config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, **extra}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def bundle(index: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "edgefleet-offline"
    glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(SCRIPT), "--platform", platform.machine(),
                           "--glibc", glibc.split()[-1], "--out", str(out)],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    print(f"bundle built in {time.monotonic() - started:.1f} s: {done.stdout.strip()}")
    return out


def test_the_bundle_holds_checked_wheels_and_a_one_line_installer(bundle: Path) -> None:
    wheels = {path.name for path in bundle.glob("*.whl")}
    sums = dict(reversed(line.split("  ", 1))
                for line in (bundle / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == wheels
    for name, digest in sums.items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest, name
    names = {_normalized(name.split("-", 1)[0]) for name in wheels}
    assert {"edgefleet", "grpcio", "onnxruntime", "numpy", "protobuf", "boto3"} <= names
    assert not {"fastapi", "sqlalchemy", "pillow"} & names  # extras stay out unless asked for
    installer = (bundle / "install.sh").read_text()
    assert bundle.joinpath("install.sh").stat().st_mode & 0o111
    (edgefleet_wheel,) = [name for name in wheels if name.startswith("edgefleet-")]
    version = edgefleet_wheel.split("-")[1]
    assert re.fullmatch(r"1\.\d{8}\+g[0-9a-f]{7,40}(\.dirty)?", version)
    assert "sha256sum -c --quiet SHA256SUMS\n" in installer
    assert f'-m pip install --no-index --find-links "$here" edgefleet=={version}\n' in installer


def test_a_fresh_venv_installs_the_bundle_offline_and_the_agent_serves(
        bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    started = time.monotonic()
    done = subprocess.run([str(bundle / "install.sh")], capture_output=True, text=True,
                          env=_offline_env(PYTHON=str(python)), cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"installed offline in {time.monotonic() - started:.1f} s")

    listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, check=True, env=_offline_env())
    installed = {_normalized(d["name"]): d["version"] for d in json.loads(listed.stdout)}
    bundled = {_normalized(name.split("-", 1)[0]) for name in
               (path.name for path in bundle.glob("*.whl"))}
    assert set(installed) - {"pip", "setuptools"} == bundled
    (wheel,) = bundle.glob("edgefleet-*.whl")
    agent_version = to_agent_version(wheel.name.split("-")[1])
    assert installed["edgefleet"] == wheel.name.split("-")[1]

    version = subprocess.run([str(venv / "bin" / "edgefleet-agent"), "--version"],
                             capture_output=True, text=True, check=True)
    assert version.stdout.split()[-1] == agent_version

    archive, certs = signed_affine(tmp_path / "package", "1.0")
    monkeypatch.setattr(agent_process, "agent_command",
                        lambda: [str(venv / "bin" / "edgefleet-agent")])
    agent = start_agent({"sagemaker_edge_core_root_certs_path": str(certs)}, tmp_path / "agent")
    try:
        agent.stub.LoadModel(pb.LoadModelRequest(url=str(archive), name="affine"))
        x = np.ones((1, 4), np.float32)
        reply = agent.stub.Predict(pb.PredictRequest(name="affine", tensors=[pb.Tensor(
            tensor_metadata=pb.TensorMetadata(name=b"x", data_type=pb.FLOAT32, shape=[1, 4]),
            byte_data=x.tobytes())]))
        assert list(reply.tensors[0].tensor_metadata.shape) == [1, 4]
        assert agent_version in agent.log()  # the start line names the version
    finally:
        assert agent.stop() == 0, agent.log()


def test_a_changed_wheel_stops_the_install_before_pip(bundle: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    (wheel,) = tampered.glob("edgefleet-*.whl")
    with wheel.open("ab") as data:
        data.write(b"\0")
    # No Python at all: should the check pass by mistake, nothing could get installed.
    done = subprocess.run([str(tampered / "install.sh")], capture_output=True, text=True,
                          env=_offline_env(PYTHON=str(tmp_path / "no-python")), timeout=120)
    assert done.returncode != 0
    assert f"{wheel.name}: FAILED" in done.stdout + done.stderr


def test_aarch64_resolves_to_aarch64_wheels_without_downloading_them(index: None) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--platform", "aarch64", "--glibc",
                           "2.28", "--dry-run"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    files = [item["file"] for item in json.loads(done.stdout)]
    names = {_normalized(name.split("-", 1)[0]) for name in files}
    assert {"edgefleet", "grpcio", "onnxruntime", "numpy", "cryptography", "sysv-ipc"} <= names
    for name in files:
        tags = name.removesuffix(".whl").split("-")[-1]
        assert tags == "any" or "aarch64" in tags, name
        assert "x86_64" not in tags, name
