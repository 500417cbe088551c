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

from matplotlib.axes import Axes
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter

from edgefleet.fleet.history import Sample, rate

#: The dashboard's colours (static/dashboard.css uses the same).
INK, MUTED, GRID = "#1f2328", "#656d76", "#d8dee4"
BLUE, ORANGE, RED, GREEN, PURPLE = "#0969da", "#bc4c00", "#cf222e", "#1a7f37", "#8250df"
MIB = 1 << 20

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


class ChartCache:
    """The latest ``max_entries`` drawings by key (least recently used dropped). Thread-safe."""

    def __init__(self, max_entries: int = 256) -> None:
        self._max = max_entries
        self._entries: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every drawing."""
        with self._lock:
            self._entries.clear()

    def get(self, key: tuple[object, ...], draw: Callable[[], bytes]) -> bytes:
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
