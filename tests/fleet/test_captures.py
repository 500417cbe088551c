"""The capture index, drift series and their REST routes, on SQLite and PostgreSQL, over
batch files written by the agent's own capture pipeline (CaptureService with a Disk or Cloud
destination): indexing once, malformed files, events, drift counts, S3 (SeaweedFS)."""

from __future__ import annotations

import io
import itertools
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from support.s3server import ACCESS_KEY, SECRET_KEY, S3Server

from edgefleet.agent.capture import CaptureService
from edgefleet.agent.config import AgentConfig
from edgefleet.agent.types import (
    AuxiliaryEncoding,
    CapturedAuxiliary,
    CapturedTensor,
    CaptureRequest,
)
from edgefleet.drift import MIN_ROWS, PSI_THRESHOLD, Baseline, build_baseline
from edgefleet.fleet import capture_index, captures
from edgefleet.fleet.app import create_app
from edgefleet.fleet.capture_index import CaptureIndex
from edgefleet.fleet.capture_location import LocalCaptureLocation, open_capture_location
from edgefleet.fleet.db.models import CaptureEntry, CaptureFile, CaptureHour
from edgefleet.fleet.drift_series import FixedBaselines, PackageBaselines, device_drift
from edgefleet.fleet.settings import ServerSettings
from edgefleet.fleet.storage import open_object_store

Sessions = sessionmaker[Session]
#: 2015-06-01 00:00 UTC: replayed wind-farm data keeps its own dates.
JUNE_2015 = 1_433_116_800.0
_ids = itertools.count()


def request(at: float, *, window: np.ndarray | None = None, event: str | None = None,
            sampled: bool = False, model: str = "anomaly", version: str = "1.0",
            big: bool = False) -> CaptureRequest:
    """A capture shaped like the wind-farm model's: a [24, 24] float32 window (rows: time
    steps, features: sensors), a score, and optionally a JSON auxiliary input with an event."""
    x = window if window is not None else np.zeros((24, 24), np.float32)
    inputs = [CapturedTensor("window", 5, x.shape, x.astype(np.float32).tobytes())]
    if big:  # 40 KB: stored as a raw file beside the batch (data-ref)
        inputs.append(CapturedTensor("image", 0, (100, 100, 4),
                                     np.arange(40_000, dtype=np.uint32).astype(
                                         np.uint8).tobytes()))
    aux = () if event is None else (CapturedAuxiliary(
        "context", AuxiliaryEncoding.JSON, json.dumps({"event": event, "kw": 812.5}).encode()),)
    return CaptureRequest(
        capture_id=f"c-{next(_ids)}", model_alias=model, model_version=version,
        inference_time_ns=int(at * 1e6) * 1000, input_tensors=tuple(inputs),
        output_tensors=(CapturedTensor("score", 5, (1, 1), np.float32([[0.5]]).tobytes()),),
        auxiliary_inputs=aux, sampled=sampled)


def write_captures(root: Path, tmp_path: Path, device: str, requests: Sequence[CaptureRequest],
                   **keys: Any) -> None:
    """Store ``requests`` through the agent's own capture pipeline (Disk destination)."""
    service = CaptureService(AgentConfig.from_mapping({
        "sagemaker_edge_core_device_name": device,
        "sagemaker_edge_core_device_fleet_name": "windfarm",
        "sagemaker_edge_core_capture_data_disk_path": str(root),
        "sagemaker_edge_local_data_root_path": str(tmp_path / f"data-{device}"),
        "sagemaker_edge_core_capture_data_push_period_seconds": 0.05,
        "sagemaker_edge_core_capture_data_batch_size": 10,
        "sagemaker_edge_core_capture_data_buffer_size": 1000, **keys}))
    service.start()
    for capture in requests:
        service.submit(capture)
    service.close()
    assert service.metrics()["capture_stored_total"] == len(requests)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "capture"
    folder.mkdir()
    return folder


