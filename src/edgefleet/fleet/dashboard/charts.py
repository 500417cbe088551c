"""Charts of a device's heartbeat history, drawn by matplotlib as SVG on the server.

The object-oriented API (``Figure`` + the SVG canvas) draws without pyplot's global state, so
threads of the server can draw at once; no GUI backend is touched. :class:`ChartCache` keeps
the latest drawings: a chart only changes when a new sample can exist, once per sampling
period, so the cache key holds that period's number.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, DateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter

from edgefleet.drift import PSI_THRESHOLD
from edgefleet.fleet.captures import HourCount
from edgefleet.fleet.drift_series import DriftSeries
from edgefleet.fleet.history import Sample, rate

T = TypeVar("T")

#: The dashboard's colours (static/dashboard.css uses the same).
INK, MUTED, GRID = "#1f2328", "#656d76", "#d8dee4"
BLUE, ORANGE, RED, GREEN, PURPLE = "#0969da", "#bc4c00", "#cf222e", "#1a7f37", "#8250df"
MIB = 1 << 20
#: Colours of successive models or model versions in one chart.
CYCLE = (BLUE, PURPLE, GREEN, ORANGE, "#1b7c83", "#bf3989")
#: Records-per-hour charts longer than this many hours show a bar per day instead.
DAILY_AFTER_HOURS = 96
#: PSI under which no shift is read (Siddiqi 2006; edgefleet.drift).
PSI_MODERATE = 0.1
#: Least share of a drift chart's height a PSI band needs to carry its label.
BAND_LABEL_SHARE = 0.08

def _formatter(seconds: float) -> Formatter:
    # Ticks of ranges under half an hour would all read the same minute without seconds.
    form = "%H:%M:%S" if seconds < 1800 else "%H:%M"
    found: Formatter = DateFormatter(form, tz=dt.UTC)  # type: ignore[no-untyped-call]
    return found


def _time(epoch: float) -> float:
    # matplotlib's date numbers count days since its default epoch, 1970-01-01 UTC.
    return epoch / 86_400.0


def _figure(heights: Sequence[float]) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(10.0, 1.6 * sum(heights) + 0.5), dpi=100)
    figure.set_layout_engine("constrained")
    axes = list(figure.subplots(len(heights), 1, sharex=True, squeeze=False,
                                gridspec_kw={"height_ratios": list(heights)})[:, 0])
    for ax in axes:
        ax.set_facecolor("white")
        ax.grid(True, color=GRID, linewidth=0.6)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        for side in ("left", "bottom"):
            ax.spines[side].set_color(GRID)
        ax.tick_params(colors=MUTED, labelsize=9)
    return figure, axes


def _title(ax: Axes, text: str) -> None:
    ax.set_title(text, loc="left", fontsize=10, color=INK, fontweight="bold")


def _series(ax: Axes, samples: Sequence[Sample], value: Callable[[Sample], float | None],
            color: str, label: str) -> bool:
    points = [(_time(s.at), v) for s in samples if (v := value(s)) is not None]
    if not points:
        return False
    times, values = zip(*points, strict=True)
    ax.plot(times, values, color=color, linewidth=1.6, label=label,
            marker="o" if len(points) < 30 else None, markersize=3)
    return True


def _empty(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no samples in this range", transform=ax.transAxes, ha="center",
            va="center", color=MUTED, fontsize=9)


def start(samples: Sequence[Sample], since: float, until: float) -> float:
    """Where a chart's time axis starts: ``since``, or shortly before the first sample when
    the history is shorter than the range (a new device's lines are not squeezed into the
    right edge)."""
    if not samples or samples[0].at <= since:
        return since
    return max(since, samples[0].at - 0.05 * (until - samples[0].at) - 1.0)


def _finish(figure: Figure, axes: list[Axes], since: float, until: float) -> bytes:
    axes[-1].set_xlim(_time(since), _time(until))
    axes[-1].xaxis.set_major_formatter(_formatter(until - since))
    axes[-1].set_xlabel("UTC", color=MUTED, fontsize=9, loc="right")
    out = io.BytesIO()
    figure.savefig(out, format="svg")
    return out.getvalue()


def agent_chart(samples: Sequence[Sample], *, since: float, until: float,
                gap_seconds: float) -> bytes:
    """SVG: heartbeat timeline (gaps longer than ``gap_seconds`` in red), agent CPU (% of one
    core), resident memory (MiB) and capture spool (MiB) over ``since``..``until`` (epoch s)."""
    since = start(samples, since, until)
    figure, (beats, cpu, rss, spool) = _figure((0.45, 1, 1, 1))
    _title(beats, "Heartbeats (green: sampled; red: none for longer than the connected window)")
    beats.set_yticks([])
    beats.set_ylim(0, 1)
    if samples:
        beats.vlines([_time(s.at) for s in samples], 0.1, 0.9, color=GREEN, linewidth=1.2)
        # Before the first sample there is no history, which is not a silence of the device.
        edges = [s.at for s in samples] + [until]
        for begin, end in itertools.pairwise(edges):
            if end - begin > gap_seconds:
                beats.axvspan(_time(begin), _time(end), color=RED, alpha=0.25, linewidth=0)
    else:
        _empty(beats)
    for ax, title, name, scale, color in (
            (cpu, "Agent CPU (% of one core)", "cpu-percent", 1.0, BLUE),
            (rss, "Agent memory, resident (MiB)", "rss-bytes", MIB, PURPLE),
            (spool, "Capture spool (MiB)", "capture-spool-bytes", MIB, ORANGE)):
        _title(ax, title)
        if not _series(ax, samples, lambda s, n=name, k=scale: (  # type: ignore[misc]
                None if n not in s.agent else s.agent[n] / k), color, title):
            _empty(ax)
        ax.set_ylim(bottom=0)
    return _finish(figure, [beats, cpu, rss, spool], since, until)


def model_chart(samples: Sequence[Sample], model: str, *, since: float, until: float) -> bytes:
    """SVG of one model: inference rate (/s), latency p50 and p99 (ms), errors (/s), from
    the samples' counts over their ``interval_seconds``."""
    since = start(samples, since, until)
    figure, (rates, latency, errors) = _figure((1, 1, 0.7))
    _title(rates, f"{model}: inferences per second")
    if not _series(rates, samples, lambda s: rate(s, model, "inference-count"), BLUE, "rate"):
        _empty(rates)
    _title(latency, "Latency (ms): p50 and p99")
    shown = [_series(latency, samples, lambda s, n=name: (  # type: ignore[misc]
        s.models.get(model, {}).get(n)), color, label)
        for name, color, label in (("latency-p50-ms", BLUE, "p50"),
                                   ("latency-p99-ms", ORANGE, "p99"))]
    if any(shown):
        latency.legend(loc="upper left", fontsize=8, frameon=False, ncols=2)
    else:
        _empty(latency)
    _title(errors, "Errors per second")
    if not _series(errors, samples, lambda s: rate(s, model, "error-count"), RED, "errors"):
        _empty(errors)
    for ax in (rates, latency, errors):
        ax.set_ylim(bottom=0)
    _version_changes([rates, latency, errors], samples, model)
    return _finish(figure, [rates, latency, errors], since, until)


