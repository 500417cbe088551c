"""The data layer (services over SQLAlchemy), on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from edgefleet.fleet import edge, fleets, packaging, reports, rollout, schemas
from edgefleet.fleet.bootstrap import prepare
from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.db.models import Base, Device, StageDevice
from edgefleet.fleet.storage import MemoryObjectStore

Sessions = sessionmaker[Session]


def test_migrations_match_models_and_rerun(engine: Engine, server_key: ServerKey,
                                           tmp_path: Path) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    again = prepare(engine, server_key, tmp_path / "token-2")
    assert again.admin_token_file is None


def test_other_server_key_is_refused(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="same --server-key-file"):
        prepare(engine, ServerKey.load_or_create(tmp_path / "other.key"), tmp_path / "t")


def _fleet(sessions: Sessions, name: str = "wind") -> None:
    with sessions.begin() as s:
        fleets.create_fleet(s, schemas.FleetCreate(name=name, output_location="s3://b/p"))


def _devices(sessions: Sessions, key: ServerKey, names: list[str], fleet: str = "wind") -> None:
    with sessions.begin() as s:
        for name in names:
            fleets.register_device(s, key, schemas.DeviceRegister(name=name, fleet=fleet),
                                   endpoint="http://x", region="us-east-1")


def test_fleets_and_devices(sessions: Sessions, server_key: ServerKey) -> None:
    _fleet(sessions)
    with sessions.begin() as s, pytest.raises(AlreadyExists, match="already exists"):
        fleets.create_fleet(s, schemas.FleetCreate(name="wind", output_location="x"))
    with sessions.begin() as s:
        done = fleets.register_device(
            s, server_key, schemas.DeviceRegister(name="t-1", fleet="wind", description="d"),
            endpoint="http://cp:8080", region="eu-west-1")
    cfg = done.agent_config
    assert cfg["sagemaker_edge_core_device_name"] == "t-1"
    assert cfg["sagemaker_edge_core_endpoint_override"] == "http://cp:8080"
    assert cfg["edgefleet_control_secret_access_key"] == done.credentials.secret_access_key
    with sessions() as s:
        stored = s.scalars(select(Device)).one()
        assert done.credentials.secret_access_key.encode() not in stored.secret_enc
        assert fleets.describe_fleet(s, "wind").device_count == 1
    with sessions.begin() as s, pytest.raises(AlreadyExists, match="already registered"):
        fleets.register_device(s, server_key, schemas.DeviceRegister(name="t-1", fleet="wind"),
                               endpoint="x", region="r")
    with sessions.begin() as s, pytest.raises(NotFound, match="fleet 'nope' does not exist"):
        fleets.register_device(s, server_key, schemas.DeviceRegister(name="t-2", fleet="nope"),
                               endpoint="x", region="r")
    _devices(sessions, server_key, [f"t-{i}" for i in range(2, 6)])
    with sessions() as s:
        first = fleets.list_devices(s, fleet="wind", after=None, limit=3)
        rest = fleets.list_devices(s, fleet="wind", after=first.next_after, limit=3)
    assert [d.name for d in first.devices + rest.devices] == [f"t-{i}" for i in range(1, 6)]
    assert rest.next_after is None
    _fleet(sessions, "calm")
    with sessions() as s:
        assert [(f.name, f.device_count) for f in fleets.list_fleets(s)] == [
            ("calm", 0), ("wind", 5)]
    with sessions.begin() as s, pytest.raises(FailedPrecondition, match="still has devices"):
        fleets.delete_fleet(s, "wind")
    with sessions.begin() as s:
        fleets.deregister_device(s, "t-1")
    with sessions() as s, pytest.raises(NotFound, match="not registered"):
        fleets.describe_device(s, "t-1")


def _plan(sessions: Sessions, key: ServerKey, model: Path, stages: list[schemas.StageSpec]
          ) -> schemas.PlanOut:
    job = packaging.create_job(sessions, key, MemoryObjectStore(), name="relu-1",
                               model_name="relu", model_version="1.0", model_path=model)
    assert job.status == "COMPLETED", job.status_message
    with sessions.begin() as s:
        return rollout.create_plan(s, schemas.PlanCreate(
            name="plan", fleet="wind",
            models=[schemas.PlanModelSpec(model_handle="relu", packaging_job="relu-1")],
            stages=stages))


def _stage(name: str, **selection: object) -> schemas.StageSpec:
    return schemas.StageSpec(name=name, selection=schemas.Selection.model_validate(selection))


def _selected(sessions: Sessions, stage: str) -> list[str]:
    with sessions() as s:
        return [d.device_name for d in rollout.stage_devices(s, "plan", stage)]


def test_stage_selection_by_each_kind(sessions: Sessions, server_key: ServerKey,
                                      onnx_model: Path) -> None:
    _fleet(sessions)
    names = [f"north-{i:02d}" for i in range(10)] + [f"south-{i:02d}" for i in range(10)]
    _devices(sessions, server_key, names)
    _plan(sessions, server_key, onnx_model, [
        _stage("pick", type="SELECTION", device_names=["north-03", "south-07"]),
        _stage("north", type="NAMECONTAINS", name_contains="north"),
        _stage("quarter", type="PERCENTAGE", percentage=25),
        _stage("ghost", type="SELECTION", device_names=["north-03", "nobody"]),
    ])
    with sessions.begin() as s:
        for stage in ("pick", "north", "quarter"):
            assert rollout.start_stage(s, "plan", stage).status == "INPROGRESS"
    assert _selected(sessions, "pick") == ["north-03", "south-07"]
    assert _selected(sessions, "north") == names[:10]
    quarter = _selected(sessions, "quarter")
    assert len(quarter) == 5 and set(quarter) <= set(names)
    with sessions.begin() as s, pytest.raises(InvalidArgument, match="not in the plan's fleet: "
                                                                     "nobody"):
        rollout.start_stage(s, "plan", "ghost")
    with sessions.begin() as s, pytest.raises(FailedPrecondition, match="cannot start again"):
        rollout.start_stage(s, "plan", "pick")
    with sessions.begin() as s, pytest.raises(FailedPrecondition, match="in progress"):
        rollout.delete_plan(s, "plan")


def test_list_plans_reads_a_fixed_number_of_queries(engine: Engine, sessions: Sessions,
                                                     server_key: ServerKey,
                                                     onnx_model: Path) -> None:
    _fleet(sessions)
    _devices(sessions, server_key, ["a-1", "a-2", "b-1"])
    _plan(sessions, server_key, onnx_model, [_stage("one", type="NAMECONTAINS",
                                                    name_contains="a-")])
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _conn, _cursor, sql, *_rest: statements.append(sql))

    def list_counted() -> tuple[list[schemas.PlanOut], int]:
        statements.clear()
        with sessions() as s:
            return rollout.list_plans(s), len(statements)

    single, queries = list_counted()
    with sessions.begin() as s:
        rollout.start_stage(s, "plan", "one")
        for number in range(2, 5):
            rollout.create_plan(s, schemas.PlanCreate(
                name=f"plan-{number}", fleet="wind",
                models=[schemas.PlanModelSpec(model_handle="relu", packaging_job="relu-1")],
                stages=[_stage(f"s{n}", type="PERCENTAGE", percentage=50)
                        for n in range(number)]))
    listed, more_queries = list_counted()
    assert more_queries == queries, "list_plans should not query once per plan or stage"
    assert [p.name for p in listed] == ["plan", "plan-2", "plan-3", "plan-4"]
    assert [len(p.stages) for p in listed] == [1, 2, 3, 4]
    assert listed[0].stages[0].device_counts == {"READYTODEPLOY": 2}
    assert single[0].stages[0].device_counts == {}
    with sessions() as s:
        assert [rollout.describe_plan(s, p.name) for p in listed] == listed


def test_selection_validation() -> None:
    with pytest.raises(ValueError, match="needs percentage"):
        schemas.Selection(type="PERCENTAGE")
    with pytest.raises(ValueError, match="takes only name_contains"):
        schemas.Selection(type="NAMECONTAINS", name_contains="a", percentage=3)


def _identity(sessions: Sessions, name: str) -> edge.DeviceIdentity:
    with sessions() as s:
        device = s.scalars(select(Device).where(Device.name == name)).one()
        return edge.DeviceIdentity(device.id, name, "wind")


def test_rollout_deployments_results_and_report(sessions: Sessions, server_key: ServerKey,
                                                onnx_model: Path) -> None:
    _fleet(sessions)
    _devices(sessions, server_key, ["a-1", "a-2", "b-1"])
    plan = _plan(sessions, server_key, onnx_model, [
        _stage("one", type="NAMECONTAINS", name_contains="a-")])
    deployment = plan.stages[0].deployment_name
    ref = {name: schemas.DeviceRef(DeviceName=name, DeviceFleetName="wind")
           for name in ("a-1", "a-2", "b-1")}

    def deployments(name: str) -> list[dict[str, object]]:
        identity = _identity(sessions, name)
        with sessions.begin() as s:
            found = edge.deployments(s, identity, ref[name],
                                     lambda key: f"http://cp/downloads/{key}")
        return list(found["Deployments"])

    assert deployments("a-1") == []
    with sessions.begin() as s:
        rollout.start_stage(s, "plan", "one")
    got = deployments("a-1")
    assert got[0]["DeploymentName"] == deployment
    assert got[0]["FailureHandlingPolicy"] == "ROLLBACK_ON_FAILURE"
    definition: Any = got[0]["Definitions"][0]  # type: ignore[index]
    assert definition["ModelHandle"] == "relu" and definition["State"] == "DEPLOY"
    assert definition["S3Url"] == "http://cp/downloads/packages/relu-1/relu-1.0.tar.gz"
    assert definition["Checksum"]["Type"] == "SHA1" and len(definition["Checksum"]["Sum"]) == 40
    assert deployments("b-1") == []
    a1, b1 = _identity(sessions, "a-1").device_id, _identity(sessions, "b-1").device_id
    with sessions() as s:
        assert rollout.may_download(s, a1, "packages/relu-1/relu-1.0.tar.gz")
        assert not rollout.may_download(s, b1, "packages/relu-1/relu-1.0.tar.gz")

    now = time.time()
    model = {"ModelName": "relu", "ModelVersion": "1.0", "LatestInference": now,
             "LatestSampleTime": now}
    ok = {"DeploymentName": deployment, "DeploymentStatus": "SUCCESS", "DeploymentModels": [
        {"ModelHandle": "relu", "ModelName": "relu", "Status": "SUCCESS"}]}
    bad = {"DeploymentName": deployment, "DeploymentStatus": "FAIL",
           "DeploymentStatusMessage": "model failed its health check", "DeploymentModels": [
               {"ModelHandle": "relu", "Status": "FAIL", "StatusReason": "load error",
                "RollbackFailureReason": "previous model missing"}]}
    beats: dict[str, dict[str, Any]] = {"a-1": {"Models": [model], "DeploymentResult": ok},
             "a-2": {"Models": [{**model, "LatestInference": now - 3600,
                                 "LatestSampleTime": None}], "DeploymentResult": bad},
             "b-1": {"AgentVersion": "0.9", "Models": [model]}}
    for name, extra in beats.items():
        beat = schemas.Heartbeat.model_validate(
            {"DeviceName": name, "DeviceFleetName": "wind", "AgentVersion": "1.0", **extra})
        device_id = _identity(sessions, name).device_id
        with sessions.begin() as s:
            edge.write_heartbeats(s, [edge.ReceivedHeartbeat(device_id, beat, time.time())])

    with sessions() as s:
        status = {d.device_name: d for d in rollout.stage_devices(s, "plan", "one")}
    assert status["a-1"].status == "DEPLOYED"
    assert status["a-2"].status == "FAILED"
    assert "health check" in status["a-2"].status_message
    assert "rollback failed: previous model missing" in status["a-2"].status_message
    assert deployments("a-1") == [] and deployments("a-2") == []

    with sessions() as s:
        report = reports.fleet_report(s, "wind", window_seconds=600, now=now + 1)
    assert report.registered_device_count == 3 and report.connected_device_count == 3
    assert {(v.version, v.agent_count) for v in report.agent_versions} == {("0.9", 1),
                                                                          ("1.0", 2)}
    stat = report.model_stats[0]
    assert (stat.model_name, stat.model_version) == ("relu", "1.0")
    assert (stat.offline_device_count, stat.connected_device_count, stat.active_device_count,
            stat.sampling_device_count) == (0, 3, 2, 2)
    with sessions() as s:
        later = reports.fleet_report(s, "wind", window_seconds=600, now=now + 3600)
    assert later.connected_device_count == 0
    assert later.model_stats[0].offline_device_count == 3
    with sessions() as s:
        described = fleets.describe_device(s, "a-2")
    assert described.agent_version == "1.0" and described.models[0].model_name == "relu"
    assert described.deployments[0].status == "FAILED"


def test_stop_stage_and_unknown_results(sessions: Sessions, server_key: ServerKey,
                                        onnx_model: Path) -> None:
    _fleet(sessions)
    _devices(sessions, server_key, ["a-1", "a-2"])
    _plan(sessions, server_key, onnx_model, [_stage("all", type="PERCENTAGE", percentage=100)])
    with sessions.begin() as s:
        rollout.start_stage(s, "plan", "all")
        stopped = rollout.stop_stage(s, "plan", "all")
    assert stopped.status == "STOPPED" and stopped.device_counts == {"STOPPED": 2}
    identity = _identity(sessions, "a-1")
    with sessions.begin() as s:
        assert not rollout.record_result(s, identity.device_id, schemas.EdgeDeploymentResult(
            DeploymentName="unknown-deployment"), time.time())
        assert rollout.open_deployments(s, identity.device_id) == []
        rollout.delete_plan(s, "plan")
    with sessions() as s:
        assert s.scalars(select(StageDevice)).all() == []


# PostgreSQL only: SQLite serialises writers, so the second request waits instead of racing.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_plan_creation_answers_already_exists(
        sessions: Sessions, server_key: ServerKey, onnx_model: Path) -> None:
    _fleet(sessions)
    first = _plan(sessions, server_key, onnx_model, [])  # also packages relu-1
    spec = schemas.PlanCreate(name="twin", fleet="wind", models=[
        schemas.PlanModelSpec(model_handle="relu", packaging_job="relu-1")])
    assert first.name == "plan"
    # Request A has inserted "twin" but not committed; request B passes the name check (it
    # cannot see A's row) and its insert waits on the unique index until A commits.
    outcome: list[BaseException | None] = []
    with sessions.begin() as a:
        rollout.create_plan(a, spec)

        def request_b() -> None:
            try:
                with sessions.begin() as b:
                    rollout.create_plan(b, spec)
                outcome.append(None)
            except BaseException as error:  # the test inspects it
                outcome.append(error)

        racer = threading.Thread(target=request_b)
        racer.start()
        time.sleep(0.5)  # B is blocked on A's uncommitted row
        assert not outcome
    racer.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], AlreadyExists)
    with sessions() as s:
        assert [p.name for p in rollout.list_plans(s)] == ["plan", "twin"]
