"""Turn per-window anomaly scores into episodes, and measure them against the data.

Pure functions over numpy arrays and pandas frames; no I/O. Times are numpy ``datetime64[ns]``
(UTC, tz-naive), powers kW, wind speeds m/s, pitch angles deg.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: A time interval ``[start, end)`` (tz-naive UTC).
Interval = tuple[np.datetime64, np.datetime64]
_NO_GAP = np.timedelta64(0, "ns")

#: Senvion MM82 cut-in wind speed, m/s (manufacturer data sheet). Below it a turbine makes no
#: power whatever it does, so an anomalous window there costs nothing and is not reported.
CUT_IN_MS = 3.5
#: An episode has a clear power deficit when it lost at least this share of the expected power
#: and at least this many kW on average.
CLEAR_DEFICIT_SHARE, CLEAR_DEFICIT_KW = 0.10, 20.0
#: A clear stoppage: power under 20 kW (1 % of rated) while the wind blows 5 m/s or more
#: (well above cut-in), for at least 6 consecutive 10-minute records (1 hour).
STOP_WIND_MS, STOP_POWER_KW, STOP_MIN_RECORDS = 5.0, 20.0, 6
#: Pitch this much above its normal value for the wind speed marks a curtailed or derated turbine.
PITCHED_DEG = 5.0


def flag_windows(score: np.ndarray, mean_wind: np.ndarray, *,
                 cut_in: float = CUT_IN_MS) -> np.ndarray:
    """Return the boolean mask of anomalous windows: ``score >= 1`` with mean wind >= ``cut_in``.

    Args:
        score: ``[N]`` anomaly scores from the model (1 is the threshold).
        mean_wind: ``[N]`` mean wind speed of each window, m/s.
    """
    return (np.asarray(score) >= 1.0) & (np.asarray(mean_wind) >= cut_in)


def merge_windows(starts: np.ndarray, flags: np.ndarray, window: np.timedelta64,
                  max_gap: np.timedelta64 = _NO_GAP) -> list[Interval]:
    """Merge flagged windows into ``[start, end)`` intervals.

    Args:
        starts: ``[N]`` window start times, sorted ascending.
        flags: ``[N]`` booleans, true for anomalous windows.
        window: duration of one window.
        max_gap: flagged windows separated by at most this much unflagged time join one interval.

    Returns:
        Disjoint intervals in time order.
    """
    intervals: list[Interval] = []
    for start in np.asarray(starts)[np.asarray(flags, dtype=bool)]:
        end = start + window
        if intervals and start - intervals[-1][1] <= max_gap:
            intervals[-1] = (intervals[-1][0], max(intervals[-1][1], end))
        else:
            intervals.append((start, end))
    return intervals


def runs(times: np.ndarray, condition: np.ndarray, *, min_records: int,
         step: np.timedelta64) -> list[Interval]:
    """Return ``[start, end)`` intervals where ``condition`` holds for ``min_records`` or more.

    Args:
        times: ``[N]`` record start times on a regular grid of ``step``, sorted, without gaps.
        condition: ``[N]`` booleans.
        min_records: shortest run reported.
        step: record duration.
    """
    condition = np.asarray(condition, dtype=bool)
    edges = np.diff(np.concatenate([[0], condition.astype(np.int8), [0]]))
    begins, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        (times[b], times[e - 1] + step) for b, e in zip(begins, ends, strict=True)
        if e - b >= min_records
    ]


def find_stoppages(records: pd.DataFrame, step: np.timedelta64) -> list[Interval]:
    """Clear stoppages of one turbine: see :data:`STOP_WIND_MS` and friends.

    Args:
        records: one turbine's grid, columns ``time`` (datetime64[ns]), ``Ws_avg``, ``P_avg``;
            missing records are NaN and break a run.
        step: record duration.
    """
    stopped = (records["Ws_avg"] >= STOP_WIND_MS) & (records["P_avg"] < STOP_POWER_KW)
    return runs(records["time"].to_numpy(), stopped.to_numpy(), min_records=STOP_MIN_RECORDS,
                step=step)


@dataclass(frozen=True)
class BinnedCurve:
    """A median curve of some quantity against wind speed (e.g. the power curve).

    Attributes:
        centers: ``[B]`` wind-speed bin centres with enough data, m/s, ascending.
        values: ``[B]`` median of the quantity in each bin.
    """

    centers: np.ndarray
    values: np.ndarray

    def __call__(self, wind: np.ndarray) -> np.ndarray:
        """Interpolate the curve at wind speeds ``wind`` (m/s); clamped outside the bins."""
        return np.asarray(np.interp(wind, self.centers, self.values))


def fit_curve(wind: np.ndarray, values: np.ndarray, *, bin_width: float = 0.5,
              min_count: int = 10) -> BinnedCurve:
    """Binned median of ``values`` against ``wind`` (the IEC 61400-12 method uses 0.5 m/s bins).

    NaN pairs are ignored; bins with fewer than ``min_count`` points are dropped.

    Raises:
        ValueError: no bin has enough points.
    """
    wind, values = np.asarray(wind, dtype=float), np.asarray(values, dtype=float)
    keep = ~(np.isnan(wind) | np.isnan(values))
    frame = pd.DataFrame({"bin": np.floor(wind[keep] / bin_width), "value": values[keep]})
    stats = frame.groupby("bin")["value"].agg(["median", "count"])
    stats = stats[stats["count"] >= min_count]
    if stats.empty:
        raise ValueError(f"no wind-speed bin has {min_count} or more points to fit a curve")
    centers = (stats.index.to_numpy() + 0.5) * bin_width
    return BinnedCurve(centers, stats["median"].to_numpy())


@dataclass(frozen=True)
class Episode:
    """One anomaly episode of one turbine.

    Attributes:
        turbine: turbine name.
        start, end: ``[start, end)`` in UTC.
        records: 10-minute records with data inside the episode.
        mean_wind: m/s; mean_power, expected_power: kW (expected from the power curve).
        pitch_excess: mean pitch minus the normal pitch at the same wind speeds, deg.
        max_score: highest window score in the episode.
    """

    turbine: str
    start: pd.Timestamp
    end: pd.Timestamp
    records: int
    mean_wind: float
    mean_power: float
    expected_power: float
    pitch_excess: float
    max_score: float

    @property
    def duration(self) -> pd.Timedelta:
        """``end - start``."""
        return self.end - self.start

    @property
    def interval(self) -> Interval:
        """``(start, end)`` as tz-naive UTC ``datetime64``, like the other intervals here."""
        return (self.start.tz_localize(None).to_datetime64(),
                self.end.tz_localize(None).to_datetime64())

    @property
    def deficit(self) -> float:
        """Mean power deficit against the power curve, kW (negative: more power than normal)."""
        return self.expected_power - self.mean_power

    @property
    def energy_lost(self) -> float:
        """Energy deficit over the episode, kWh."""
        return self.deficit * self.records / 6.0

    @property
    def clear_deficit(self) -> bool:
        """True for a clear deficit (:data:`CLEAR_DEFICIT_SHARE` and :data:`CLEAR_DEFICIT_KW`)."""
        return self.deficit >= max(CLEAR_DEFICIT_KW, CLEAR_DEFICIT_SHARE * self.expected_power)

    @property
    def kind(self) -> str:
        """What the data shows in the episode.

        With a clear deficit: ``stopped`` (under 20 kW), ``curtailed`` (pitched up by
        :data:`PITCHED_DEG` or more) or ``underperforming``. Without: ``overperforming`` (a clear
        power *excess*: typically the wind-speed reading is too low), ``pitch deviation`` or
        ``other``.
        """
        margin = max(CLEAR_DEFICIT_KW, CLEAR_DEFICIT_SHARE * self.expected_power)
        if self.clear_deficit:
            if self.mean_power < STOP_POWER_KW:
                return "stopped"
            return "curtailed" if self.pitch_excess >= PITCHED_DEG else "underperforming"
        if -self.deficit >= margin:
            return "overperforming"
        return "pitch deviation" if abs(self.pitch_excess) >= PITCHED_DEG else "other"


def describe(
    turbine: str, intervals: list[Interval], records: pd.DataFrame,
    power_curve: BinnedCurve, pitch_curve: BinnedCurve, window_starts: np.ndarray,
    window_scores: np.ndarray,
) -> list[Episode]:
    """Measure each interval of one turbine against its normal curves.

    Args:
        turbine: turbine name.
        intervals: ``[start, end)`` intervals from :func:`merge_windows`.
        records: that turbine's grid, columns ``time``, ``Ws_avg``, ``P_avg``, ``Ba_avg``.
        power_curve, pitch_curve: the turbine's normal power (kW) and pitch (deg) curves.
        window_starts, window_scores: ``[N]`` every scored window of that turbine.
    """
    times = records["time"].to_numpy()
    episodes = []
    for start, end in intervals:
        inside = records[(times >= start) & (times < end)]
        inside = inside.dropna(subset=["Ws_avg", "P_avg", "Ba_avg"])
        wind = inside["Ws_avg"].to_numpy()
        scores = window_scores[(window_starts >= start) & (window_starts < end)]
        episodes.append(Episode(
            turbine=turbine, start=pd.Timestamp(start, tz="UTC"), end=pd.Timestamp(end, tz="UTC"),
            records=len(inside), mean_wind=float(wind.mean()),
            mean_power=float(inside["P_avg"].mean()),
            expected_power=float(power_curve(wind).mean()),
            pitch_excess=float((inside["Ba_avg"].to_numpy() - pitch_curve(wind)).mean()),
            max_score=float(scores.max()) if len(scores) else float("nan"),
        ))
    return episodes


def overlaps(interval: Interval, others: list[Interval]) -> bool:
    """True when ``interval`` shares any time with one of ``others`` (all ``[start, end)``)."""
    start, end = interval
    return any(o_start < end and start < o_end for o_start, o_end in others)


@dataclass(frozen=True)
class Realism:
    """How well episodes match what is plainly visible in the data.

    Attributes:
        episodes: number of episodes; clear_deficit: how many have a clear power deficit.
        stoppages: clear stoppages (:func:`find_stoppages`) of >= 1 hour; caught: how many
            overlap an episode.
    """

    episodes: int
    clear_deficit: int
    stoppages: int
    caught: int

    @property
    def deficit_share(self) -> float:
        """Share of episodes with a clear power deficit (precision-like), 0..1."""
        return self.clear_deficit / self.episodes if self.episodes else float("nan")

    @property
    def caught_share(self) -> float:
        """Share of clear stoppages caught (recall-like), 0..1."""
        return self.caught / self.stoppages if self.stoppages else float("nan")


def realism(episodes: list[Episode], stoppages: dict[str, list[Interval]]) -> Realism:
    """Compare ``episodes`` with the clear ``stoppages`` of each turbine (name -> intervals)."""
    by_turbine: dict[str, list[Interval]] = {}
    for episode in episodes:
        by_turbine.setdefault(episode.turbine, []).append(episode.interval)
    caught = sum(
        overlaps(stop, by_turbine.get(turbine, []))
        for turbine, stops in stoppages.items() for stop in stops
    )
    return Realism(
        episodes=len(episodes), clear_deficit=sum(e.clear_deficit for e in episodes),
        stoppages=sum(len(s) for s in stoppages.values()), caught=caught,
    )
