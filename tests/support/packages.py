"""Signed packages of the test models, and agent configs that trust them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.package import build_package, init_keys
from support.models import affine_model, image_model, mixed_model


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


def build_test_packages(base: Path) -> Packages:
    """Make keys under ``base`` and sign a package of each test model."""
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


def signed_affine(base: Path, version: str) -> tuple[Path, Path]:
    """A signed package of the affine test model: (archive, folder of the root certificate)."""
    keys = init_keys(base / "keys")
    archive = build_package(affine_model(base / "affine.onnx"), name="affine", version=version,
                            key_path=keys.signing_key, cert_path=keys.signing_cert,
                            out_dir=base / "out")
    return archive, keys.root_certs_dir
