"""The wind-farm demo: find real turbine anomalies with a model served by edgefleet-agent.

Run it with ``scripts/demo`` (which sets up the environment), or ``python -m windfarm`` with
``examples/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import io
import json
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Annotated

import grpc
import numpy as np
import pandas as pd
import typer
from rich.console import Console

from edgefleet.proto import agent_pb2, agent_pb2_grpc
from windfarm import data, model, packaging, pipeline, replay, report
from windfarm.agent import AgentError, AgentProcess, keep_running_message, write_config

MODEL_ALIAS = "turbine-anomaly"
MODEL_VERSION = "1.0"

app = typer.Typer(add_completion=False, rich_markup_mode="markdown")


class _PlainLines(io.TextIOBase):
    """A text stream that drops the spaces ending each line before passing it on (rich pads
    table rows to the table's width)."""

    def __init__(self, out: io.TextIOBase) -> None:
        self._out = out
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self._out.write(line.rstrip(" ") + "\n")
        return len(text)

    def flush(self) -> None:
        self._out.write(self._pending)
        self._pending = ""
        self._out.flush()


def _console() -> Console:
    """rich's console on a terminal; piped or redirected, one that never wraps a line in the
    middle of a sentence and leaves no trailing spaces, so the output greps and diffs cleanly."""
    if sys.stdout.isatty():
        return Console()
    return Console(file=_PlainLines(sys.stdout), soft_wrap=True)  # type: ignore[arg-type]


class _Timings:
    """Wall-clock seconds of each step, printed as it ends and kept for the summary file."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.seconds: dict[str, float] = {}

    def record(self, name: str, seconds: float) -> None:
        self.seconds[name] = seconds
        self.console.print(f"[green]done[/] {name} [dim]({seconds:.1f} s)[/]")

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.record(name, time.perf_counter() - started)


def _terminate_as_interrupt(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM to the demo takes the same clean-up path as Ctrl-C.
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def _write_episodes(path: Path, analysis: pipeline.Analysis) -> Path:
    rows = [{
        "turbine": e.turbine, "start_utc": e.start.isoformat(), "end_utc": e.end.isoformat(),
        "duration_h": e.duration / pd.Timedelta(hours=1), "records": e.records,
        "mean_wind_ms": e.mean_wind, "mean_power_kw": e.mean_power,
        "expected_power_kw": e.expected_power, "deficit_kw": e.deficit,
        "energy_lost_kwh": e.energy_lost, "pitch_excess_deg": e.pitch_excess,
        "max_score": e.max_score, "kind": e.kind,
    } for e in analysis.episodes]
    pd.DataFrame(rows).to_csv(path, index=False, float_format="%.2f")
    return path


@app.command()
def main(
    work_dir: Annotated[Path, typer.Option(
        help="Where the model, keys, package, agent config and log, episodes and plot go.")
    ] = Path("windfarm-demo-output"),
    keep_agent: Annotated[bool, typer.Option(
        help="Leave edgefleet-agent running with the model loaded when the demo ends "
        "(it prints the socket and how to stop it).")] = False,
    max_train_rows: Annotated[int | None, typer.Option(
        help="Train on at most this many 1-hour windows of 2014 (about 34,000 exist); "
        "for quick runs.", min=100)] = None,
    in_process: Annotated[bool, typer.Option(
        help="Score with onnxruntime in this process instead of the agent (no package, no "
        "agent); for debugging.")] = False,
    verbose: Annotated[bool, typer.Option(help="Verbose agent log.")] = False,
) -> None:
    """Find real anomalies in ENGIE's La Haute Borne wind farm with a model served by
    **edgefleet-agent**.

    1. Gets the SCADA data (4 Senvion MM82 turbines, 10-minute records, 2014-2015; ENGIE,
    Open Licence 2.0) from the PyPI wheel openoa==3.2 and caches it in
    ~/.cache/edgefleet/windfarm (or $EDGEFLEET_CACHE_DIR).
    2. Trains a normal-behaviour model on 2014 (the power and pitch angle a healthy turbine
    shows in the measured wind), exports it to ONNX and builds a signed model package.
    3. Starts edgefleet-agent on a Unix socket, loads the package with LoadModel and replays
    all of 2015 through gRPC Predict calls, one turbine-day per call.
    4. Prints each turbine's anomaly episodes (start, end, duration, power deficit against the
    turbine's 2014 power curve) and a summary, and writes a power-curve plot (PNG).

    Everything the demo starts is stopped when it ends, on Ctrl-C and on errors.
    """
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    console = _console()
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    timings = _Timings(console)
    started = time.perf_counter()
    try:
        with timings.step("get the La Haute Borne data"):
            frame = data.load_scada(data.ensure_data(console), console)
            prepared = pipeline.prepare(frame)
        console.print(
            f"  {frame['turbine'].nunique()} turbines, {len(frame):,} 10-minute records; "
            f"{len(prepared.train_windows.x):,} complete 1-hour windows in 2014 (training), "
            f"{len(prepared.test_windows.x):,} in 2015 (replay)")
        with timings.step("train the normal-behaviour model on 2014"), console.status("Training"):
            detector = model.train(prepared.train_windows, max_windows=max_train_rows)
            onnx_path = model.save_onnx(detector, work_dir / "model" / f"{MODEL_ALIAS}.onnx")
        console.print(f"  {detector.n_train:,} normal windows; ONNX model {onnx_path}")
        if in_process:
            with timings.step("replay 2015 in-process (onnxruntime)"):
                _, score = replay.replay(prepared.test_windows, replay.OnnxScorer(onnx_path),
                                         console=console)
        else:
            with timings.step("build and sign the model package"):
                package = packaging.build(onnx_path, work_dir, name=MODEL_ALIAS,
                                          version=MODEL_VERSION)
            console.print(f"  package {package.path} (signed; root CA in {package.root_certs})")
            score = _replay_through_agent(console, timings, work_dir, package, prepared,
                                          keep_agent=keep_agent, verbose=verbose)
        with timings.step("find and measure the episodes"):
            analysis = pipeline.analyse(prepared, score)
        report.print_report(
            console, analysis.episodes, analysis.turbines, analysis.realism_by_turbine,
            analysis.realism_total,
            scored_by="onnxruntime in-process" if in_process else "edgefleet-agent over gRPC")
        total = analysis.realism_total
        console.print(
            f"{total.deficit_share:.0%} of the {total.episodes} episodes show a clear power "
            f"deficit against the 2014 power curve; {total.caught} of the {total.stoppages} "
            "clear stoppages of 1 hour or more (under 20 kW in 5 m/s or more of wind) fall in "
            "an episode.")
        plot = report.plot_power_curves(work_dir / "power-curves.png", analysis.records,
                                        analysis.power_curves, analysis.episodes)
        episodes_csv = _write_episodes(work_dir / "episodes.csv", analysis)
        timings.seconds["total"] = time.perf_counter() - started
        (work_dir / "summary.json").write_text(json.dumps({
            "realism": {**asdict(total), "deficit_share": total.deficit_share,
                        "caught_share": total.caught_share},
            "threshold": detector.threshold, "train_windows": detector.n_train,
            "seconds": timings.seconds,
        }, indent=2) + "\n")
        console.print(f"Power-curve plot: [bold]{plot}[/]\nEpisodes: {episodes_csv}\n"
                      f"Finished in {timings.seconds['total']:.0f} s.")
    except (data.DataUnavailableError, AgentError, packaging.PackagingError) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from None
    except grpc.RpcError as error:
        console.print(f"[red]error:[/] the agent answered {error.code().name}: "
                      f"{error.details()} (its log: {work_dir / 'agent' / 'agent.log'})")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]; everything the demo started has been stopped")
        raise typer.Exit(130) from None


def _replay_through_agent(
    console: Console, timings: _Timings, work_dir: Path, package: packaging.Package,
    prepared: pipeline.Prepared, *, keep_agent: bool, verbose: bool,
) -> np.ndarray:
    config = write_config(work_dir / "agent" / "config.json", root_certs=package.root_certs,
                          data_root=work_dir / "agent" / "data", verbose=verbose)
    log_path = work_dir / "agent" / "agent.log"
    starting = time.perf_counter()
    with AgentProcess(config, log_path) as agent:
        timings.record("start edgefleet-agent", time.perf_counter() - starting)
        console.print(f"  edgefleet-agent pid {agent.pid} on {agent.socket} (log {log_path})")
        with grpc.insecure_channel(agent.target) as channel:
            stub = agent_pb2_grpc.AgentStub(channel)
            with timings.step(f"load the package as {MODEL_ALIAS!r}"):
                loaded = stub.LoadModel(agent_pb2.LoadModelRequest(
                    url=str(package.path), name=MODEL_ALIAS), timeout=60).model
            shapes = ", ".join(
                f"{m.name.decode()} {list(m.shape)}" for m in loaded.input_tensor_metadatas)
            console.print(f"  inputs {shapes}; outputs " + ", ".join(
                f"{m.name.decode()} {list(m.shape)}" for m in loaded.output_tensor_metadatas))
            with timings.step("replay 2015 through gRPC Predict"):
                _, score = replay.replay(
                    prepared.test_windows, replay.AgentScorer(channel, MODEL_ALIAS),
                    console=console)
            batches = len(replay.day_batches(prepared.test_windows))
            console.print(f"  {batches:,} Predict calls, "
                          f"{batches / timings.seconds['replay 2015 through gRPC Predict']:.0f}/s")
        if keep_agent:
            agent.keep_running = True
            console.print(keep_running_message(agent))
    if not keep_agent:
        console.print("  edgefleet-agent stopped")
    return score


if __name__ == "__main__":
    app()
