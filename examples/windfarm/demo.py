"""The wind-farm demo: four turbines under the control plane, real anomalies, a model update
rolled out mid-run, drift and injected faults, watched on the fleet dashboard.

Run it with ``scripts/demo`` (which sets up the environment), or ``python -m windfarm`` with
``examples/`` on ``PYTHONPATH``. docs/windfarm.md tells the story step by step.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import grpc
import numpy as np
import pandas as pd
import typer
from rich.console import Console

from edgefleet.fleet.client import ApiError
from windfarm import data, faults, fleet, live, model, pipeline, replay, report
from windfarm.agent import AgentError, AgentProcess
from windfarm.controls import ControlPage
from windfarm.fleet import MODEL, ControlPlaneError
from windfarm.model import INPUT_NAME, SCORE_NAME
from windfarm.rollout import Rollout

MODEL_VERSION = "1.0"

#: The turbine of the rollout's first stage (the canary).
CANARY = "R80711"

#: How long an injected fault lasts, in days.
FAULT_DAYS = 3.0

#: While v2 rolls out, the replay goes at most this many days past the rollout's start; then it
#: waits for the rollout (a fast pace would otherwise finish the year first).
ROLLOUT_LEAD_DAYS = 30

#: After the replay, how long the control plane may take to index every accepted capture, in
#: seconds (agents upload every second, the server scans its capture folder every second).
INDEX_WAIT_SECONDS = 120.0

#: ``--headless`` without ``--inject``: one fault of each kind, each on another turbine, at
#: times that have wind for it.
DEFAULT_FAULTS = ("stoppage:R80721:2015-02-16", "derating:R80736:2015-04-13",
                  "stuck-sensor:R80790:2015-08-10", "drifting-sensor:R80711:2015-10-12")

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


class DemoCheckFailed(RuntimeError):
    """A ``--headless`` outcome was not what the demo promises; the message lists each one."""


@dataclass
class Options:
    """The command line's choices, as the steps need them."""

    work_dir: Path
    port: int
    controls_port: int
    days_per_second: float
    rollout_day: np.datetime64
    headless: bool
    faults: list[faults.Fault]
    max_train_rows: int | None
    timings: _Timings
    summary: dict[str, Any] = field(default_factory=dict)


def _parse_faults(texts: list[str], headless: bool, default_faults: bool) -> list[faults.Fault]:
    if headless and default_faults and not texts:
        texts = list(DEFAULT_FAULTS)
    try:
        return [faults.Fault.parse(text) for text in texts]
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--inject") from None


