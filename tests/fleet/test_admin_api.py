"""The management REST API through FastAPI's TestClient (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient


def test_admin_routes_need_the_token(api: TestClient) -> None:
    anonymous = TestClient(api.app)
    for headers in ({}, {"Authorization": "Bearer efadm_wrong"}, {"Authorization": "Basic x"}):
        answer = anonymous.get("/api/v1/fleets", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json()["error"] == "Unauthenticated"
    assert anonymous.post("/api/v1/fleets", json={"name": "f", "output_location": "x"}
                          ).status_code == 401
    assert anonymous.get("/api/v1/root-certificate").text.startswith("-----BEGIN CERTIFICATE")
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    assert "/api/v1/deployment-plans" in anonymous.get("/openapi.json").json()["paths"]


def test_fleet_device_and_errors(api: TestClient) -> None:
    created = api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    assert created.status_code == 201
    again = api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    assert again.status_code == 409 and "pick another name" in again.json()["message"]
    invalid = api.post("/api/v1/fleets", json={"name": "bad name", "output_location": "x"})
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "InvalidArgument"
    assert invalid.json()["message"].startswith("invalid request: body.name: String should match")
    answer = api.post("/api/v1/devices", json={"name": "t1", "fleet": "wind",
                                               "root_certs_path": "/opt/certs"})
    assert answer.status_code == 201
    body = answer.json()
    assert body["agent_config"]["sagemaker_edge_core_endpoint_override"] == "http://testserver"
    assert body["agent_config"]["sagemaker_edge_core_root_certs_path"] == "/opt/certs"
    assert body["agent_config"]["sagemaker_edge_provider_provider"] == "Aws"
    described = api.get("/api/v1/devices/t1").json()
    assert "secret_access_key" not in str(described)
    assert described["access_key_id"] == body["credentials"]["access_key_id"]
    missing = api.get("/api/v1/devices/nope")
    assert missing.status_code == 404 and "edgefleet device list" in missing.json()["message"]
    assert api.delete("/api/v1/fleets/wind").status_code == 409
    assert api.delete("/api/v1/devices/t1").status_code == 204
    assert api.delete("/api/v1/fleets/wind").status_code == 204


def test_packaging_and_plans(api: TestClient, onnx_model: Path, tmp_path: Path) -> None:
    api.post("/api/v1/fleets", json={"name": "wind", "output_location": "s3://b/p"})
    api.post("/api/v1/devices", json={"name": "t1", "fleet": "wind"})

    def package(name: str, path: Path) -> dict[str, object]:
        with path.open("rb") as model:
            answer = api.post("/api/v1/packaging-jobs", files={"model": model}, data={
                "name": name, "model_name": "relu", "model_version": "1.0"})
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    job = package("relu-1", onnx_model)
    assert job["status"] == "COMPLETED" and job["artifact"] == "packages/relu-1/relu-1.0.tar.gz"
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    failed = package("junk-1", junk)
    assert failed["status"] == "FAILED" and "packaging failed" in str(failed["status_message"])
    assert [j["name"] for j in api.get("/api/v1/packaging-jobs").json()] == ["junk-1", "relu-1"]

    bad_plan = api.post("/api/v1/deployment-plans", json={
        "name": "p", "fleet": "wind", "models": [{"model_handle": "m",
                                                  "packaging_job": "junk-1"}]})
    assert bad_plan.status_code == 409 and "did not complete" in bad_plan.json()["message"]
    plan = api.post("/api/v1/deployment-plans", json={
        "name": "p", "fleet": "wind", "models": [{"model_handle": "m",
                                                  "packaging_job": "relu-1"}],
        "stages": [{"name": "s1", "selection": {"type": "SELECTION", "device_names": ["t1"]}}]})
    assert plan.status_code == 201, plan.text
    added = api.post("/api/v1/deployment-plans/p/stages", json={
        "name": "s2", "selection": {"type": "PERCENTAGE", "percentage": 50},
        "failure_handling_policy": "DO_NOTHING"})
    assert [s["name"] for s in added.json()["stages"]] == ["s1", "s2"]
    started = api.post("/api/v1/deployment-plans/p/stages/s1/start")
    assert started.json()["device_counts"] == {"READYTODEPLOY": 1}
    devices = api.get("/api/v1/deployment-plans/p/stages/s1/devices").json()
    assert [(d["device_name"], d["status"]) for d in devices] == [("t1", "READYTODEPLOY")]
    assert api.delete("/api/v1/deployment-plans/p").status_code == 409
    assert api.post("/api/v1/deployment-plans/p/stages/s1/stop").json()["status"] == "STOPPED"
    assert api.delete("/api/v1/deployment-plans/p").status_code == 204
    assert api.get("/api/v1/deployment-plans").json() == []
