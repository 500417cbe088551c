"""Print the episodes as rich tables and draw the power curves with anomalies highlighted."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from rich import box
from rich.console import Console
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