@app.command()
def main(
    work_dir: Annotated[Path, typer.Option(
        help="Where everything goes: the server's data, the agents' configs, data and logs, "
        "the captured data, the models, episodes and plot. Its server/, agents/ and capture/ "
        "folders are emptied at start.")] = Path("windfarm-demo-output"),
    port: Annotated[int, typer.Option(
        help="Port of the control plane (API and dashboard) on 127.0.0.1.",
        min=1, max=65535)] = 8080,
    controls_port: Annotated[int, typer.Option(
        help="Port of the demo's fault-injection page on 127.0.0.1 (not with --headless).",
        min=1, max=65535)] = 8081,
    days_per_second: Annotated[float, typer.Option(
        help="Replay pace: days of 2015 per second (0: as fast as the agents answer).",
        min=0)] = 3.0,
    rollout_date: Annotated[str, typer.Option(
        help="When (in the replayed 2015, UTC) model v2 is built and rolled out.")
    ] = "2015-07-01",
    headless: Annotated[bool, typer.Option(
        help="Run to the end without waiting for a person, check the outcomes (all turbines "
        "on v2, the anomaly episodes, the captures, drift, every injected fault caught) and "
        "exit 1 if one is not met.")] = False,
    inject: Annotated[list[str], typer.Option(
        help="Inject a fault into one turbine's stream: KIND:TURBINE:WHEN, e.g. "
        "stoppage:R80736:2015-03-10 (kinds: " + ", ".join(faults.KINDS) + "). Repeatable. "
        "With --headless and none given, one of each kind is injected.")] = [],  # noqa: B006
    default_faults: Annotated[bool, typer.Option(
        help="With --headless and no --inject, inject one fault of each kind.")] = True,
    max_train_rows: Annotated[int | None, typer.Option(
        help="Train on at most this many 1-hour windows (about 34,000 exist in 2014); "
        "for quick runs.", min=100)] = None,
    in_process: Annotated[bool, typer.Option(
        help="Score 2015 with onnxruntime in this process: no server, no agents; for "
        "debugging the model.")] = False,
) -> None:
    """Run ENGIE's La Haute Borne wind farm as an **edgefleet** device fleet, on real data.

    1. Starts **edgefleet server** (SQLite, a local object store) and prints the dashboard's
    address and login.
    2. Creates device fleet *windfarm* and registers the four turbines as devices.
    3. Trains model v1 on 2014 (the power and pitch a healthy turbine shows in the measured
    wind), packages it on the control plane with its training inputs as drift baseline, and
    deploys it with a deployment plan.
    4. Starts four **edgefleet-agent** processes (own socket each, capture with a durable
    spool), which fetch v1 from the control plane as real devices do.
    5. Replays 2015 per turbine through its agent (Predict, and CaptureData of every call) at
    --days-per-second, with a live view in the terminal.
    6. At --rollout-date builds model v2 and rolls it out in two stages (one turbine, then the
    other three) behind the agents' health gate.
    7. Prints each turbine's anomaly episodes, the rollout, the injected faults and the
    captures, and writes a power-curve plot.

    Faults (stoppage, derating, stuck or drifting anemometer) can be injected from the demo's
    control page or with --inject. Without --headless the dashboard stays up at the end until
    Ctrl-C. Everything the demo starts is stopped on Ctrl-C, SIGTERM and errors.
    """
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    console = _console()
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    injected = _parse_faults(inject, headless, default_faults)
    try:
        rollout_day = np.datetime64(pd.Timestamp(rollout_date).normalize().to_datetime64(), "ns")
    except ValueError:
        raise typer.BadParameter(f"{rollout_date!r} is not a date", param_hint="--rollout-date"
                                 ) from None
    if not np.datetime64("2015-01-02") <= rollout_day <= np.datetime64("2015-12-31"):
        raise typer.BadParameter("must be a day of 2015 after January 1",
                                 param_hint="--rollout-date")
    timings = _Timings(console)
    options = Options(work_dir, port, controls_port, days_per_second, rollout_day, headless,
                      injected, max_train_rows, timings)
    started = time.perf_counter()
    try:
        with timings.step("get the La Haute Borne data"):
            frame = data.load_scada(data.ensure_data(console), console)
            prepared = pipeline.prepare(frame)
        console.print(
            f"  {frame['turbine'].nunique()} turbines, {len(frame):,} 10-minute records; "
            f"{len(prepared.train_windows.x):,} complete 1-hour windows in 2014 (training), "
            f"{len(prepared.test_windows.x):,} in 2015 (replay)")
        if in_process:
            _in_process(console, options, prepared)
        else:
            _fleet_story(console, options, prepared, started)
    except (data.DataUnavailableError, AgentError, ControlPlaneError, ApiError) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from None
    except DemoCheckFailed as error:
        console.print(f"[red]headless check failed:[/] {error}")
        raise typer.Exit(1) from None
    except grpc.RpcError as error:
        console.print(f"[red]error:[/] an agent answered {error.code().name}: "
                      f"{error.details()} (agent logs: {work_dir / 'agents'})")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]; everything the demo started has been stopped")
        raise typer.Exit(130) from None


