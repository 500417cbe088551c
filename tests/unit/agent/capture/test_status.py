"""The capture status table (status.py)."""

from __future__ import annotations

import time

import pytest

from edgefleet.agent.capture.status import StatusTable
from edgefleet.agent.types import CaptureStatus
from edgefleet.errors import AlreadyExists, NotFound


def test_transitions_and_duplicates() -> None:
    table = StatusTable(ttl=60)
    with pytest.raises(NotFound, match="unknown"):
        table.get("c")
    table.reserve("c")
    assert table.get("c") is CaptureStatus.IN_PROGRESS
    with pytest.raises(AlreadyExists, match="IN_PROGRESS"):
        table.reserve("c")
    table.finish(["c"], CaptureStatus.SUCCESS)
    assert table.get("c") is CaptureStatus.SUCCESS
    with pytest.raises(AlreadyExists, match="SUCCESS"):
        table.reserve("c")


def test_finished_ids_expire_and_can_be_used_again() -> None:
    table = StatusTable(ttl=0.05)
    table.reserve("c")
    table.reserve("running")
    table.finish(["c"], CaptureStatus.FAILURE)
    time.sleep(0.06)
    with pytest.raises(NotFound, match="expired"):
        table.get("c")
    assert table.get("running") is CaptureStatus.IN_PROGRESS  # in progress never expires
    table.reserve("c")
    assert len(table) == 2


def test_forget_releases_a_reservation() -> None:
    table = StatusTable(ttl=60)
    table.reserve("c")
    table.forget("c")
    table.reserve("c")


def test_explicit_expiry_from_a_previous_run() -> None:
    table = StatusTable(ttl=60)
    table.finish(["old"], CaptureStatus.SUCCESS, expires=time.time() - 1)
    table.finish(["recent"], CaptureStatus.SUCCESS, expires=time.time() + 60)
    with pytest.raises(NotFound):
        table.get("old")
    assert table.get("recent") is CaptureStatus.SUCCESS


def test_finished_ids_beyond_the_limit_are_forgotten_oldest_first() -> None:
    table = StatusTable(ttl=3600, max_finished=3)
    for number in range(5):
        table.reserve(f"c{number}")
    table.reserve("running")
    table.finish(["c0", "c1"], CaptureStatus.SUCCESS)
    table.finish(["c0"], CaptureStatus.FAILURE)  # finished again: its newer entry counts
    table.finish(["c2", "c3", "c4"], CaptureStatus.SUCCESS)

    for forgotten in ("c0", "c1"):
        with pytest.raises(NotFound, match="the last 3 at most"):
            table.get(forgotten)
    assert [table.get(f"c{n}") for n in (2, 3, 4)] == [CaptureStatus.SUCCESS] * 3
    assert table.get("running") is CaptureStatus.IN_PROGRESS  # never forgotten
    assert len(table) == 4
