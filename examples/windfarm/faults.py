"""Inject turbine faults into replayed windows, and measure how fast the demo's model flags them.

A :class:`Fault` names a kind (:data:`KINDS`), a turbine and a start time in 2015. Windows are
the demo's 1-hour rows (float32 ``[n, 24]``: for each of 6 ten-minute records ``Ws_avg`` m/s,
``P_avg`` kW, ``Ba_avg`` pitch deg, ``Ot_avg`` degC; see :class:`windfarm.data.Windows`); times
are ``datetime64[ns]`` (UTC, tz-naive).

The kinds, with the numbers used (docs/windfarm.md, "Fault injection", has the measurements):

- ``stoppage``: the turbine stops and stays stopped: power :data:`STOPPED_POWER_KW`, pitch
  feathered at :data:`FEATHERED_PITCH_DEG` (the 2014 medians of stopped records in 5 m/s or
  more of wind). It begins at the first window at or after ``start`` whose mean wind is at least
  :data:`STOPPAGE_ONSET_MS` (5 m/s, the demo's "clear stoppage" wind): from there on the
  stoppage costs energy (a turbine makes about 200 kW at 5 m/s).
- ``derating``: power capped at :data:`DERATE_FRACTION` (a quarter) of the 2050 kW rating, as a
  controller does to protect an overheating component; the pitch rises by
  :data:`PITCH_PER_SHED_DEG` times the fraction of power shed. It begins at the first window at
  or after ``start`` in which the cap costs at least :data:`DERATE_ONSET_KW` on average (mean wind
  about 9 m/s or more): the model misses smaller deficits (see the docs).
- ``stuck-sensor``: the anemometer (``Ws_avg``) freezes at the first reading at or after
  ``start`` of at least :data:`STUCK_ONSET_MS` (8 m/s), for good.
- ``drifting-sensor``: the anemometer reads high by an offset that grows by
  :data:`DRIFT_MS_PER_RECORD` every 10-minute record from ``start`` on (the first record at or
  after ``start`` is off by one step).

Where a fault begins (its *onset*) depends on the data for three kinds, while :func:`apply` must
give the same result for a window whichever batch it arrives in; so :func:`resolve` finds the
onset (and the stuck reading) once, on the whole replay, and :func:`apply`, :func:`affected` and
:func:`detection_delay` then depend only on the window, the resolved fault and absolute time.

``python -m windfarm.faults --measure`` (with ``examples/`` on ``PYTHONPATH``) trains the model
as the demo does, injects every kind at random (seeded) times across 2015 and prints the
detection delays that :data:`BOUNDS` is set from.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from windfarm import data, episodes, model, pipeline, replay

KINDS = ("stoppage", "derating", "stuck-sensor", "drifting-sensor")
#: The La Haute Borne turbines of the data set.
TURBINES = ("R80711", "R80721", "R80736", "R80790")
#: Faults are injected into the replayed year.
YEAR = 2015

#: A stopped MM82 in wind: median power (kW, the converter's own consumption) and pitch (deg)
#: of the 2014 records under 20 kW in 5 m/s or more of wind.
STOPPED_POWER_KW, FEATHERED_PITCH_DEG = -1.4, 90.0
#: A stoppage begins in the first window with at least this mean wind (m/s):
#: :data:`windfarm.episodes.STOP_WIND_MS`, the wind of the demo's "clear stoppages".
STOPPAGE_ONSET_MS = episodes.STOP_WIND_MS
#: A derated turbine makes at most this fraction of :data:`windfarm.data.RATED_POWER_KW`.
DERATE_FRACTION = 0.25
#: A derating begins in the first window in which the cap removes this much power on average
#: (kW). With 700 kW the model flagged nearly every onset window at once; with 500 kW it
#: missed some, and the next window costing that much could be days later (see the docs).
DERATE_ONSET_KW = 700.0
#: Pitch added per unit of power fraction shed by the cap (deg). Read off 2014: between 11 and
#: 15 m/s the MM82 pitches from about 1 to 10 deg while it sheds about 40 % of the power the
#: rotor could take from the wind (which grows as the cube of the wind speed).
PITCH_PER_SHED_DEG = 20.0
#: A stuck anemometer freezes at the first reading of at least this (m/s). Stuck
#: under the 3.5 m/s cut-in, every window reads calm and is never flagged; stuck at 5 m/s, the
#: real wind often stays close to the frozen reading for days (see the docs).
STUCK_ONSET_MS = 8.0
#: Growth of a drifting anemometer's offset, m/s per 10-minute record (2.9 m/s per day).
DRIFT_MS_PER_RECORD = 0.02

#: Per kind, the number of affected 1-hour windows (6 records each) within which the demo's
#: model flags an injected fault: the largest delay of 1,000 trials per kind
#: (``--measure --trials 1000 --seed 1``: 1, 12, 53 and 42), rounded up for the sensors
#: (docs/windfarm.md, "Fault injection").
BOUNDS: dict[str, int] = {
    "stoppage": 1,
    "derating": 12,
    "stuck-sensor": 60,
    "drifting-sensor": 48,
}

_RECORD = np.timedelta64(data.RECORD_MINUTES, "m")
_N_FEATURES = len(data.FEATURES)
#: Kinds whose onset depends on the data, so that :func:`resolve` must run first.
_DATA_ONSET = ("stoppage", "derating", "stuck-sensor")


def _utc(value: object) -> np.datetime64:
    """Normalise a time to ``datetime64[ns]``, tz-naive UTC."""
    return np.datetime64(value, "ns")  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True)
class Fault:
    """One injected fault.

    Attributes:
        kind: one of :data:`KINDS`.
        turbine: one of :data:`TURBINES`.
        start: when the fault may begin, ``datetime64[ns]`` UTC, tz-naive (like
            :attr:`windfarm.data.Windows.start`), in 2015.
        onset: when it does begin (set by :func:`resolve`: a window start, or for a stuck
            sensor a record start); ``None`` until then. A drifting sensor begins at ``start``.
        value: the frozen reading of a stuck sensor, m/s (set by :func:`resolve`).

    Raises:
        ValueError: unknown kind or turbine, or a start outside 2015.
    """

    kind: str
    turbine: str
    start: np.datetime64
    onset: np.datetime64 | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.turbine not in TURBINES:
            raise ValueError(
                f"unknown turbine {self.turbine!r}; use one of {', '.join(TURBINES)}")
        start = _utc(self.start)
        if start.astype("datetime64[Y]").astype(int) + 1970 != YEAR:
            raise ValueError(f"fault start {start} is not in {YEAR}, the replayed year")
        object.__setattr__(self, "start", start)
        if self.onset is not None:
            object.__setattr__(self, "onset", _utc(self.onset))

    @classmethod
    def parse(cls, text: str) -> Fault:
        """Parse the command-line form ``KIND:TURBINE:WHEN``, e.g. ``stoppage:R80736:2015-03-10``.

        ``WHEN`` is an ISO 8601 date or date and time in UTC (``2015-03-10T14:30``), in 2015.

        Raises:
            ValueError: malformed text, unknown kind or turbine, or a time outside 2015; the
                message lists what is allowed.
        """
        parts = text.split(":", 2)
        usage = (f"expected KIND:TURBINE:WHEN, e.g. stoppage:R80736:2015-03-10, with KIND one of "
                 f"{', '.join(KINDS)}, TURBINE one of {', '.join(TURBINES)} and WHEN an ISO "
                 f"date or date-time (UTC) in {YEAR}")
        if len(parts) != 3:
            raise ValueError(f"bad fault {text!r}: {usage}")
        kind, turbine, when = (part.strip() for part in parts)
        try:
            start = np.datetime64(when.removesuffix("Z"), "ns")
        except ValueError:
            raise ValueError(f"bad time {when!r} in fault {text!r}: {usage}") from None
        try:
            return cls(kind, turbine, start)
        except ValueError as error:
            raise ValueError(f"bad fault {text!r}: {error}; {usage}") from None

    @property
    def begins(self) -> np.datetime64:
        """When the fault begins: ``onset``, or ``start`` for a drifting sensor.

        Raises:
            ValueError: the fault's onset depends on the data and :func:`resolve` has not run.
        """
        if self.onset is not None:
            return self.onset
        if self.kind in _DATA_ONSET:
            raise ValueError(
                f"a {self.kind} fault begins where the data allows (see windfarm.faults); call "
                "faults.resolve(fault, x, start, turbine) on the whole replay first")
        return self.start

    def __str__(self) -> str:
        return f"{self.kind}:{self.turbine}:{self.start.astype('datetime64[m]')}"


def _check(x: np.ndarray, start: np.ndarray, turbine: np.ndarray) -> int:
    """Validate window arrays and return the records per window."""
    if x.ndim != 2 or x.shape[1] % _N_FEATURES or not x.shape[1]:
        raise ValueError(f"windows must be [n, records * {_N_FEATURES}], got shape {x.shape}")
    if not len(x) == len(start) == len(turbine):
        raise ValueError(f"x, start and turbine differ in length: "
                         f"{len(x)}, {len(start)}, {len(turbine)}")
    return int(x.shape[1] // _N_FEATURES)


def _column(records: int, feature: int) -> np.ndarray:
    return np.arange(records) * _N_FEATURES + feature


def resolve(fault: Fault, x: np.ndarray, start: np.ndarray, turbine: np.ndarray) -> Fault:
    """Find where ``fault`` begins in the replayed data, and a stuck sensor's frozen reading.

    Args:
        fault: the fault; an already resolved one is returned unchanged.
        x: float32 ``[n, 24]`` windows, in SCADA units (the whole replay, or at least every
            window of the turbine from ``fault.start`` to the onset).
        start: ``[n]`` window starts, ``datetime64[ns]`` UTC, tz-naive.
        turbine: ``[n]`` turbine names.

    Returns:
        ``fault`` with ``onset`` (a window start) and, for a stuck sensor, ``value`` (m/s) set.

    Raises:
        ValueError: bad array shapes, or no window at or after ``fault.start`` where the fault
            would begin (see the module docstring for each kind's rule).
    """
    records = _check(x, start, turbine)
    if fault.onset is not None:
        return fault
    if fault.kind not in _DATA_ONSET:
        return dataclasses.replace(fault, onset=fault.start)
    # Windows from start on; for a stuck reading (a record), also the one start falls in.
    reach = start + (records - 1) * _RECORD if fault.kind == "stuck-sensor" else start
    mine = np.flatnonzero((turbine == fault.turbine) & (reach >= fault.start))
    mine = mine[np.argsort(start[mine], kind="stable")]
    if fault.kind == "stuck-sensor":
        # Record by record: the frozen reading itself must be windy, not just its window.
        times = _record_times(start[mine], records).ravel()
        readings = x[mine][:, _column(records, model.WS)].ravel()
        begins = (times >= fault.start) & (readings >= STUCK_ONSET_MS)
        rule = f"a wind reading of {STUCK_ONSET_MS} m/s"
    elif fault.kind == "stoppage":
        begins = x[mine][:, _column(records, model.WS)].mean(axis=1) >= STOPPAGE_ONSET_MS
        rule = f"a mean wind of {STOPPAGE_ONSET_MS} m/s"
    else:
        power = x[mine][:, _column(records, model.POWER)]
        shed = np.maximum(power - DERATE_FRACTION * data.RATED_POWER_KW, 0).mean(axis=1)
        begins, rule = shed >= DERATE_ONSET_KW, f"{DERATE_ONSET_KW:.0f} kW over the cap"
    if not begins.any():
        raise ValueError(f"{fault}: no window of {fault.turbine} at or after {fault.start} has "
                         f"{rule}, so the fault never begins; pick an earlier start")
    first = int(np.argmax(begins))
    if fault.kind == "stuck-sensor":
        return dataclasses.replace(fault, onset=_utc(times[first]), value=float(readings[first]))
    return dataclasses.replace(fault, onset=_utc(start[mine[first]]))


def _record_times(start: np.ndarray, records: int) -> np.ndarray:
    return start[:, None].astype("datetime64[ns]") + np.arange(records) * _RECORD


def apply(fault: Fault, x: np.ndarray, start: np.ndarray, turbine: np.ndarray) -> np.ndarray:
    """Return a copy of ``x`` with ``fault`` injected into its turbine's records from onset on.

    A window's result depends only on that window, the fault and absolute time, so any batch
    or subset of the replay gives the same rows.

    Args:
        fault: a fault; a stoppage, derating or stuck sensor must be :func:`resolve`-d first.
        x: float32 ``[n, 24]`` windows (6 records of ``Ws_avg`` m/s, ``P_avg`` kW, ``Ba_avg``
            deg, ``Ot_avg`` degC), any ``n``; not modified.
        start: ``[n]`` window starts, ``datetime64[ns]`` UTC, tz-naive.
        turbine: ``[n]`` turbine names.

    Returns:
        float32 ``[n, 24]``.

    Raises:
        ValueError: bad array shapes, or an unresolved fault that needs :func:`resolve`.
    """
    records = _check(x, start, turbine)
    begins = fault.begins
    times = _record_times(np.asarray(start), records)
    active = (np.asarray(turbine) == fault.turbine)[:, None] & (times >= begins)
    cube = np.array(x, dtype=np.float32).reshape(len(x), records, _N_FEATURES)
    ws, power, pitch = (cube[..., i] for i in (model.WS, model.POWER, model.PITCH))
    if fault.kind == "stoppage":
        power[active] = STOPPED_POWER_KW
        pitch[active] = FEATHERED_PITCH_DEG
    elif fault.kind == "derating":
        cap = DERATE_FRACTION * data.RATED_POWER_KW
        shed = active & (power > cap)
        pitch[shed] += PITCH_PER_SHED_DEG * (1.0 - cap / power[shed])
        power[shed] = cap
    elif fault.kind == "stuck-sensor":
        assert fault.value is not None  # resolve sets it together with onset
        ws[active] = fault.value
    else:
        steps = (times - begins) // _RECORD + 1
        ws[active] += (DRIFT_MS_PER_RECORD * steps[active]).astype(np.float32)
    return cube.reshape(len(x), -1)


def affected(fault: Fault, start: np.ndarray, turbine: np.ndarray, *,
             records: int = 6) -> np.ndarray:
    """Boolean mask ``[n]`` of the windows ``fault`` affects: its turbine's from onset on.

    Every window that :func:`apply` changes is in the mask; a few in it may come out unchanged
    (a derated turbine in wind too light to reach the cap).

    Args:
        fault: a fault (resolved, for a stoppage, derating or stuck sensor).
        start: ``[n]`` window starts, ``datetime64[ns]`` UTC, tz-naive.
        turbine: ``[n]`` turbine names.
        records: 10-minute records per window.

    Raises:
        ValueError: an unresolved fault that needs :func:`resolve`.
    """
    last = np.asarray(start).astype("datetime64[ns]") + (records - 1) * _RECORD
    return np.asarray((np.asarray(turbine) == fault.turbine) & (last >= fault.begins))


def detection_delay(fault: Fault, start: np.ndarray, turbine: np.ndarray,
                    flags: np.ndarray) -> int | None:
    """Number of affected windows, in time order, up to and including the first flagged one.

    Args:
        fault: a fault (resolved, for a stoppage, derating or stuck sensor).
        start: ``[n]`` window starts, ``datetime64[ns]`` UTC, tz-naive.
        turbine: ``[n]`` turbine names.
        flags: ``[n]`` booleans, the flagged windows (:func:`windfarm.episodes.flag_windows`).

    Returns:
        1 when the first affected window is flagged, ...; ``None`` if none is flagged.
    """
    mask = affected(fault, start, turbine)
    order = np.argsort(np.asarray(start)[mask], kind="stable")
    hits = np.flatnonzero(np.asarray(flags, dtype=bool)[mask][order])
    return int(hits[0]) + 1 if len(hits) else None


@dataclass(frozen=True)
class Measurement:
    """Detection delays of one kind over many injected faults.

    Attributes:
        kind: the fault kind.
        delays: per trial, the delay in affected 1-hour windows, or ``None`` if never flagged.
        flagged_anyway: trials whose detecting window was flagged without the fault too.
    """

    kind: str
    delays: list[int | None]
    flagged_anyway: int

    @property
    def detected(self) -> int:
        """Trials the model flagged."""
        return sum(d is not None for d in self.delays)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of the delays of detected trials (windows); NaN if none."""
        found = [d for d in self.delays if d is not None]
        return float(np.percentile(found, q)) if found else float("nan")


def random_faults(kind: str, windows: data.Windows, n: int, rng: np.random.Generator,
                  ) -> list[Fault]:
    """``n`` resolved faults of ``kind``, turbines in turn, starts uniform over Jan-Nov 2015.

    Starts are whole minutes; one whose fault would never begin is drawn again.
    """
    first, last = np.datetime64(f"{YEAR}-01-01", "m"), np.datetime64(f"{YEAR}-12-01", "m")
    faults: list[Fault] = []
    while len(faults) < n:
        at = first + np.timedelta64(int(rng.integers(0, int((last - first).astype(int)))), "m")
        fault = Fault(kind, TURBINES[len(faults) % len(TURBINES)], _utc(at))
        try:
            faults.append(resolve(fault, windows.x, windows.start, windows.turbine))
        except ValueError:
            continue
    return faults


def measure(windows: data.Windows, scorer: replay.Scorer, *, trials: int = 60,
            seed: int = 0, kinds: tuple[str, ...] = KINDS) -> dict[str, Measurement]:
    """Inject each kind ``trials`` times into the replay and measure the detection delays.

    Args:
        windows: the replayed windows (2015).
        scorer: the model (``replay.OnnxScorer`` in-process, or an ``AgentScorer``).
        trials: faults per kind; the turbines take turns.
        seed: seed of the random start times.
        kinds: kinds to measure.
    """
    records = windows.length
    wind_columns = _column(records, model.WS)
    clean = episodes.flag_windows(scorer(windows.x)[1], windows.x[:, wind_columns].mean(axis=1))
    rng = np.random.default_rng(seed)
    result = {}
    for kind in kinds:
        delays: list[int | None] = []
        anyway = 0
        for fault in random_faults(kind, windows, trials, rng):
            mask = affected(fault, windows.start, windows.turbine, records=records)
            x = apply(fault, windows.x[mask], windows.start[mask], windows.turbine[mask])
            flags = clean.copy()
            flags[mask] = episodes.flag_windows(scorer(x)[1], x[:, wind_columns].mean(axis=1))
            delay = detection_delay(fault, windows.start, windows.turbine, flags)
            delays.append(delay)
            if delay is not None:
                hit = np.flatnonzero(mask)[np.argsort(windows.start[mask], kind="stable")]
                anyway += bool(clean[hit[delay - 1]])
        result[kind] = Measurement(kind, delays, anyway)
    return result


def _table(measurements: dict[str, Measurement]) -> Table:
    table = Table("kind", "trials", "detected", "p50", "p95", "max", "bound",
                  "flagged anyway", title="Detection delay, 1-hour windows")
    for kind, m in measurements.items():
        missed = m.detected < len(m.delays)
        table.add_row(kind, str(len(m.delays)), str(m.detected), f"{m.percentile(50):.0f}",
                      f"{m.percentile(95):.0f}", "never" if missed else f"{m.percentile(100):.0f}",
                      str(BOUNDS[kind]), str(m.flagged_anyway))
    return table


def main(
    measure_: Annotated[bool, typer.Option(
        "--measure", help="Train the demo's model and measure the detection delays.")] = False,
    trials: Annotated[int, typer.Option(help="Faults per kind.", min=1)] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the random fault times.")] = 0,
) -> None:
    """Fault injection for the wind-farm demo: ``--measure`` prints, per fault kind, how many
    1-hour windows the demo's model needs to flag an injected fault (docs/windfarm.md)."""
    if not measure_:
        raise typer.BadParameter("nothing to do; pass --measure", param_hint="--measure")
    console = Console()
    frame = data.load_scada(data.ensure_data(console), console)
    prepared = pipeline.prepare(frame)
    with console.status("Training"):
        detector = model.train(prepared.train_windows)
    with tempfile.TemporaryDirectory() as tmp:
        scorer = replay.OnnxScorer(model.save_onnx(detector, Path(tmp) / "model.onnx"))
        with console.status("Injecting faults"):
            found = measure(prepared.test_windows, scorer, trials=trials, seed=seed)
    console.print(_table(found))


if __name__ == "__main__":
    typer.run(main)
