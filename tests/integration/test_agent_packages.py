"""LoadModel refuses unsafe packages with FAILED_PRECONDITION and the reason, over the socket."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import grpc
import pytest
from support.agent_process import AgentProcess, start_agent
from support.packages import Packages, base_config

from edgefleet.package import build_package, init_keys
from edgefleet.proto import agent_pb2 as pb


def refused(agent: AgentProcess, url: Path, name: str) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        agent.stub.LoadModel(pb.LoadModelRequest(url=str(url), name=name), timeout=30)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, caught.value.details()
    return caught.value.details()


def extracted(archive: Path, into: Path) -> Path:
    into.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def rewrite(archive: Path, out: Path, change: dict[str, bytes | None]) -> Path:
    """Copy ``archive`` with members replaced (bytes), removed (None) or added."""
    with tarfile.open(archive) as source, tarfile.open(out, "w:gz") as target:
        names = []
        for member in source.getmembers():
            names.append(member.name)
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name in change:
                replacement = change[member.name]
                if replacement is None:
                    continue
                data = replacement
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
        for name, data in change.items():
            if name not in names and data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                target.addfile(info, io.BytesIO(data))
    return out


def test_tampered_packages(agent: AgentProcess, packages: Packages, tmp_path: Path) -> None:
    model = (packages.models / "affine.onnx").read_bytes()
    changed = bytearray(model)
    changed[-1] ^= 1
    cases = {
        "changed": {"model.onnx": bytes(changed)},
        "added": {"extra.bin": b"surprise"},
        "removed": {"sagemaker_edge_signature": None},
    }
    for label, change in cases.items():
        details = refused(agent, rewrite(packages.affine, tmp_path / f"{label}.tar.gz", change),
                          f"tampered-{label}")
        assert any(word in details.lower() for word in ("tamper", "digest", "unsigned",
                                                        "signature", "not listed")), details
    directory = extracted(packages.affine, tmp_path / "dir")
    (directory / "model.onnx").write_bytes(bytes(changed))
    assert "model.onnx" in refused(agent, directory, "tampered-dir")


def test_untrusted_signer(agent: AgentProcess, packages: Packages, tmp_path: Path) -> None:
    stranger = init_keys(tmp_path / "stranger")
    archive = build_package(packages.models / "affine.onnx", name="affine", version="9",
                            key_path=stranger.signing_key, cert_path=stranger.signing_cert,
                            out_dir=tmp_path)
    details = refused(agent, archive, "untrusted")
    assert "trust" in details.lower() or "root" in details.lower()


@pytest.mark.parametrize("kind", ["absolute", "traversal", "symlink", "hardlink", "device"])
def test_malicious_archives(agent: AgentProcess, tmp_path: Path, kind: str) -> None:
    archive = tmp_path / f"{kind}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo({"absolute": "/etc/evil", "traversal": "../evil"}.get(kind,
                                                                                  "evil"))
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
        elif kind == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        tar.addfile(info, io.BytesIO(b"") if info.isreg() else None)
    details = refused(agent, archive, f"evil-{kind}")
    assert "evil" in details
    assert not (tmp_path.parent / "evil").exists()


def test_unsigned_package_only_when_allowed(packages: Packages, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(packages.models / "affine.onnx", bare / "model.onnx")
    agent = start_agent(base_config(packages, edgefleet_allow_unsigned_models=True),
                        tmp_path / "work")
    try:
        model = agent.stub.LoadModel(pb.LoadModelRequest(url=str(bare), name="bare")).model
        assert model.input_tensor_metadatas[0].name == b"x"
    finally:
        assert agent.stop() == 0


def test_a_fifo_is_refused_and_frees_its_alias(agent: AgentProcess, packages: Packages,
                                               tmp_path: Path) -> None:
    fifo = tmp_path / "x.tar.gz"
    os.mkfifo(fifo)
    for _ in range(3):  # more calls than the agent has workers: none may be held
        details = refused(agent, fifo, "fifo")
        assert "not a regular file" in details

    # The alias was never kept, and the workers are free for the next load.
    agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="fifo"), timeout=30)
    agent.stub.UnLoadModel(pb.UnLoadModelRequest(name="fifo"), timeout=30)
