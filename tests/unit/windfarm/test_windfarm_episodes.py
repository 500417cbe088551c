"""Episode merging, stoppage detection, power curves and realism on small synthetic frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from windfarm import episodes

T0 = np.datetime64("2015-03-01T00:00", "ns")
STEP = np.timedelta64(10, "m")
HOUR = np.timedelta64(1, "h")


def hours(*offsets: float) -> np.ndarray:
    return np.array([T0 + np.timedelta64(int(h * 60), "m") for h in offsets])


def test_adjacent_flagged_windows_merge_and_a_gap_splits() -> None:
    starts = hours(0, 1, 2, 3, 4, 5)
    flags = np.array([True, True, False, True, False, False])
    assert episodes.merge_windows(starts, flags, HOUR) == [(T0, T0 + 2 * HOUR),
                                                          (T0 + 3 * HOUR, T0 + 4 * HOUR)]


def test_max_gap_bridges_a_short_gap() -> None:
    starts = hours(0, 1, 2)
    flags = np.array([True, False, True])
    assert episodes.merge_windows(starts, flags, HOUR, max_gap=HOUR) == [(T0, T0 + 3 * HOUR)]


def test_missing_windows_split_episodes() -> None:
    # Windows at 0 h and 2 h are both flagged, the 1 h window is missing (incomplete data).
    assert len(episodes.merge_windows(hours(0, 2), np.array([True, True]), HOUR)) == 2


def test_no_flag_no_episode() -> None:
    assert episodes.merge_windows(hours(0, 1), np.array([False, False]), HOUR) == []


def test_windows_below_cut_in_are_not_flagged() -> None:
    flags = episodes.flag_windows(np.array([5.0, 5.0, 0.5]), np.array([2.0, 8.0, 8.0]))
    assert flags.tolist() == [False, True, False]


def turbine_grid(power: list[float], wind: list[float]) -> pd.DataFrame:
    return pd.DataFrame({
        "time": T0 + STEP * np.arange(len(power)),
        "Ws_avg": wind, "P_avg": power, "Ba_avg": np.zeros(len(power)),
    })


def test_a_stop_of_an_hour_in_good_wind_is_a_stoppage() -> None:
    power = [800.0] * 2 + [0.0] * 6 + [800.0] * 2
    stops = episodes.find_stoppages(turbine_grid(power, [8.0] * 10), STEP)
    assert stops == [(T0 + 2 * STEP, T0 + 8 * STEP)]


def test_short_stops_and_calm_stops_are_not_stoppages() -> None:
    short = [800.0] * 2 + [0.0] * 5 + [800.0] * 3
    assert episodes.find_stoppages(turbine_grid(short, [8.0] * 10), STEP) == []
    calm = [0.0] * 10
    assert episodes.find_stoppages(turbine_grid(calm, [3.0] * 10), STEP) == []


def test_a_missing_record_breaks_a_stoppage() -> None:
    power = [0.0] * 4 + [np.nan] + [0.0] * 4
    assert episodes.find_stoppages(turbine_grid(power, [8.0] * 9), STEP) == []


def test_curve_is_the_binned_median_and_interpolates() -> None:
    rng = np.random.default_rng(0)
    wind = rng.uniform(0, 10, 5000)
    power = 100.0 * wind + rng.normal(0, 1, wind.size)
    power[:50] = 0.0  # a few stopped records do not move a median
    curve = episodes.fit_curve(wind, power)
    assert curve.centers[0] == pytest.approx(0.25)
    np.testing.assert_allclose(curve(np.array([2.25, 5.0, 7.75])), [225.0, 500.0, 775.0], atol=5)


def test_curve_drops_sparse_bins_and_nan() -> None:
    wind = np.array([1.1] * 20 + [9.1] * 3 + [np.nan])
    power = np.array([10.0] * 20 + [900.0] * 3 + [5.0])
    curve = episodes.fit_curve(wind, power)
    assert curve.centers.tolist() == [1.25]
    with pytest.raises(ValueError, match="no wind-speed bin"):
        episodes.fit_curve(wind[20:], power[20:])


LINEAR = episodes.BinnedCurve(np.array([0.0, 20.0]), np.array([0.0, 2000.0]))  # 100 kW per m/s
FLAT_PITCH = episodes.BinnedCurve(np.array([0.0, 20.0]), np.array([0.0, 0.0]))


def episode(power: float, expected: float, pitch_excess: float = 0.0) -> episodes.Episode:
    start = pd.Timestamp("2015-03-01", tz="UTC")
    return episodes.Episode("T1", start, start + pd.Timedelta(hours=2), 12, expected / 100,
                            power, expected, pitch_excess, 3.0)


@pytest.mark.parametrize(("power", "expected", "pitch", "kind"), [
    (0.0, 800.0, 60.0, "stopped"),
    (300.0, 800.0, 10.0, "curtailed"),
    (600.0, 800.0, 0.0, "underperforming"),
    (790.0, 800.0, 0.0, "other"),
    (790.0, 800.0, 8.0, "pitch deviation"),
    (1200.0, 800.0, 0.0, "overperforming"),
    (40.0, 50.0, 0.0, "other"),  # 10 kW short at low wind is not a clear deficit
])
def test_episode_kind(power: float, expected: float, pitch: float, kind: str) -> None:
    assert episode(power, expected, pitch).kind == kind


def test_deficit_and_energy() -> None:
    e = episode(300.0, 800.0)
    assert e.deficit == 500.0
    assert e.energy_lost == pytest.approx(1000.0)  # 500 kW for 12 x 10 min = 2 h
    assert e.duration == pd.Timedelta(hours=2)


def test_describe_measures_against_the_curves() -> None:
    records = turbine_grid([800.0] * 6 + [0.0] * 6 + [800.0] * 6, [8.0] * 18)
    records.loc[8, "Ba_avg"] = np.nan  # a record with a gap is left out of the means
    starts, scores = hours(0, 1, 2), np.array([0.2, 7.0, 0.3])
    (found,) = episodes.describe("T1", [(T0 + HOUR, T0 + 2 * HOUR)], records, LINEAR,
                                 FLAT_PITCH, starts, scores)
    assert (found.records, found.mean_power, found.expected_power) == (5, 0.0, 800.0)
    assert found.max_score == 7.0
    assert found.kind == "stopped"
    assert found.interval == (T0 + HOUR, T0 + 2 * HOUR)


def test_realism_counts_deficits_and_caught_stoppages() -> None:
    stopped = episode(0.0, 800.0)  # 2015-03-01 00:00-02:00
    harmless = episode(800.0, 800.0)
    stops = {"T1": [(T0 + HOUR, T0 + 3 * HOUR), (T0 + 5 * HOUR, T0 + 6 * HOUR)], "T2": []}
    result = episodes.realism([stopped, harmless], stops)
    assert (result.episodes, result.clear_deficit, result.stoppages, result.caught) == (2, 1, 2, 1)
    assert (result.deficit_share, result.caught_share) == (0.5, 0.5)


def test_overlap_is_half_open() -> None:
    assert not episodes.overlaps((T0, T0 + HOUR), [(T0 + HOUR, T0 + 2 * HOUR)])
    assert episodes.overlaps((T0, T0 + HOUR), [(T0 + 59 * np.timedelta64(1, "m"), T0 + 2 * HOUR)])