def _in_process(console: Console, options: Options, prepared: pipeline.Prepared) -> None:
    timings = options.timings
    with timings.step("train model v1 on 2014"), console.status("Training"):
        detector = model.train(prepared.train_windows, max_windows=options.max_train_rows)
        onnx_path = model.save_onnx(detector, options.work_dir / "model" / f"{MODEL}.onnx")
    with timings.step("replay 2015 in-process (onnxruntime)"):
        _, score = replay.replay(prepared.test_windows, replay.OnnxScorer(onnx_path),
                                 console=console)
    _report(console, options, prepared, score, scored_by="onnxruntime in-process")


def _report(console: Console, options: Options, prepared: pipeline.Prepared, score: np.ndarray,
            *, scored_by: str) -> pipeline.Analysis:
    with options.timings.step("find and measure the episodes"):
        analysis = pipeline.analyse(prepared, score)
    report.print_report(console, analysis.episodes, analysis.turbines,
                        analysis.realism_by_turbine, analysis.realism_total, scored_by=scored_by)
    total = analysis.realism_total
    console.print(
        f"{total.deficit_share:.0%} of the {total.episodes} episodes show a clear power "
        f"deficit against the 2014 power curve; {total.caught} of the {total.stoppages} "
        "clear stoppages of 1 hour or more (under 20 kW in 5 m/s or more of wind) fall in "
        "an episode.")
    work_dir = options.work_dir
    plot = report.plot_power_curves(work_dir / "power-curves.png", analysis.records,
                                    analysis.power_curves, analysis.episodes)
    episodes_csv = _write_episodes(work_dir / "episodes.csv", analysis)
    options.summary["realism"] = {**asdict(total), "deficit_share": total.deficit_share,
                                  "caught_share": total.caught_share}
    console.print(f"Power-curve plot: [bold]{plot}[/]\nEpisodes: {episodes_csv}")
    return analysis


def _fresh(work_dir: Path) -> Path:
    """Empty the folders a previous run left: a new server, new agents, new captures."""
    for name in ("server", "agents", "capture", "root-certs"):
        shutil.rmtree(work_dir / name, ignore_errors=True)
    return work_dir / "capture"


