"""Fixtures of the agent's integration tests: keys, signed packages, a real agent process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.agent_process import AgentProcess, start_agent
from support.models import affine_model, image_model, mixed_model

from edgefleet.package import build_package
from edgefleet.package.keys import init_keys


@dataclass(frozen=True)
class Packages:
    """Signed packages of the test models, and the keys that signed them."""

    root_certs: Path
    signing_key: Path
    signing_cert: Path
    affine: Path
    affine_v2: Path
    mixed: Path
    image: Path
    models: Path


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    base = tmp_path_factory.mktemp("packages")
    keys = init_keys(base / "keys")
    models = base / "models"
    out = base / "out"

    def build(model: Path, name: str, version: str) -> Path:
        return build_package(model, name=name, version=version, key_path=keys.signing_key,
                             cert_path=keys.signing_cert, out_dir=out)

    return Packages(
        root_certs=keys.root_certs_dir,
        signing_key=keys.signing_key,
        signing_cert=keys.signing_cert,
        affine=build(affine_model(models / "affine.onnx"), "affine", "1.0"),
        affine_v2=build(affine_model(models / "affine2.onnx", scale=3.0), "affine", "2.0"),
        mixed=build(mixed_model(models / "mixed.onnx"), "mixed", "1.0"),
        image=build(image_model(models / "image.onnx"), "image", "1.0"),
        models=models,
    )


def base_config(packages: Packages, **extra: Any) -> dict[str, Any]:
    """An agent config trusting the test root certificates."""
    return {
        "sagemaker_edge_core_device_name": "test-device",
        "sagemaker_edge_core_device_fleet_name": "test-fleet",
        "sagemaker_edge_core_root_certs_path": str(packages.root_certs),
        "sagemaker_edge_log_verbose": True,
        **extra,
    }


@pytest.fixture(scope="module")
def agent(packages: Packages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One agent process shared by a module's tests (tests use distinct model aliases)."""
    process = start_agent(base_config(packages), tmp_path_factory.mktemp("agent"))
    yield process
    assert process.stop() == 0, process.log()
