"""The capture pipeline end to end in one process, on a MemorySink or the disk (service.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from edgefleet.agent.capture import CaptureService, MemorySink, RetryPolicy, read_batch_file
from edgefleet.agent.config import AgentConfig
from edgefleet.agent.types import CaptureRequest, CaptureStatus
from edgefleet.errors import AlreadyExists, FailedPrecondition, NotFound, ResourceExhausted
from edgefleet.wire.capture import BatchFile

MakeCapture = Callable[..., CaptureRequest]
MakeConfig = Callable[..., AgentConfig]
WaitUntil = Callable[..., None]
FAST = RetryPolicy(initial=0.02, maximum=0.1)


class GatedSink(MemorySink):
    """A MemorySink whose writes block until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def write(self, files: Sequence[BatchFile]) -> None:
        self.gate.wait()
        super().write(files)


class FrozenAfterWrite(MemorySink):
    """Stores the first batch in ``store``, then blocks forever: a process frozen (or killed)
    after an upload and before the spool learnt it had succeeded."""

    def __init__(self, store: MemorySink) -> None:
        super().__init__()
        self.store = store
        self.wrote = threading.Event()

    def write(self, files: Sequence[BatchFile]) -> None:
        self.store.write(files)
        self.wrote.set()
        threading.Event().wait()


@pytest.fixture
def services() -> Iterator[list[CaptureService]]:
    """Services to close after the test (list them here)."""
    started: list[CaptureService] = []
    yield started
    for service in started:
        service.close(timeout=0.5)


def start(services: list[CaptureService], config: AgentConfig, sink: MemorySink,
          ) -> CaptureService:
    service = CaptureService(config, sink=sink, retry=FAST)
    service.start()
    services.append(service)
    return service


def ids(sink: MemorySink) -> list[str]:
    return [record.request.capture_id for record in sink.records()]


def test_batch_size_triggers_a_write(make_config: MakeConfig, make_capture: MakeCapture,
                                     services: list[CaptureService],
                                     wait_until: WaitUntil) -> None:
    sink = MemorySink()
    service = start(services, make_config(
        sagemaker_edge_core_capture_data_batch_size=5,
        sagemaker_edge_core_capture_data_push_period_seconds=30), sink)
    for i in range(8):
        service.submit(make_capture(f"c{i}"))
    wait_until(lambda: sink.writes == 1, timeout=2.0)
    time.sleep(0.2)
    assert sink.writes == 1 and ids(sink) == [f"c{i}" for i in range(5)]
    assert service.status("c4") is CaptureStatus.SUCCESS
    assert service.status("c5") is CaptureStatus.IN_PROGRESS


def test_push_period_triggers_a_write(make_config: MakeConfig, make_capture: MakeCapture,
                                      services: list[CaptureService],
                                      wait_until: WaitUntil) -> None:
    sink = MemorySink()
    service = start(services, make_config(
        sagemaker_edge_core_capture_data_push_period_seconds=0.3), sink)
    time.sleep(0.1)
    submitted = time.monotonic()
    for i in range(3):
        service.submit(make_capture(f"c{i}"))
    wait_until(lambda: sink.writes == 1, timeout=2.0)
    assert time.monotonic() - submitted < 0.3 + 0.2
    assert ids(sink) == ["c0", "c1", "c2"]


def test_status_transitions_and_ttl(make_config: MakeConfig, make_capture: MakeCapture,
                                    services: list[CaptureService],
                                    wait_until: WaitUntil) -> None:
    sink = GatedSink()
    service = start(services, make_config(edgefleet_capture_status_ttl_seconds=0.3), sink)
    service.submit(make_capture("c"))
    with pytest.raises(NotFound):
        service.status("never-sent")
    assert service.status("c") is CaptureStatus.IN_PROGRESS
    with pytest.raises(AlreadyExists):
        service.submit(make_capture("c"))
    sink.gate.set()
    wait_until(lambda: service.status("c") is CaptureStatus.SUCCESS)
    with pytest.raises(AlreadyExists):
        service.submit(make_capture("c"))
    time.sleep(0.35)
    with pytest.raises(NotFound, match="expired"):
        service.status("c")


