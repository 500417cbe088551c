"""The demo's fault-injection page over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from windfarm import faults
from windfarm.controls import ControlPage
from windfarm.live import InjectedFault

TURBINES = ["R80711", "R80721"]


@pytest.fixture()
def page() -> Iterator[tuple[ControlPage, list[tuple[str, str]]]]:
    calls: list[tuple[str, str]] = []
    entries: list[InjectedFault] = []

    def inject(kind: str, turbine: str) -> None:
        if turbine == "R80721" and kind == "stoppage":
            raise ValueError("the replay has passed the last day of 2015")
        calls.append((kind, turbine))
        entries.append(InjectedFault(faults.Fault(kind, turbine, np.datetime64("2015-03-01")),
                                     np.datetime64("2015-03-04"), "control page"))

    with ControlPage(0, turbines=TURBINES, inject=inject, entries=lambda: list(entries),
                     replay_day=lambda: "2015-03-01", dashboard="http://127.0.0.1:1/",
                     days=3.0) as running:
        yield running, calls


def test_the_form_injects_a_fault_and_the_table_shows_it(
        page: tuple[ControlPage, list[tuple[str, str]]]) -> None:
    running, calls = page
    with httpx.Client(base_url=running.url) as client:
        shown = client.get("/").text
        assert all(f"<option>{t}</option>" in shown for t in TURBINES)
        assert all(f"<option>{k}</option>" in shown for k in faults.KINDS)
        assert "none yet" in client.get("/faults").text
        answer = client.post("/inject", data={"kind": "derating", "turbine": "R80711"})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert calls == [("derating", "R80711")]
        table = client.get("/faults").text
        assert "R80711" in table and "derating" in table and "waiting for the replay" in table


def test_bad_requests_are_refused_with_a_reason(
        page: tuple[ControlPage, list[tuple[str, str]]]) -> None:
    running, calls = page
    with httpx.Client(base_url=running.url) as client:
        unknown = client.post("/inject", data={"kind": "meteor", "turbine": "R80711"})
        assert unknown.status_code == 400 and "meteor" in unknown.text
        stranger = client.post("/inject", data={"kind": "stoppage", "turbine": "R99999"})
        assert stranger.status_code == 400
        late = client.post("/inject", data={"kind": "stoppage", "turbine": "R80721"})
        assert late.status_code == 400 and "passed the last day" in late.text
        assert client.get("/nowhere").status_code == 404
    assert calls == []