def _version_changes(axes: Sequence[Axes], samples: Sequence[Sample], model: str) -> None:
    """Dashed lines where the version the device serves changes (a rollout or rollback)."""
    served = [(s.at, s.models[model].get("version")) for s in samples if model in s.models]
    for (_, before), (at, after) in itertools.pairwise(served):
        if after != before:
            for ax in axes:
                ax.axvline(_time(at), color=MUTED, linestyle="--", linewidth=1)
            axes[0].annotate(f"{before or '?'} \u2192 {after or '?'}", (_time(at), 1.0),
                             xycoords=("data", "axes fraction"), xytext=(4, -12),
                             textcoords="offset points", fontsize=9, color=INK)


class ChartCache(Generic[T]):
    """The latest ``max_entries`` drawings (or other values derived from stored data, such
    as drift series) by key (least recently used dropped). Thread-safe."""

    def __init__(self, max_entries: int = 256) -> None:
        self._max = max_entries
        self._entries: OrderedDict[tuple[object, ...], T] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every drawing."""
        with self._lock:
            self._entries.clear()

    def get(self, key: tuple[object, ...], draw: Callable[[], T]) -> T:
        """The drawing cached under ``key``, drawn by ``draw`` when absent."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        drawn = draw()
        with self._lock:
            self._entries[key] = drawn
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return drawn


def _dates(ax: Axes, seconds: float) -> None:
    form = "%Y-%m-%d" if seconds > 3 * 86_400 else "%m-%d %H:%M"
    found: Formatter = DateFormatter(form, tz=dt.UTC)  # type: ignore[no-untyped-call]
    # Ticks on whole days, hours or minutes (the default locator steps by 0.01 day).
    ax.xaxis.set_major_locator(AutoDateLocator(tz=dt.UTC))  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(found)
    ax.set_xlabel("inference time, UTC", color=MUTED, fontsize=9, loc="right")