def test_full_buffer_answers_resource_exhausted(make_config: MakeConfig,
                                                make_capture: MakeCapture,
                                                services: list[CaptureService],
                                                wait_until: WaitUntil) -> None:
    sink = GatedSink()
    service = start(services, make_config(sagemaker_edge_core_capture_data_buffer_size=4,
                                          sagemaker_edge_core_capture_data_batch_size=2), sink)
    for i in range(4):
        service.submit(make_capture(f"c{i}"))
    with pytest.raises(ResourceExhausted, match="buffer full"):
        service.submit(make_capture("c4"))
    with pytest.raises(NotFound):  # a refused capture is not remembered
        service.status("c4")
    assert service.metrics()["capture_refused_total"] == 1
    sink.gate.set()
    wait_until(lambda: len(ids(sink)) == 4)
    service.submit(make_capture("c4"))


def test_unreachable_destination_without_spool_fails_precondition(
        make_config: MakeConfig, make_capture: MakeCapture, services: list[CaptureService],
        wait_until: WaitUntil) -> None:
    sink = MemorySink()
    sink.failure = ConnectionError("connection refused")
    service = start(services, make_config(), sink)
    service.submit(make_capture("held"))
    wait_until(lambda: service.metrics()["capture_destination_up"] == 0)
    with pytest.raises(FailedPrecondition, match="db_enable"):
        service.submit(make_capture("refused"))
    sink.failure = None
    wait_until(lambda: service.status("held") is CaptureStatus.SUCCESS)
    service.submit(make_capture("accepted"))
    assert service.metrics()["capture_destination_up"] == 1


def test_close_flushes_what_waits(make_config: MakeConfig, make_capture: MakeCapture) -> None:
    sink = MemorySink()
    service = CaptureService(make_config(
        sagemaker_edge_core_capture_data_push_period_seconds=60), sink=sink, retry=FAST)
    service.start()
    for i in range(3):
        service.submit(make_capture(f"c{i}"))
    service.close()
    assert ids(sink) == ["c0", "c1", "c2"]


def test_close_without_spool_gives_up_on_a_dead_destination(
        make_config: MakeConfig, make_capture: MakeCapture) -> None:
    sink = MemorySink()
    sink.failure = ConnectionError("down")
    service = CaptureService(make_config(), sink=sink, retry=FAST)
    service.start()
    service.submit(make_capture("lost"))
    service.close(timeout=0.2)
    assert service.status("lost") is CaptureStatus.FAILURE
    assert service.metrics()["capture_failed_total"] == 1


def test_disk_destination_from_config(make_config: MakeConfig, make_capture: MakeCapture,
                                      tmp_path: Path) -> None:
    config = make_config(sagemaker_edge_core_folder_prefix="site-a",
                         sagemaker_edge_core_capture_data_base64_embed_limit=8)
    service = CaptureService(config)
    service.start()
    service.submit(make_capture("c", size=100))
    service.close()
    [batch] = (tmp_path / "capture").rglob("*.jsonl")
    folder = batch.parent.relative_to(tmp_path / "capture")
    assert folder.as_posix() == "site-a/windfarm/anomaly/2026/11/23/19"
    assert batch.name.startswith("edge-1-")
    [record] = read_batch_file(batch)
    assert record.request == make_capture("c", size=100)
    np.testing.assert_array_equal(record.input_arrays["input"],
                                  np.arange(100, dtype=np.float32).reshape(1, 100))
    assert not list((tmp_path / "capture").rglob(".*"))  # no temporary files left


