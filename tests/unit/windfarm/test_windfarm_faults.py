"""Fault injection on synthetic windows: parsing, what each kind changes, batch independence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from windfarm import data, faults, model

T0 = np.datetime64("2015-03-01T00:00", "ns")
HOUR = np.timedelta64(1, "h")
RECORDS = 6
TURBINES = np.array(["R80711", "R80736"], dtype=object)


def windows(hours: int = 48, wind: float = 9.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two turbines, ``hours`` consecutive windows each, steady ``wind`` with a small ripple."""
    start = np.tile(T0 + np.arange(hours) * HOUR, len(TURBINES))
    turbine = np.repeat(TURBINES, hours)
    ripple = 0.5 * np.sin(np.arange(len(start) * RECORDS) / 5.0).reshape(-1, RECORDS)
    cube = np.zeros((len(start), RECORDS, len(data.FEATURES)), dtype=np.float32)
    cube[..., model.WS] = wind + ripple
    cube[..., model.POWER] = 1500.0 + 100 * ripple
    cube[..., model.PITCH] = -1.0
    cube[..., model.TEMP] = 10.0
    return cube.reshape(len(start), -1), start, turbine


def feature(x: np.ndarray, index: int) -> np.ndarray:
    return x.reshape(len(x), RECORDS, -1)[..., index]


def injected(kind: str, at: np.datetime64 = T0 + 10 * HOUR, **fields: object) -> faults.Fault:
    x, start, turbine = windows()
    fault = faults.Fault(kind, "R80736", at, **fields)  # type: ignore[arg-type]
    return faults.resolve(fault, x, start, turbine)


def test_parse_a_date_and_a_datetime() -> None:
    fault = faults.Fault.parse("stoppage:R80736:2015-03-10")
    assert fault == faults.Fault("stoppage", "R80736", np.datetime64("2015-03-10", "ns"))
    assert fault.start.dtype == np.dtype("datetime64[ns]")
    later = faults.Fault.parse("drifting-sensor:R80711:2015-03-10T14:30")
    assert later.start == np.datetime64("2015-03-10T14:30", "ns")


