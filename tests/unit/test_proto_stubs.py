"""The committed gRPC stubs are what scripts/gen-proto writes from agent.proto today."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("agent_pb2.py", "agent_pb2_grpc.py")


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    source = tmp_path / "src" / "edgefleet" / "proto"
    source.mkdir(parents=True)
    shutil.copy(ROOT / "src/edgefleet/proto/agent.proto", source)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path / 'src'}",
                    f"--python_out={tmp_path / 'src'}", f"--grpc_python_out={tmp_path / 'src'}",
                    str(source / "agent.proto")], check=True)
    for name in GENERATED:
        assert (source / name).read_text() == (ROOT / "src/edgefleet/proto" / name).read_text(), (
            f"{name} is stale: run scripts/gen-proto and commit the result")


def test_wire_names_and_numbers() -> None:
    from edgefleet.proto import agent_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["Agent"]
    assert service.full_name == "AWS.SageMaker.Edge.Agent"
    assert [m.name for m in service.methods] == [
        "Predict", "LoadModel", "UnLoadModel", "ListModels", "DescribeModel", "CaptureData",
        "GetCaptureDataStatus"]
    fields = {f.name: f.number for f in pb.CaptureDataRequest.DESCRIPTOR.fields}
    assert fields == {"model_name": 1, "capture_id": 2, "inference_timestamp": 3,
                      "input_tensors": 4, "output_tensors": 5, "inputs": 6, "outputs": 7,
                      "model_handle": 8}
    tensor = {f.name: f.number for f in pb.Tensor.DESCRIPTOR.fields}
    assert tensor == {"tensor_metadata": 1, "byte_data": 4, "shared_memory_handle": 5}
    assert pb.DataType.Value("FLOAT32") == 5 and pb.Encoding.Value("BASE64") == 3
    assert pb.CaptureDataStatus.Value("NOT_FOUND") == 3