# -- durable mode ------------------------------------------------------------------------------
def test_durable_capture_survives_a_crash_exactly_once(
        make_config: MakeConfig, make_capture: MakeCapture, services: list[CaptureService],
        wait_until: WaitUntil) -> None:
    config = make_config(sagemaker_edge_db_enable=True)
    store = MemorySink()
    crashed = CaptureService(config, sink=FrozenAfterWrite(store), retry=FAST)
    crashed.start()
    for i in range(25):
        crashed.submit(make_capture(f"c{i:02d}"))
    # The first batch is stored but the spool never hears of it; the rest waits in the spool.
    wait_until(lambda: len(store.batch_keys()) == 1)
    first = store.batch_keys()[0]

    restarted = start(services, config, store)
    assert restarted.status("c24") in (CaptureStatus.IN_PROGRESS, CaptureStatus.SUCCESS)
    wait_until(lambda: restarted.metrics()["capture_spool_records"] == 0)
    assert sorted(ids(store)) == [f"c{i:02d}" for i in range(25)]  # none lost, none twice
    assert first in store.batch_keys()  # the re-delivered batch overwrote its first copy
    assert restarted.status("c00") is CaptureStatus.SUCCESS
    with pytest.raises(AlreadyExists):  # a client retrying after the crash gets no duplicate
        restarted.submit(make_capture("c00"))


def test_durable_statuses_survive_a_restart(make_config: MakeConfig,
                                            make_capture: MakeCapture) -> None:
    config = make_config(sagemaker_edge_db_enable=True)
    sink = MemorySink()
    first = CaptureService(config, sink=sink, retry=FAST)
    first.start()
    first.submit(make_capture("c"))
    first.close()
    second = CaptureService(config, sink=sink, retry=FAST)
    assert second.status("c") is CaptureStatus.SUCCESS
    with pytest.raises(AlreadyExists):
        second.submit(make_capture("c"))
    second.close()


def test_durable_concurrent_submits_share_commits(
        make_config: MakeConfig, make_capture: MakeCapture, services: list[CaptureService],
        wait_until: WaitUntil) -> None:
    sink = MemorySink()
    service = start(services, make_config(sagemaker_edge_db_enable=True), sink)

    def client(number: int) -> None:
        for i in range(100):
            service.submit(make_capture(f"t{number}-{i}"))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: service.metrics()["capture_stored_total"] == 400)
    assert len(set(ids(sink))) == 400


def test_durable_outage_then_recovery(make_config: MakeConfig, make_capture: MakeCapture,
                                      services: list[CaptureService],
                                      wait_until: WaitUntil) -> None:
    sink = MemorySink()
    sink.failure = ConnectionError("no route to host")
    service = start(services, make_config(sagemaker_edge_db_enable=True), sink)
    for i in range(50):
        service.submit(make_capture(f"c{i}"))  # accepted: the spool holds them
    wait_until(lambda: service.metrics()["capture_delivery_failures_total"] >= 2)
    metrics = service.metrics()
    assert metrics["capture_spool_records"] == 50 and metrics["capture_spool_bytes"] > 0
    assert metrics["capture_destination_up"] == 0
    sink.failure = None
    wait_until(lambda: service.metrics()["capture_spool_records"] == 0)
    assert sorted(ids(sink)) == sorted(f"c{i}" for i in range(50))


def test_spool_budget_refuse(make_config: MakeConfig, make_capture: MakeCapture,
                             services: list[CaptureService], wait_until: WaitUntil) -> None:
    sink = MemorySink()
    sink.failure = ConnectionError("down")
    service = start(services, make_config(sagemaker_edge_db_enable=True,
                                          edgefleet_capture_spool_max_bytes=1 << 16), sink)
    accepted = 0
    with pytest.raises(ResourceExhausted, match="spool full"):
        for i in range(100):
            service.submit(make_capture(f"c{i}", size=2500))  # 10 KB each
            accepted += 1
    assert 5 <= accepted <= 7
    assert service.metrics()["capture_spool_bytes"] <= 1 << 16
    sink.failure = None
    wait_until(lambda: service.metrics()["capture_stored_total"] == accepted)
    service.submit(make_capture("after", size=2500))