@pytest.mark.parametrize(("text", "names"), [
    ("stoppage:R80736", "KIND:TURBINE:WHEN"),
    ("icing:R80736:2015-03-10", "stuck-sensor"),
    ("stoppage:R99999:2015-03-10", "R80790"),
    ("stoppage:R80736:2014-03-10", "2015"),
    ("stoppage:R80736:March", "ISO"),
])
def test_parse_errors_say_what_is_allowed(text: str, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        faults.Fault.parse(text)


@pytest.mark.parametrize("kind", faults.KINDS)
def test_each_kind_changes_only_its_turbine_from_onset_on(kind: str) -> None:
    x, start, turbine = windows()
    fault = injected(kind)
    out = faults.apply(fault, x, start, turbine)
    assert out.dtype == np.float32 and out.shape == x.shape
    changed = (out != x).any(axis=1)
    mask = faults.affected(fault, start, turbine)
    assert changed.any()
    assert not (changed & ~mask).any()
    assert (turbine[changed] == "R80736").all()
    assert start[changed].min() >= fault.start - HOUR
    assert np.array_equal(x, windows()[0])  # the input is left alone


def test_stoppage_at_high_wind_feathers_and_stops() -> None:
    x, start, turbine = windows()
    x[(turbine == "R80736") & (start < T0 + 20 * HOUR), model.WS::4] = 3.0  # calm until 20 h
    fault = faults.resolve(faults.Fault("stoppage", "R80736", T0 + 5 * HOUR), x, start, turbine)
    assert fault.onset == T0 + 20 * HOUR
    out = faults.apply(fault, x, start, turbine)
    hit = faults.affected(fault, start, turbine)
    assert np.allclose(feature(out[hit], model.POWER), faults.STOPPED_POWER_KW)
    assert np.allclose(feature(out[hit], model.PITCH), faults.FEATHERED_PITCH_DEG)
    assert np.array_equal(out[~hit], x[~hit])


def test_derating_caps_power_and_raises_pitch() -> None:
    x, start, turbine = windows()
    fault = injected("derating")
    out = faults.apply(fault, x, start, turbine)
    hit = faults.affected(fault, start, turbine)
    cap = faults.DERATE_FRACTION * data.RATED_POWER_KW
    assert np.allclose(feature(out[hit], model.POWER), cap)
    shed = 1 - cap / feature(x[hit], model.POWER)
    assert np.allclose(feature(out[hit], model.PITCH) + 1.0, faults.PITCH_PER_SHED_DEG * shed,
                       atol=1e-4)


def test_a_derating_that_never_costs_enough_never_begins() -> None:
    x, start, turbine = windows(wind=5.0)
    x[:, model.POWER::4] = 300.0
    with pytest.raises(ValueError, match="never begins"):
        faults.resolve(faults.Fault("derating", "R80736", T0), x, start, turbine)


def test_stuck_sensor_freezes_the_first_windy_reading() -> None:
    x, start, turbine = windows()
    fault = injected("stuck-sensor", T0 + 10 * HOUR + np.timedelta64(20, "m"))
    onset_window = (turbine == "R80736") & (start == T0 + 10 * HOUR)
    assert fault.onset == T0 + 10 * HOUR + np.timedelta64(20, "m")
    assert fault.value == pytest.approx(float(x[onset_window, 2 * 4 + model.WS][0]))
    out = faults.apply(fault, x, start, turbine)
    frozen = feature(out, model.WS)[onset_window][0]
    assert np.array_equal(frozen[2:], np.full(4, np.float32(fault.value)))
    assert np.array_equal(frozen[:2], feature(x, model.WS)[onset_window][0][:2])


def test_an_unresolved_fault_says_to_resolve_it() -> None:
    x, start, turbine = windows()
    with pytest.raises(ValueError, match=r"faults\.resolve"):
        faults.apply(faults.Fault("stoppage", "R80736", T0), x, start, turbine)


def test_drift_grows_by_its_rate_every_record() -> None:
    x, start, turbine = windows()
    fault = faults.Fault("drifting-sensor", "R80736", T0 + 10 * HOUR)
    offset = feature(faults.apply(fault, x, start, turbine) - x, model.WS)
    mine = (turbine == "R80736") & (start >= fault.start)
    expected = faults.DRIFT_MS_PER_RECORD * np.arange(1, RECORDS * mine.sum() + 1)
    assert np.allclose(offset[mine].ravel(), expected, atol=1e-4)
    assert not offset[~mine].any()


@pytest.mark.parametrize("kind", faults.KINDS)
def test_a_window_comes_out_the_same_in_any_batch(kind: str) -> None:
    x, start, turbine = windows()
    fault = injected(kind)
    whole = faults.apply(fault, x, start, turbine)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    for batch in np.array_split(order, 7):  # shuffled, uneven, mixed turbines
        assert np.array_equal(faults.apply(fault, x[batch], start[batch], turbine[batch]),
                              whole[batch])
    day = (turbine == "R80736") & (start >= T0 + 24 * HOUR)
    assert np.array_equal(faults.apply(fault, x[day], start[day], turbine[day]), whole[day])


def test_resolve_is_idempotent_and_keeps_the_requested_start() -> None:
    x, start, turbine = windows()
    fault = injected("stoppage", T0 + 10 * HOUR + np.timedelta64(5, "m"))
    assert fault.start == T0 + 10 * HOUR + np.timedelta64(5, "m")
    assert fault.onset == T0 + 11 * HOUR  # the first window at or after start
    assert faults.resolve(fault, x, start, turbine) is fault


def test_affected_and_detection_delay() -> None:
    _, start, turbine = windows()
    fault = faults.Fault("drifting-sensor", "R80736", T0 + 10 * HOUR + np.timedelta64(30, "m"))
    mask = faults.affected(fault, start, turbine)
    # The window holding the start is affected: its last three records drift.
    assert start[mask].min() == T0 + 10 * HOUR and (turbine[mask] == "R80736").all()
    assert mask.sum() == 38
    flags = np.zeros(len(start), dtype=bool)
    assert faults.detection_delay(fault, start, turbine, flags) is None
    flags[(turbine == "R80711") & (start == T0 + 12 * HOUR)] = True  # other turbine: ignored
    flags[(turbine == "R80736") & (start == T0 + 5 * HOUR)] = True  # before the fault: ignored
    assert faults.detection_delay(fault, start, turbine, flags) is None
    flags[(turbine == "R80736") & (start == T0 + 13 * HOUR)] = True
    flags[(turbine == "R80736") & (start == T0 + 20 * HOUR)] = True
    assert faults.detection_delay(fault, start, turbine, flags) == 4
    # Order of the arrays does not matter.
    order = np.random.default_rng(1).permutation(len(start))
    assert faults.detection_delay(fault, start[order], turbine[order], flags[order]) == 4


def test_bounds_cover_every_kind() -> None:
    assert set(faults.BOUNDS) == set(faults.KINDS)
    assert all(bound >= 1 for bound in faults.BOUNDS.values())


def test_fault_rejects_unknown_names_directly() -> None:
    with pytest.raises(ValueError, match="stoppage, derating"):
        faults.Fault("bogus", "R80736", T0)
    fault = faults.Fault("derating", "R80736", T0)
    with pytest.raises(ValueError, match="R80711"):
        dataclasses.replace(fault, turbine="R1")