def test_index_reads_each_agent_file_once(sessions: Sessions, root: Path,
                                          tmp_path: Path) -> None:
    first = [request(JUNE_2015 + 60 * i, event="anomaly" if i % 4 == 0 else None,
                     sampled=i % 2 == 1, big=i == 3) for i in range(30)]  # hours 0..0
    later = [request(JUNE_2015 + 7200 + 600 * i) for i in range(6)]  # hour 2
    write_captures(root, tmp_path, "turbine-1", first + later)
    write_captures(root, tmp_path, "turbine-2", [request(JUNE_2015 + 5, event="stop")])
    index = CaptureIndex(sessions, LocalCaptureLocation(root), FixedBaselines())
    done = index.scan_all()
    assert done.records == 37 and done.malformed == 0 and done.files >= 3
    assert index.scan_all().files == 0  # nothing new: no file is read twice
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(CaptureEntry)) == 37
        totals = captures.device_totals(s, "turbine-1")
        assert (totals.records, totals.events) == (36, 8)
        assert totals.first_time == JUNE_2015 and totals.last_time == JUNE_2015 + 7200 + 3000
        hours = captures.hour_counts(s, "turbine-1")
        assert [(h.hour_start - JUNE_2015, h.records, h.events) for h in hours] == [
            (0, 30, 8), (7200, 6, 0)]
        assert captures.event_counts(s, ["turbine-1", "turbine-2", "nope"]) == {
            "turbine-1": 8, "turbine-2": 1}
        pages, before = [], None
        while True:  # keyset pages of 7, newest first, together every record once
            page = captures.list_captures(s, device="turbine-1", before=before, limit=7)
            pages.append(page.captures)
            before = page.next_before
            if before is None:
                break
        listed = [c for p in pages for c in p]
        assert len(listed) == 36 and len({c.id for c in listed}) == 36
        times = [c.inference_time for c in listed]
        assert times == sorted(times, reverse=True)
        assert sum(c.sampled for c in listed) == 15
        events = captures.list_captures(s, event="anomaly").captures
        assert len(events) == 8 and {c.device for c in events} == {"turbine-1"}
        assert captures.list_captures(s, event="stop").captures[0].device == "turbine-2"
        with pytest.raises(captures.InvalidArgument, match="next_before"):
            captures.list_captures(s, before="yesterday")
    # New files appear later (the agent kept capturing): the next scan finds only them.
    write_captures(root, tmp_path, "turbine-1", [request(JUNE_2015 + 86_400)])
    assert index.scan_all().records == 1