def test_spool_budget_drop_oldest(make_config: MakeConfig, make_capture: MakeCapture,
                                  services: list[CaptureService], wait_until: WaitUntil) -> None:
    sink = MemorySink()
    sink.failure = ConnectionError("down")
    service = start(services, make_config(sagemaker_edge_db_enable=True,
                                          edgefleet_capture_spool_max_bytes=1 << 16,
                                          edgefleet_capture_overflow_policy="drop-oldest"), sink)
    for i in range(30):
        service.submit(make_capture(f"c{i:02d}", size=2500))
    wait_until(lambda: service.metrics()["capture_dropped_total"] > 0)
    dropped = service.metrics()["capture_dropped_total"]
    sink.failure = None
    wait_until(lambda: service.metrics()["capture_spool_records"] == 0)
    stored = ids(sink)
    assert len(stored) + dropped == 30
    assert "c29" in stored  # the newest are kept
    lost = sorted(set(f"c{i:02d}" for i in range(30)) - set(stored))
    assert all(service.status(capture_id) is CaptureStatus.FAILURE for capture_id in lost)
    assert service.metrics()["capture_failed_total"] == dropped


def test_sampled_captures_do_not_wait_and_are_marked(
        make_config: MakeConfig, make_capture: MakeCapture, services: list[CaptureService],
        wait_until: WaitUntil) -> None:
    sink = MemorySink()
    service = start(services, make_config(sagemaker_edge_db_enable=True), sink)
    service.submit(make_capture("sample-1", sampled=True))
    service.submit(make_capture("client-1"))
    wait_until(lambda: len(ids(sink)) == 2)
    sampled = {r.request.capture_id: r.request.sampled for r in sink.records()}
    assert sampled == {"sample-1": True, "client-1": False}


def test_metrics_names(make_config: MakeConfig, services: list[CaptureService]) -> None:
    service = start(services, make_config(), MemorySink())
    assert set(service.metrics()) == {
        "capture_accepted_total", "capture_refused_total", "capture_stored_total",
        "capture_failed_total", "capture_batches_total", "capture_delivery_failures_total",
        "capture_destination_up", "capture_buffered", "capture_spool_records",
        "capture_spool_bytes", "capture_spool_max_bytes", "capture_dropped_total",
        "capture_uploaded_files_total", "capture_upload_failures_total"}


def test_durable_close_leaves_captures_in_the_spool_without_waiting(
        make_config: MakeConfig, make_capture: MakeCapture, wait_until: WaitUntil) -> None:
    config = make_config(sagemaker_edge_db_enable=True)
    down = MemorySink()
    down.failure = ConnectionError("down")
    service = CaptureService(config, sink=down, retry=FAST)
    service.start()
    service.submit(make_capture("kept"))
    started = time.monotonic()
    service.close(timeout=10)
    assert time.monotonic() - started < 2
    assert service.status("kept") is CaptureStatus.IN_PROGRESS

    up = MemorySink()
    restarted = CaptureService(config, sink=up, retry=FAST)
    restarted.start()
    wait_until(lambda: restarted.status("kept") is CaptureStatus.SUCCESS)
    restarted.close()
    assert ids(up) == ["kept"]


def test_close_without_start(make_config: MakeConfig) -> None:
    config = make_config(sagemaker_edge_db_enable=True,
                         sagemaker_edge_core_capture_data_periodic_upload=True,
                         sagemaker_edge_provider_s3_bucket_name="captures",
                         edgefleet_s3_endpoint_url="http://127.0.0.1:9",
                         edgefleet_s3_access_key_id="key", edgefleet_s3_secret_access_key="secret")
    CaptureService(config).close()