def _fleet_story(console: Console, options: Options, prepared: pipeline.Prepared,
                 started: float) -> None:
    timings, work_dir = options.timings, options.work_dir
    capture_dir = _fresh(work_dir)
    turbines = sorted(prepared.test["turbine"].unique())
    stop = threading.Event()
    with ExitStack() as stack:
        stack.callback(stop.set)
        with timings.step("start edgefleet server"):
            plane = stack.enter_context(fleet.ControlPlane(
                work_dir / "server", work_dir / "server.log", port=options.port,
                capture_location=capture_dir))
        admin = plane.admin
        console.print(f"  dashboard [bold]{plane.url}/[/] (log in with the admin token in "
                      f"{work_dir / 'server' / 'admin-token'}); server log "
                      f"{work_dir / 'server.log'}")
        if not options.headless:
            console.print(f"  admin token: [bold]{plane.admin_token}[/]")
        with timings.step("create fleet windfarm and register the turbines"):
            devices = fleet.register_fleet(admin, turbines, work_dir, capture_dir)
        console.print("  devices " + ", ".join(f"{d.name} ({d.turbine})" for d in devices)
                      + f"; agent configs in {work_dir / 'agents'}")
        with timings.step(f"train model v{MODEL_VERSION} on 2014"), console.status("Training"):
            detector = model.train(prepared.train_windows, max_windows=options.max_train_rows)
            onnx_path = model.save_onnx(detector, work_dir / "model" / f"{MODEL}.onnx")
        with timings.step(f"package v{MODEL_VERSION} on the control plane (signed, with "
                          "a drift baseline)"):
            job = fleet.package(admin, onnx_path, MODEL_VERSION, prepared.train_windows.x)
        with timings.step("start four edgefleet-agent processes"):
            agents = {d.turbine: stack.enter_context(AgentProcess(
                d.config, work_dir / "agents" / d.name / "agent.log")) for d in devices}
        names = [d.name for d in devices]
        with timings.step(f"deploy v{MODEL_VERSION} with plan windfarm-v1"):
            fleet.create_plan(admin, "windfarm-v1", job, [("all", names)])
            deployed = fleet.run_stage(admin, "windfarm-v1", "all", stopping=stop.is_set)
        if any(status != "DEPLOYED" for status in deployed.values()):
            raise ControlPlaneError(f"v{MODEL_VERSION} did not deploy: {deployed}")
        channels = {t: stack.enter_context(grpc.insecure_channel(a.target))
                    for t, a in agents.items()}
        run = live.Replay(prepared.test_windows, channels, {d.turbine: d.name for d in devices},
                          days_per_second=options.days_per_second)
        for fault in options.faults:
            try:
                run.inject(fault, "--inject", days=FAULT_DAYS)
            except ValueError as error:
                raise typer.BadParameter(f"{fault}: {error}", param_hint="--inject") from None
        if not options.headless:
            page = stack.enter_context(ControlPage(
                options.controls_port, turbines=turbines,
                inject=lambda kind, turbine: _inject_now(run, kind, turbine),
                entries=lambda: list(run.injected),
                replay_day=lambda: np.datetime_as_string(run.current_day, unit="D"),
                dashboard=f"{plane.url}/", days=FAULT_DAYS))
            console.print(f"  fault injection page [bold]{page.url}[/]")
        rollout = _RolloutTrigger(admin, work_dir, prepared, run, options, stop,
                                  canary=fleet.device_name(CANARY),
                                  rest=[n for n in names if n != fleet.device_name(CANARY)])
        replay_started = time.perf_counter()
        with report.LiveView(console, run, lambda: rollout.status) as view:
            run.run(stop=stop, hold=rollout.hold, on_day=view.update)
            rollout.finish(view.update)
        timings.record("replay 2015 through the four agents", time.perf_counter() - replay_started)
        if rollout.thread is not None:
            timings.seconds.update(rollout.thread.seconds)
        score = run.score.copy()
        score[run.faulted] = 0.0  # injected windows are judged in the fault table instead
        analysis = _report(console, options, prepared, score,
                           scored_by="four edgefleet-agents over gRPC")
        outcome = _fleet_outcome(admin, run, rollout)
        report.print_fleet(console, outcome)
        timings.seconds["total"] = time.perf_counter() - started
        options.summary.update(outcome=outcome, seconds=timings.seconds,
                               threshold=detector.threshold, train_windows=detector.n_train)
        (work_dir / "summary.json").write_text(json.dumps(options.summary, indent=2) + "\n")
        console.print(f"Finished in {timings.seconds['total']:.0f} s.")
        if options.headless:
            _check(analysis, outcome)
            console.print("[green]headless checks passed[/]: all turbines on v"
                          f"{rollout.version}, episodes, captures, drift and faults as expected")
        else:
            console.print(f"The dashboard stays up at [bold]{plane.url}/[/]; press Ctrl-C to "
                          "stop the server and the agents.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:  # the way this run ends (SIGTERM too): not an error
                console.print("stopping the server and the agents")
    console.print("  server and agents stopped")


def _inject_now(run: live.Replay, kind: str, turbine: str) -> None:
    """The control page's action: a fault from the day being replayed."""
    run.inject(faults.Fault(kind, turbine, run.current_day), "control page", days=FAULT_DAYS)


class _RolloutTrigger:
    """Starts the v2 rollout when the replay reaches the rollout day, and holds the replay
    at most :data:`ROLLOUT_LEAD_DAYS` ahead of it until the rollout ends."""

    def __init__(self, admin: Any, work_dir: Path, prepared: pipeline.Prepared,
                 run: live.Replay, options: Options, stop: threading.Event, *, canary: str,
                 rest: list[str]) -> None:
        self.admin, self.work_dir, self.prepared, self.run = admin, work_dir, prepared, run
        self.options, self.stop, self.canary, self.rest = options, stop, canary, rest
        self.thread: Rollout | None = None
        self.version = "2.0"

    @property
    def status(self) -> str:
        if self.thread is None:
            day = np.datetime_as_string(self.options.rollout_day, unit="D")
            return f"v2 rollout at {day}"
        return self.thread.status

    def hold(self, day: np.datetime64) -> bool:
        if self.thread is None and day >= self.options.rollout_day:
            test = self.prepared.test_windows
            replayed = (test.start < day) & ~self.run.faulted
            train = self.prepared.train_windows
            training = data.Windows(
                np.concatenate([train.x, test.x[replayed]]),
                np.concatenate([train.turbine, test.turbine[replayed]]),
                np.concatenate([train.start, test.start[replayed]]), train.length)
            self.thread = Rollout(self.admin, self.work_dir / "model", training,
                                  canary=self.canary, rest=self.rest,
                                  max_train_rows=self.options.max_train_rows, stop=self.stop)
            self.thread.start()
        lead = self.options.rollout_day + np.timedelta64(ROLLOUT_LEAD_DAYS, "D")
        return bool(self.thread is not None and self.thread.is_alive() and day >= lead)

    def finish(self, update: Any) -> None:
        """Wait for a rollout still running when the replay ended."""
        while self.thread is not None and self.thread.is_alive() and not self.stop.is_set():
            self.thread.join(0.2)
            update()


def _fleet_outcome(admin: Any, run: live.Replay,
                   rollout: _RolloutTrigger) -> dict[str, Any]:
    """What the fleet did: versions, windows per version, rollout, faults, captures, drift."""
    thread = rollout.thread
    turbines = {}
    for turbine, state in run.state.items():
        serving = live.served_version(run.stubs[turbine])
        turbines[turbine] = {"device": state.device, "serving": serving,
                             "windows": state.windows, "flagged": state.flagged,
                             "episodes": state.episodes, "captures": state.captures,
                             "windows_by_version": state.windows_by_version}
    return {
        "turbines": turbines,
        "rollout": {"status": thread.status if thread else "not started",
                    "stages": thread.results if thread else {},
                    "error": thread.error if thread else None},
        "faults": [{"fault": str(f.fault), "kind": f.fault.kind, "turbine": f.fault.turbine,
                    "begins": str(np.datetime_as_string(f.fault.begins, unit="m")),
                    "source": f.source, "affected": f.affected, "delay": f.delay,
                    "bound": faults.BOUNDS[f.fault.kind]} for f in run.injected],
        "captures": _captures(admin, run),
        "predict_retries": run.predict_retries,
        "agent_calls": {call: {"calls": n, "mean_ms": 1000 * run.call_seconds[call] / n}
                        for call, n in run.calls.items() if n},
    }


def _captures(admin: Any, run: live.Replay) -> dict[str, Any]:
    """Captures accepted by the agents, and what the control plane made of them: how many it
    indexed from the capture folder, whether each turbine's latest record reads back (through
    the REST API, as JSON and as .npz) exactly as it was sent, the anomaly events, and the drift
    series of each device against the packages' baselines."""
    accepted = sum(s.captures for s in run.state.values())
    names = {turbine: state.device for turbine, state in run.state.items()}
    deadline = time.monotonic() + INDEX_WAIT_SECONDS
    while True:  # the agents upload every second and the server scans every second
        pages = {t: admin.device_captures(name, limit=1) for t, name in names.items()}
        indexed = sum(p["records"] for p in pages.values())
        if indexed >= accepted or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    decoded = {t: _read_back(admin, run.state[t], pages[t]) for t in names}
    drift = {t: _drift(admin.device_drift(name, days=400)) for t, name in names.items()}
    return {"accepted": accepted, "refused": run.captures_refused, "indexed": indexed,
            "events": {t: p["events"] for t, p in pages.items()},
            "read_back": decoded, "drift": drift}


def _read_back(admin: Any, state: live.TurbineState, page: dict[str, Any]) -> str | None:
    """None when the device's newest indexed record is the last capture sent and its
    tensors read back equal (JSON values and .npz); else what differs."""
    if state.last_capture is None:
        return "no capture was sent"
    records = page["page"]["captures"]
    capture_id, x, score = state.last_capture
    if not records or records[0]["capture_id"] != capture_id:
        newest = records[0]["capture_id"] if records else "none"
        return f"newest indexed record is {newest}, not {capture_id}"
    detail = admin.describe_capture(records[0]["id"])
    inputs = {t["name"]: t for t in detail["inputs"]}
    outputs = {t["name"]: t for t in detail["outputs"]}
    shown = inputs.get(INPUT_NAME)
    if shown is None or shown["dtype"] != "float32" or shown["shape"] != list(x.shape):
        return f"input tensor reads back as {shown and (shown['dtype'], shown['shape'])}"
    if not np.array_equal(np.asarray(shown["values"], np.float32), x):
        return "input values differ"
    if not np.array_equal(np.asarray(outputs[SCORE_NAME]["values"], np.float32), score):
        return "score values differ"
    with np.load(io.BytesIO(admin.download_capture(records[0]["id"], "npz"))) as archive:
        if not np.array_equal(archive[f"input/{INPUT_NAME}"], x):
            return "the .npz download differs"
    return None


def _drift(answer: dict[str, Any]) -> dict[str, Any]:
    """Per model version: days with a PSI point, the largest PSI and its feature, the
    latest PSI, and days above the threshold."""
    versions = {}
    for series in answer["series"]:
        points = series["points"]
        if not points:
            continue
        top = max(points, key=lambda p: p["psi"])
        versions[series["model_version"]] = {
            "days": len(points), "max_psi": top["psi"], "max_feature": top["feature"],
            "max_day": time.strftime("%Y-%m-%d", time.gmtime(top["day"])),
            "latest_psi": points[-1]["psi"],
            "days_over": sum(p["psi"] > answer["threshold"] for p in points)}
    return {"threshold": answer["threshold"], "versions": versions}


def _check(analysis: pipeline.Analysis, outcome: dict[str, Any]) -> None:
    """The ``--headless`` checks; raise DemoCheckFailed listing every one not met."""
    failed = []
    for turbine, state in outcome["turbines"].items():
        if state["serving"] != "2.0":
            failed.append(f"{turbine} serves {state['serving']}, not 2.0")
    if outcome["rollout"]["error"]:
        failed.append(f"rollout: {outcome['rollout']['error']}")
    total = analysis.realism_total
    if not (50 <= total.episodes <= 200 and total.deficit_share >= 0.8
            and total.caught_share >= 0.95):
        failed.append(f"episodes not as the demo finds them: {total}")
    for fault in outcome["faults"]:
        if fault["delay"] is None or fault["delay"] > fault["bound"]:
            failed.append(f"fault {fault['fault']} flagged after {fault['delay']} windows "
                          f"(bound {fault['bound']}; {fault['affected']} changed)")
    captures = outcome["captures"]
    if captures["refused"] or not captures["accepted"]:
        failed.append(f"captures: {captures['accepted']} accepted, {captures['refused']} "
                      "refused by the agents")
    if captures["indexed"] != captures["accepted"]:
        failed.append(f"the control plane indexed {captures['indexed']} of the "
                      f"{captures['accepted']} captures")
    for turbine, problem in captures["read_back"].items():
        if problem is not None:
            failed.append(f"{turbine}'s latest capture does not read back: {problem}")
    for turbine, drift in captures["drift"].items():
        if not drift["versions"]:
            failed.append(f"no drift point for {turbine}")
    if failed:
        raise DemoCheckFailed("; ".join(failed))


if __name__ == "__main__":
    app()