def test_a_write_that_breaks_another_constraint_is_retried_not_taken_as_done(
        sessions: Sessions, root: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a duplicate of the file's own key means "another server indexed it"; any other
    integrity error (seen: a PostgreSQL id sequence behind bulk-loaded rows) leaves the file
    unindexed, to be tried again."""
    write_captures(root, tmp_path, "turbine-1", [request(JUNE_2015 + i) for i in range(3)])
    real = capture_index.store_file
    failures = iter([True])

    def store_once_failing(*args: Any, **kwargs: Any) -> None:
        if next(failures, False):
            raise IntegrityError("INSERT INTO capture_entries", {}, Exception("pkey taken"))
        real(*args, **kwargs)

    monkeypatch.setattr(capture_index, "store_file", store_once_failing)
    index = CaptureIndex(sessions, LocalCaptureLocation(root), FixedBaselines())
    first = index.scan_once()
    assert first.retry == 1
    assert index.scan_all().records + first.records == 3
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(CaptureEntry)) == 3


def test_malformed_files_are_counted_and_never_stop_later_files(
        sessions: Sessions, root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        baseline: Baseline) -> None:
    write_captures(root, tmp_path, "turbine-1", [request(JUNE_2015 + i) for i in range(3)])
    good = sorted(root.rglob("*.jsonl"))[0]
    lines = good.read_bytes().split(b"\n")
    folder = good.parent
    (folder / "a-broken.jsonl").write_bytes(b"{not json\n" + lines[0] + b"\n" + b"\xff\xfe\n")
    record = json.loads(lines[1])
    record["deviceFleetInputs"][0] = {**record["deviceFleetInputs"][0], "encoding": "NONE",
                                      "data-ref": "../../../../etc/passwd"}
    record["deviceFleetInputs"][0].pop("data")
    (folder / "b-climbs.jsonl").write_text(json.dumps(record) + "\n")
    (folder / ".c-partial.jsonl.tmp").write_bytes(lines[0])  # the disk sink's temporary
    (folder / ".d-hidden.jsonl").write_bytes(lines[0])
    (folder / "e-not-a-batch.bin").write_bytes(b"\0" * 10)
    # With a baseline the index decodes the input tensor, and so follows its data-ref.
    index = CaptureIndex(sessions, LocalCaptureLocation(root),
                         FixedBaselines({("anomaly", "1.0"): baseline}))
    with caplog.at_level(logging.WARNING, "edgefleet.fleet.capture_index"):
        done = index.scan_all()
    assert done.records == 4 and done.malformed == 3
    with sessions() as s:
        files = {Path(f.key).name: (f.records, f.errors, f.error)
                 for f in s.scalars(select(CaptureFile))}
    assert set(files) == {good.name, "a-broken.jsonl", "b-climbs.jsonl"}
    assert files["a-broken.jsonl"][:2] == (1, 2) and "line 1" in str(files["a-broken.jsonl"][2])
    assert "not a file name beside the batch" in str(files["b-climbs.jsonl"][2])
    warnings = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: one line for the whole scan
    assert index.scan_all().files == 0


def _shifted(rng: np.random.Generator, shift: float) -> np.ndarray:
    x = rng.standard_normal((24, 24)).astype(np.float32)
    x[:, 3] += shift  # one sensor drifts
    return x


@pytest.fixture
def baseline() -> Baseline:
    training = np.random.default_rng(1).standard_normal((5000, 24))
    return build_baseline(training, tensor="window",
                          feature_names=[f"sensor-{i}" for i in range(24)])


def test_drift_counts_become_a_daily_psi_series(
        sessions: Sessions, root: Path, tmp_path: Path, baseline: Baseline) -> None:
    rng = np.random.default_rng(2)
    day = 86_400
    sent = [request(JUNE_2015 + d * day + 3600 * k,
                    window=_shifted(rng, 0.0 if d < 10 else 2.0))
            for d in range(20) for k in range(5)]  # 5 captures of 24 rows a day
    sent.append(request(JUNE_2015 + 3 * day, version="9.9"))  # a version without baseline
    write_captures(root, tmp_path, "turbine-1", sent)
    write_captures(root, tmp_path, "turbine-2", [request(JUNE_2015, window=_shifted(rng, 0))])
    index = CaptureIndex(sessions, LocalCaptureLocation(root),
                         FixedBaselines({("anomaly", "1.0"): baseline}))
    index.scan_all()
    with sessions() as s:
        hour = s.get(CaptureHour, ("turbine-1", "anomaly", "1.0", int(JUNE_2015 // 3600)))
        assert hour is not None and hour.drift_rows == 24 and hour.records == 1
        assert hour.drift_counts is not None and len(hour.drift_counts) == 24
        assert sum(hour.drift_counts[0]) == 24
        other = s.get(CaptureHour, ("turbine-1", "anomaly", "9.9",
                                    int((JUNE_2015 + 3 * day) // 3600)))
        assert other is not None and other.drift_counts is None
        series = device_drift(s, index.baselines, "turbine-1")
        few = device_drift(s, index.baselines, "turbine-2")
        assert [(x.model_version, x.points) for x in few] == [("1.0", [])]  # < MIN_ROWS
    assert [(x.model_name, x.model_version) for x in series] == [("anomaly", "1.0")]
    points = series[0].points
    assert len(points) == 20 and points[0].day == JUNE_2015 and points[0].rows == 120
    assert all(p.rows >= MIN_ROWS for p in points)
    assert max(p.psi for p in points[:10]) < PSI_THRESHOLD
    assert points[-1].psi > PSI_THRESHOLD and points[-1].feature == "sensor-3"
    assert points[-1].rows == 7 * 120  # the trailing seven days
    assert series[0].latest[0][0] == "sensor-3" and len(series[0].latest) == 10
    # The window lags: the day the drift starts shows part of it.
    assert points[9].psi < points[10].psi < points[16].psi


@pytest.fixture
def served(settings: ServerSettings, engine: Engine, root: Path) -> Iterator[TestClient]:
    """The app reading captures from ``root``, admin token in the headers."""
    token = settings.resolved_admin_token_file().read_text().strip()
    app = create_app(settings.model_copy(update={"capture_location": str(root),
                                                 "capture_scan_seconds": 3600}))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def test_rest_routes(served: TestClient, root: Path, tmp_path: Path) -> None:
    write_captures(root, tmp_path, "turbine-1", [
        request(JUNE_2015 + 60 * i, event="anomaly" if i == 2 else None, big=i == 1)
        for i in range(4)])
    served.app.state.context.captures.scan_all()  # type: ignore[attr-defined]
    answer = served.get("/api/v1/devices/turbine-1/captures", params={"limit": 3})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["records"] == 4 and body["events"] == 1
    assert body["hours"] == [{"model_name": "anomaly", "hour_start": JUNE_2015, "records": 4,
                              "events": 1}]
    assert len(body["page"]["captures"]) == 3 and body["page"]["next_before"]
    rest = served.get("/api/v1/devices/turbine-1/captures",
                      params={"before": body["page"]["next_before"]}).json()
    assert [c["inference_time"] for c in rest["page"]["captures"]] == [JUNE_2015]
    big = next(c for c in served.get("/api/v1/captures").json()["captures"]
               if c["inference_time"] == JUNE_2015 + 60)
    detail = served.get(f"/api/v1/captures/{big['id']}").json()
    assert [t["name"] for t in detail["inputs"]] == ["window", "image"]
    image = detail["inputs"][1]
    assert image["dtype"] == "uint8" and image["shape"] == [100, 100, 4]
    assert np.array_equal(np.array(image["values"], np.uint8).ravel(),
                          np.arange(40_000, dtype=np.uint32).astype(np.uint8))
    assert detail["outputs"][0]["values"] == [[0.5]]
    event = served.get("/api/v1/captures", params={"event": "anomaly"}).json()["captures"][0]
    aux = served.get(f"/api/v1/captures/{event['id']}").json()["auxiliary_inputs"][0]
    assert aux["content_type"] == "application/json" and '"anomaly"' in aux["text"]
    line = served.get(f"/api/v1/captures/{big['id']}/download")
    assert line.headers["content-type"] == "application/x-ndjson"
    stored = (root / big["file"]).read_bytes().split(b"\n")[big["line"] - 1]
    assert line.content == stored + b"\n"
    npz = served.get(f"/api/v1/captures/{big['id']}/download", params={"format": "npz"})
    arrays = np.load(io.BytesIO(npz.content))
    assert sorted(arrays.files) == ["input/image", "input/window", "output/score"]
    assert arrays["input/image"].shape == (100, 100, 4)
    assert served.get("/api/v1/captures/999999").status_code == 404
    assert served.get("/api/v1/devices/nope/captures").status_code == 404
    assert served.get("/api/v1/captures", params={"before": "x"}).status_code == 400
    assert served.get(f"/api/v1/captures/{big['id']}/download",
                      params={"format": "zip"}).status_code == 422
    drift = served.get("/api/v1/devices/turbine-1/drift").json()
    assert drift == {"device": "turbine-1", "threshold": PSI_THRESHOLD, "min_rows": MIN_ROWS,
                     "window_days": 7, "series": []}
    assert served.get("/api/v1/captures", headers={"Authorization": ""}).status_code == 401


def test_routes_say_how_to_turn_capture_on(api: TestClient) -> None:
    answer = api.get("/api/v1/captures/1")
    assert answer.status_code in (404, 409)
    assert api.get("/api/v1/captures").json() == {"captures": [], "next_before": None}


def test_a_packaged_baseline_drives_the_drift_series(
        api: TestClient, sessions: Sessions, settings: ServerSettings, onnx_model: Path,
        root: Path, tmp_path: Path) -> None:
    training = np.random.default_rng(3).standard_normal((2000, 4)).astype(np.float32)
    npy = tmp_path / "training.npy"
    np.save(npy, training)
    with onnx_model.open("rb") as model, npy.open("rb") as data:
        job = api.post("/api/v1/packaging-jobs", files={"model": model, "baseline": data},
                       data={"name": "relu-v1", "model_name": "relu", "model_version": "1.0"})
    assert job.status_code == 201 and job.json()["status"] == "COMPLETED", job.text
    baselines = PackageBaselines(sessions, open_object_store(None, settings.data_dir))
    found = baselines.get("relu", "1.0")
    assert found is not None and found.tensor == "x" and len(found.features) == 4
    assert baselines.get("relu", "2.0") is None
    rng = np.random.default_rng(4)
    write_captures(root, tmp_path, "turbine-1", [CaptureRequest(
        capture_id=f"r{i}", model_alias="relu", model_version="1.0",
        inference_time_ns=int((JUNE_2015 + 600 * i) * 1e9),
        input_tensors=(CapturedTensor("x", 5, (20, 4), (rng.standard_normal((20, 4)) + 3)
                                      .astype(np.float32).tobytes()),)) for i in range(10)])
    CaptureIndex(sessions, LocalCaptureLocation(root), baselines).scan_all()
    with sessions() as s:
        series = device_drift(s, baselines, "turbine-1")
    assert len(series) == 1 and series[0].points[0].rows == 200
    assert series[0].points[0].psi > PSI_THRESHOLD  # shifted by 3 standard deviations


def test_migration_0004_downgrades_and_upgrades(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", "src/edgefleet/fleet/db/migrations")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(CaptureEntry)).scalar() == 0


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_index_reads_a_bucket_written_by_the_cloud_destination(
        sessions: Sessions, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        baseline: Baseline) -> None:
    bucket = f"captures-{time.time_ns()}"
    s3.client().create_bucket(Bucket=bucket)
    rng = np.random.default_rng(5)
    sent = [request(JUNE_2015 + 900 * i, window=_shifted(rng, 0.0), big=i % 3 == 0,
                    event="anomaly" if i == 4 else None) for i in range(12)]
    write_captures(tmp_path / "unused", tmp_path, "turbine-1", sent,
                   sagemaker_edge_core_capture_data_destination="Cloud",
                   sagemaker_edge_core_folder_prefix="site-a", **s3.agent_keys(bucket))
    assert any(key.endswith(".bin") for key in s3.objects(bucket))  # s3:// data-refs
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    location = open_capture_location(f"s3://{bucket}/site-a?endpoint={s3.endpoint_url}")
    index = CaptureIndex(sessions, location, FixedBaselines({("anomaly", "1.0"): baseline}))
    assert index.scan_all().records == 12
    assert index.scan_all().files == 0
    with sessions() as s:
        assert captures.device_totals(s, "turbine-1").events == 1
        big = next(c for c in captures.list_captures(s).captures
                   if c.inference_time == JUNE_2015)
        out, line = captures.read_line(location, s, big.id)
        assert device_drift(s, index.baselines, "turbine-1")[0].points[0].rows == 12 * 24
    record = captures.decode_line(location, out.file, line)
    assert record.input_arrays["image"].shape == (100, 100, 4)
    assert out.file.startswith("windfarm/anomaly/2015/06/01/")
