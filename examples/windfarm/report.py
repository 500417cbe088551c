"""Print the episodes and the fleet as rich tables (live while the replay runs) and draw the
power curves with anomalies highlighted."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from windfarm.episodes import BinnedCurve, Episode, Realism

#: Episode kinds (see ``Episode.kind``) -> rich style and matplotlib colour.
KINDS = {
    "stopped": ("red", "tab:red"),
    "curtailed": ("yellow", "tab:orange"),
    "underperforming": ("magenta", "tab:purple"),
    "overperforming": ("cyan", "tab:cyan"),
    "pitch deviation": ("blue", "tab:blue"),
    "other": ("dim", "tab:gray"),
}


#: Short column headers of the kinds, so that the summary fits an 80-column terminal.
_KIND_HEADERS = {"stopped": "stop", "curtailed": "curt", "underperforming": "under",
                 "overperforming": "over", "pitch deviation": "pitch", "other": "other"}


def episode_table(turbine: str, episodes: list[Episode], *, limit: int = 12) -> Table:
    """Table of one turbine's episodes, the ``limit`` largest energy losses, in time order.

    Columns: start (UTC), duration (h), mean wind (m/s), mean power and normal power (kW),
    energy lost (MWh), kind. It fits an 80-column terminal.
    """
    shown = sorted(sorted(episodes, key=lambda e: -e.energy_lost)[:limit], key=lambda e: e.start)
    title = f"{turbine}: {len(episodes)} anomaly episodes in 2015"
    if len(episodes) > limit:
        title += f" (the {limit} largest energy losses)"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  show_edge=False, padding=(0, 0))
    table.add_column("start (UTC)")
    for column in ("hours", "wind m/s", "power kW", "normal kW", "lost MWh"):
        table.add_column(column, justify="right")
    table.add_column("kind")
    for e in shown:
        table.add_row(
            f"{e.start:%Y-%m-%d %H:%M}", f"{e.duration / pd.Timedelta(hours=1):.1f}",
            f"{e.mean_wind:.1f}", f"{e.mean_power:.0f}", f"{e.expected_power:.0f}",
            f"{e.energy_lost / 1000:.1f}", f"[{KINDS[e.kind][0]}]{e.kind}[/]",
        )
    return table


def summary_table(episodes: list[Episode], turbines: list[str],
                  realism_by_turbine: Mapping[str, Realism], total: Realism, *,
                  scored_by: str) -> Table:
    """One row per turbine plus a total: episodes, hours, energy lost, kinds, stoppages caught.

    ``scored_by`` names what computed the scores, for the title.
    """
    table = Table(title=f"Summary, 2015 (scored by {scored_by})", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 0),
                  caption="deficit: episodes with a clear power deficit; "
                  "caught: stoppages of >= 1 h inside an episode", caption_justify="left")
    table.add_column("turbine")
    for column in ("episodes", "hours", "MWh", *(_KIND_HEADERS[k] for k in KINDS),
                   "deficit", "caught"):
        table.add_column(column, justify="right")

    def row(name: str, chosen: list[Episode], realism: Realism) -> list[str]:
        kinds = pd.Series([e.kind for e in chosen], dtype=object).value_counts()
        hours = sum((e.duration for e in chosen), pd.Timedelta(0)) / pd.Timedelta(hours=1)
        return [
            name, str(len(chosen)), f"{hours:.0f}",
            f"{sum(e.energy_lost for e in chosen) / 1000:.0f}",
            *(str(kinds.get(k, 0)) for k in KINDS),
            f"{realism.deficit_share:.0%}",
            f"{realism.caught}/{realism.stoppages}",
        ]

    for turbine in turbines:
        table.add_row(*row(turbine, [e for e in episodes if e.turbine == turbine],
                           realism_by_turbine[turbine]))
    table.add_section()
    table.add_row(*row("all", episodes, total), style="bold")
    return table


def print_report(console: Console, episodes: list[Episode], turbines: list[str],
                 realism_by_turbine: Mapping[str, Realism], total: Realism, *,
                 scored_by: str) -> None:
    """Print each turbine's episode table, then the summary table (see :func:`summary_table`)."""
    for turbine in turbines:
        console.print(episode_table(turbine, [e for e in episodes if e.turbine == turbine]))
        console.print()
    console.print(summary_table(episodes, turbines, realism_by_turbine, total, scored_by=scored_by))


