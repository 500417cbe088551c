"""The demo's steps as plain functions, shared by the CLI and the integration test.

prepare (2014/2015 split, windows) -> train -> [score 2015, by the agent or in-process]
-> analyse (episodes, power curves, stoppages, realism).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from windfarm import data, episodes, model
from windfarm.episodes import BinnedCurve, Episode, Interval, Realism


@dataclass(frozen=True)
class Prepared:
    """The data split for training (2014) and replay (2015).

    Attributes:
        train, test: SCADA grids (see :func:`data.clean`) of 2014 and 2015.
        train_windows, test_windows: their complete 1-hour windows.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    train_windows: data.Windows
    test_windows: data.Windows


def prepare(frame: pd.DataFrame, *, window_records: int = 6) -> Prepared:
    """Split ``frame`` (from :func:`data.load_scada`) by year and cut windows."""
    train, test = data.split_years(frame)
    return Prepared(train, test, data.make_windows(train, window_records),
                    data.make_windows(test, window_records))


def _naive_times(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["time"] = frame["time"].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


@dataclass(frozen=True)
class Analysis:
    """Episodes of the replayed year and how they match the data.

    Attributes:
        turbines: turbine names, sorted.
        episodes: all episodes, by turbine then time.
        records: turbine -> its replayed grid with tz-naive UTC ``time``.
        power_curves, pitch_curves: turbine -> normal curves fitted on the training year.
        stoppages: turbine -> clear stoppages of >= 1 hour in the replayed year.
        realism_by_turbine, realism_total: :class:`episodes.Realism` per turbine and overall.
    """

    turbines: list[str]
    episodes: list[Episode]
    records: dict[str, pd.DataFrame]
    power_curves: dict[str, BinnedCurve]
    pitch_curves: dict[str, BinnedCurve]
    stoppages: dict[str, list[Interval]]
    realism_by_turbine: dict[str, Realism]
    realism_total: Realism


def analyse(prepared: Prepared, score: np.ndarray) -> Analysis:
    """Merge anomalous windows into episodes and measure them.

    Args:
        prepared: from :func:`prepare`.
        score: ``[n]`` model scores of ``prepared.test_windows`` (>= 1: anomalous).
    """
    windows = prepared.test_windows
    step = np.timedelta64(data.RECORD_MINUTES, "m")
    wind_columns = np.arange(windows.length) * len(data.FEATURES) + model.WS
    mean_wind = windows.x[:, wind_columns].mean(axis=1)
    flags = episodes.flag_windows(score, mean_wind)
    train, test = _naive_times(prepared.train), _naive_times(prepared.test)
    turbines = sorted(test["turbine"].unique())
    result: list[Episode] = []
    records, power_curves, pitch_curves, stoppages, realism = {}, {}, {}, {}, {}
    for turbine in turbines:
        history = train[train["turbine"] == turbine]
        normal = history[model.normal_records(history["Ws_avg"].to_numpy(),
                                              history["P_avg"].to_numpy(),
                                              history["Ba_avg"].to_numpy())]
        power_curves[turbine] = episodes.fit_curve(normal["Ws_avg"], normal["P_avg"])
        pitch_curves[turbine] = episodes.fit_curve(normal["Ws_avg"], normal["Ba_avg"])
        records[turbine] = test[test["turbine"] == turbine].reset_index(drop=True)
        mine = windows.turbine == turbine
        intervals = episodes.merge_windows(windows.start[mine], flags[mine], step * windows.length)
        found = episodes.describe(
            turbine, intervals, records[turbine], power_curves[turbine], pitch_curves[turbine],
            windows.start[mine], score[mine])
        stoppages[turbine] = episodes.find_stoppages(records[turbine], step)
        realism[turbine] = episodes.realism(found, {turbine: stoppages[turbine]})
        result.extend(found)
    return Analysis(turbines, result, records, power_curves, pitch_curves, stoppages, realism,
                    episodes.realism(result, stoppages))