def _svg(figure: Figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="svg")
    return out.getvalue()


def captures_chart(hours: Sequence[HourCount]) -> bytes:
    """SVG: captured records per UTC hour of inference time (per day when the records span
    more than :data:`DAILY_AFTER_HOURS` hours), stacked by model, over the records' own time
    range (replayed historical data keeps its dates)."""
    figure, (ax,) = _figure((1.3,))
    if not hours:
        _empty(ax)
        return _svg(figure)
    span = hours[-1].hour_start - hours[0].hour_start + 3600
    step = 86_400 if span > DAILY_AFTER_HOURS * 3600 else 3600
    _title(ax, f"Captured records per {'day' if step == 86_400 else 'hour'}")
    models = sorted({h.model_name for h in hours})
    counts: dict[str, dict[float, int]] = {m: {} for m in models}
    events: dict[float, int] = {}
    for h in hours:
        slot = h.hour_start // step * step
        counts[h.model_name][slot] = counts[h.model_name].get(slot, 0) + h.records
        events[slot] = events.get(slot, 0) + h.events
    slots = sorted({slot for per in counts.values() for slot in per})
    bottom = [0] * len(slots)
    for model, color in zip(models, itertools.cycle(CYCLE)):
        values = [counts[model].get(slot, 0) for slot in slots]
        ax.bar([_time(slot) for slot in slots], values, width=step / 86_400 * 0.85,
               bottom=bottom, align="edge", color=color, label=model, linewidth=0)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    marked = [(slot, total) for slot, total in zip(slots, bottom, strict=True) if events[slot]]
    if marked:
        ax.plot([_time(slot + step / 2) for slot, _ in marked], [t * 1.04 for _, t in marked],
                linestyle="none", marker="v", color=RED, markersize=6,
                label="with events")
    ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=len(models) + 1)
    ax.set_ylim(0, max(bottom) * 1.25 + 1)
    ax.set_xlim(_time(slots[0] - step * 0.5), _time(slots[-1] + step * 1.5))
    _dates(ax, slots[-1] - slots[0])
    return _svg(figure)


def drift_chart(series: Sequence[DriftSeries], threshold: float = PSI_THRESHOLD) -> bytes:
    """SVG: per model version, the daily largest feature PSI of its captured inputs, with the
    readings of the index as bands (under 0.1 no shift, 0.1 to ``threshold`` moderate, above
    it significant) and a dashed line at ``threshold``."""
    figure, (ax,) = _figure((1.6,))
    _title(ax, "Input drift: largest feature PSI over the trailing 7 days")
    points = [p for s in series for p in s.points]
    top = max([p.psi for p in points] + [threshold * 2]) * 1.12
    ax.axhspan(PSI_MODERATE, threshold, color="#fff8c5", linewidth=0, zorder=0)
    ax.axhspan(threshold, top, color="#ffebe9", linewidth=0, zorder=0)
    ax.axhline(threshold, color=RED, linestyle="--", linewidth=1.2, zorder=1)
    ax.annotate(f"threshold {threshold:g}: significant shift above", (1.0, threshold),
                xycoords=("axes fraction", "data"), xytext=(-6, 3), textcoords="offset points",
                ha="right", va="bottom", fontsize=8, color=RED)
    for low, high, text, color in ((0.0, PSI_MODERATE, "no shift", GREEN),
                                   (PSI_MODERATE, threshold, "moderate shift", "#9a6700")):
        if (high - low) / top >= BAND_LABEL_SHARE:  # a thinner band has no room for a label
            ax.annotate(text, (1.0, (low + high) / 2), xycoords=("axes fraction", "data"),
                        xytext=(-6, 0), textcoords="offset points", ha="right", va="center",
                        fontsize=8, color=color)
    if not points:
        _empty(ax)
        ax.set_ylim(0, top)
        return _svg(figure)
    for one, color in zip(series, itertools.cycle(CYCLE)):
        if one.points:
            ax.plot([_time(p.day + 43_200) for p in one.points], [p.psi for p in one.points],
                    color=color, linewidth=1.6, marker="o", markersize=3.5,
                    label=f"{one.model_name} {one.model_version}")
    ax.set_ylim(0, top)
    days = [p.day for p in points]
    ax.set_xlim(_time(min(days) - 43_200), _time(max(days) + 129_600))
    ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=len(series))
    ax.set_ylabel("PSI", color=MUTED, fontsize=9)
    _dates(ax, max(days) - min(days) + 86_400 * 4)
    return _svg(figure)