def plot_power_curves(
    path: Path, records: Mapping[str, pd.DataFrame], curves: Mapping[str, BinnedCurve],
    episodes: list[Episode],
) -> Path:
    """Draw one panel per turbine: 2015 power vs wind speed, the 2014 normal power curve, and
    the records inside anomaly episodes coloured by kind. Writes a PNG at ``path``.

    Args:
        records: turbine -> its 2015 grid (columns ``time``, ``Ws_avg`` m/s, ``P_avg`` kW).
        curves: turbine -> normal power curve fitted on 2014.
    """
    turbines = sorted(records)
    columns = 2 if len(turbines) > 1 else 1
    rows = -(-len(turbines) // columns)
    # A bare Figure renders with Agg and touches no global pyplot state (no display needed).
    figure = Figure(figsize=(6.5 * columns, 4.8 * rows))
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    for axis, turbine in zip(axes.flat, turbines, strict=False):
        frame = records[turbine].dropna(subset=["Ws_avg", "P_avg"])
        times = frame["time"].to_numpy()
        axis.scatter(frame["Ws_avg"], frame["P_avg"], s=1, c="0.75", rasterized=True,
                     label="2015, 10-min records")
        for kind, (_, colour) in KINDS.items():
            inside = np.zeros(len(frame), dtype=bool)
            for e in episodes:
                if e.turbine == turbine and e.kind == kind:
                    start, end = e.interval
                    inside |= (times >= start) & (times < end)
            if inside.any():
                axis.scatter(frame["Ws_avg"][inside], frame["P_avg"][inside], s=5, c=colour,
                             label=f"anomaly: {kind}")
        curve = curves[turbine]
        axis.plot(curve.centers, curve.values, c="k", lw=1.5, label="normal curve (2014 median)")
        count = sum(e.turbine == turbine for e in episodes)
        axis.set_title(f"{turbine}: {count} episodes")
        axis.set_xlabel("wind speed (m/s)")
        axis.set_ylabel("active power (kW)")
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(turbines):]:
        axis.set_visible(False)
    axes.flat[0].legend(loc="upper left", fontsize=8, markerscale=3)
    figure.suptitle("La Haute Borne 2015: anomalies found by edgefleet-agent "
                    "(data: ENGIE, Open Licence 2.0)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


class LiveView:
    """The replay's progress in the terminal: one row per turbine (model version it serves,
    windows scored, anomalous windows and episodes, captures) and the rollout's status.

    On a terminal a rich live table redrawn up to 4 times a second; piped, one plain line per
    30 replayed days, so logs stay short. A context manager; call :meth:`update` after each day.
    """

    def __init__(self, console: Console, run: Any, rollout_status: Callable[[], str]) -> None:
        self.console = console
        self.run = run
        self.rollout_status = rollout_status
        self._live: Live | None = None
        self._last_line_day = -30
        self._last_draw = 0.0

    def _table(self) -> Table:
        run = self.run
        day = np.datetime_as_string(run.current_day, unit="D")
        table = Table(title=f"Replaying {day} ({min(run.day_index + 1, len(run.days))}/"
                      f"{len(run.days)} days); {self.rollout_status()}", title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for column in ("turbine", "device", "model", "windows", "anomalous", "episodes",
                       "captures", "faults"):
            table.add_column(column, justify="left" if column in ("turbine", "device") else
                             "right")
        for turbine, state in run.state.items():
            injected = [f for f in run.injected if f.fault.turbine == turbine]
            caught = sum(f.delay is not None for f in injected)
            table.add_row(turbine, state.device, f"v{state.version}", f"{state.windows:,}",
                          f"{state.flagged:,}", str(state.episodes), f"{state.captures:,}",
                          f"{caught}/{len(injected)} caught" if injected else "-")
        return table

    def update(self) -> None:
        """Redraw (terminal) or print a line every 30 days (piped)."""
        if self._live is not None:
            now = time.monotonic()
            if now - self._last_draw >= 0.25:
                self._last_draw = now
                self._live.update(self._table())
            return
        if self.run.day_index - self._last_line_day >= 30:
            self._last_line_day = self.run.day_index
            versions = ", ".join(f"{t} v{s.version} {s.flagged} anomalous"
                                 for t, s in self.run.state.items())
            day = np.datetime_as_string(self.run.current_day, unit="D")
            self.console.print(f"  {day}: {versions}; {self.rollout_status()}")

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)


def print_fleet(console: Console, outcome: Mapping[str, Any]) -> None:
    """Print the fleet's side of the run: per turbine the model version it serves and the
    windows each version scored; the rollout's stages; each injected fault and how soon it was
    flagged against its bound; the captures."""
    table = Table(title="The fleet, 2015", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, show_edge=False, padding=(0, 0))
    for column in ("turbine", "device", "serving", "windows by version", "captures"):
        table.add_column(column, justify="right" if column == "captures" else "left")
    for turbine, state in outcome["turbines"].items():
        by_version = ", ".join(f"v{v} {n:,}" for v, n in sorted(state["windows_by_version"]
                                                                 .items()))
        table.add_row(turbine, state["device"], f"v{state['serving']}", by_version,
                      f"{state['captures']:,}")
    console.print(table)
    rollout = outcome["rollout"]
    stages = "; ".join(f"{stage}: " + ", ".join(f"{d} {s}" for d, s in devices.items())
                       for stage, devices in rollout["stages"].items())
    console.print(f"Rollout of v2: {rollout['status']}" + (f" ({stages})" if stages else ""))
    if outcome["faults"]:
        faults = Table(title="Injected faults", title_justify="left", box=box.SIMPLE_HEAD,
                       pad_edge=False, show_edge=False, padding=(0, 1))
        for column in ("turbine", "fault", "from (UTC)", "changed", "flagged", "bound", ""):
            faults.add_column(column, no_wrap=True, justify="left" if column in (
                "turbine", "fault", "from (UTC)") else "right")
        for fault in outcome["faults"]:
            delay = fault["delay"]
            ok = delay is not None and delay <= fault["bound"]
            faults.add_row(fault["turbine"], fault["kind"], fault["begins"][:16].replace("T", " "),
                           str(fault["affected"]), "-" if delay is None else f"after {delay}",
                           str(fault["bound"]), "[green]caught[/]" if ok else "[red]missed[/]")
        console.print(faults)
        console.print("  changed, flagged, bound: 1-hour windows (bounds measured in "
                      "docs/windfarm.md, \"Fault injection\")")
    captures = outcome["captures"]
    console.print(f"Captures: {captures['accepted']:,} accepted by the agents"
                  + (f", {captures['refused']} refused" if captures["refused"] else "")
                  + f"; {captures.get('indexed', 0):,} indexed by the control plane from the "
                  "capture folder")
    read_back = captures.get("read_back", {})
    if read_back:
        wrong = {t: p for t, p in read_back.items() if p is not None}
        console.print("  each turbine's latest record reads back through the API (JSON and "
                      ".npz) exactly as sent" if not wrong else
                      "  [red]records that do not read back[/]: "
                      + "; ".join(f"{t}: {p}" for t, p in wrong.items()))
    events = captures.get("events", {})
    if events:
        console.print("  anomaly events captured: "
                      + ", ".join(f"{t} {n:,}" for t, n in events.items()))
    drift = captures.get("drift", {})
    if drift:
        table = Table(title="Input drift (population stability index, 7-day windows, "
                      "against each version's training inputs)", title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1))
        threshold = next(iter(drift.values()))["threshold"]
        for column in ("turbine", "version", "days", f"over {threshold:g}", "largest",
                       "of feature", "latest"):
            table.add_column(column, no_wrap=True, justify="left" if column in (
                "turbine", "version", "of feature") else "right")
        for turbine, per in drift.items():
            for version, v in sorted(per["versions"].items()):
                table.add_row(turbine, f"v{version}", str(v["days"]), str(v["days_over"]),
                              f"{v['max_psi']:.2f}", v["max_feature"], f"{v['latest_psi']:.2f}")
        console.print(table)
        console.print(
            "  days: days with a point (the largest feature PSI of the 7 days up to it); "
            f"over {threshold:g}: a significant shift. Outdoor temperature follows the season, "
            "and pitch, power and wind the week's weather, so a week of them rarely matches a "
            'year of training (docs/windfarm.md, "Drift"). The dashboard\'s device pages '
            "chart it day by day.")
