"""AgentService used in-process, as a library: real packages, real ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.models import affine_reference
from support.packages import signed_affine

from edgefleet.agent.config import AgentConfig
from edgefleet.agent.serving.service import AgentService
from edgefleet.agent.types import TensorInput
from edgefleet.errors import AlreadyExists, FailedPrecondition, NotFound, TensorMismatch


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return signed_affine(tmp_path_factory.mktemp("svc"), "3.1")


@pytest.fixture()
def service(archive: tuple[Path, Path], tmp_path: Path) -> AgentService:
    return AgentService(AgentConfig.from_mapping({
        "sagemaker_edge_core_root_certs_path": str(archive[1]),
        "sagemaker_edge_local_data_root_path": str(tmp_path / "data")}))


def test_predict_arrays_in_process(service: AgentService, archive: tuple[Path, Path]) -> None:
    info = service.load_model(str(archive[0]), "affine")
    assert info.version == "3.1"
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    outputs = service.predict_arrays("affine", {"x": x})
    y, s = affine_reference(x)
    np.testing.assert_array_equal(outputs["y"], y)
    np.testing.assert_array_equal(outputs["s"], s)
    with pytest.raises(AlreadyExists):
        service.load_model(str(archive[0]), "affine")


def test_extracted_copy_is_removed_on_unload(service: AgentService,
                                             archive: tuple[Path, Path]) -> None:
    service.load_model(str(archive[0]), "affine")
    extracted = service.registry.get("affine").extracted_to
    assert extracted is not None and extracted.is_dir()
    service.unload_model("affine")
    assert not extracted.exists()
    with pytest.raises(NotFound):
        service.describe_model("affine")


def test_tensor_errors(service: AgentService, archive: tuple[Path, Path]) -> None:
    service.load_model(str(archive[0]), "affine")
    with pytest.raises(TensorMismatch, match="sent 3 bytes"):
        service.predict("affine", [TensorInput("x", 5, (1, 4), data=b"abc")])
    with pytest.raises(TensorMismatch, match="cannot be derived from 3 bytes"):
        service.predict("affine", [TensorInput(None, None, None, data=b"abc")])


def test_capture_needs_a_pipeline(service: AgentService, archive: tuple[Path, Path]) -> None:
    service.load_model(str(archive[0]), "affine")
    with pytest.raises(FailedPrecondition):
        service.capture_data(model_name="affine", capture_id="c1", inference_time_ns=None)


def test_capture_before_1970_is_out_of_range(service: AgentService,
                                             archive: tuple[Path, Path]) -> None:
    from edgefleet.agent.capture import CaptureService, MemorySink
    from edgefleet.errors import OutOfRange

    service.load_model(str(archive[0]), "affine")
    service.capture = CaptureService(service.config, sink=MemorySink())
    with pytest.raises(OutOfRange, match="before 1970"):
        service.capture_data(model_name="affine", capture_id="old",
                             inference_time_ns=-10**20)
