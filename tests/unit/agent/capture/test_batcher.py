"""Batch layout and names (batcher.py)."""

from __future__ import annotations

from collections.abc import Callable

from edgefleet.agent.capture.batcher import Layout
from edgefleet.agent.types import CaptureRequest

MakeCapture = Callable[..., CaptureRequest]
HOUR_NS = 3600 * 1_000_000_000


def test_layout_keys(make_capture: MakeCapture) -> None:
    request = make_capture("c")
    assert Layout("", "windfarm", "edge-1").directory(request) == "windfarm/anomaly/2026/11/23/19"
    layout = Layout("/site-a/captures/", "windfarm", "edge-1")
    directory = layout.directory(request)
    assert directory == "site-a/captures/windfarm/anomaly/2026/11/23/19"
    assert layout.key(directory, "s1", 42) == f"{directory}/edge-1-s1-0000000042.jsonl"


def test_groups_by_model_and_hour_in_arrival_order(make_capture: MakeCapture) -> None:
    layout = Layout("", "f", "d")
    a, b, c, d = (make_capture("a"), make_capture("b", model="other"), make_capture("c"),
                  make_capture("d", time_ns=make_capture("x").inference_time_ns + HOUR_NS))
    groups = layout.group([a, b, c, d])
    assert [[r.capture_id for r in requests] for _, requests in groups] == [
        ["a", "c"], ["b"], ["d"]]
    assert groups[2][0].endswith("/2026/11/23/20")
