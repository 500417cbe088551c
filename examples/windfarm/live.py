"""The live replay: 2015, day by day, through each turbine's own agent, as the turbine
controllers' applications would run it.

For every turbine-day the application sends the day's 1-hour windows in one ``Predict`` to its
turbine's agent and captures the call with ``CaptureData`` (inputs, the score, and, when a
window is anomalous, an auxiliary JSON ``{"event": "anomaly", ...}`` that the dashboard counts).
Faults injected while it runs (from the control page or ``--inject``) change the windows a
turbine sends from the fault's start on (:mod:`windfarm.faults`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pandas as pd

from edgefleet.proto import agent_pb2, agent_pb2_grpc
from windfarm import data, episodes, faults, model
from windfarm.fleet import MODEL
from windfarm.model import INPUT_NAME, SCORE_NAME

#: gRPC codes a Predict may meet for a moment while an agent swaps model versions.
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND)


@dataclass
class TurbineState:
    """What the terminal and the summary show of one turbine (updated by the replay thread).

    Attributes:
        turbine, device: the turbine's name and its device name.
        version: the model version its agent served for the latest turbine-day.
        windows: windows scored so far; ``flagged``: of them anomalous (score >= 1 in wind
            over cut-in); ``episodes``: runs of consecutive flagged windows.
        captures: CaptureData calls the agent accepted.
        windows_by_version: windows scored by each model version.
        last_capture: the latest accepted capture: its capture id, input ``x`` (float32
            ``[windows, features]``) and ``score`` (float32 ``[windows]``), to check that the
            control plane reads back what was sent.
    """

    turbine: str
    device: str
    version: str = "-"
    windows: int = 0
    flagged: int = 0
    episodes: int = 0
    captures: int = 0
    windows_by_version: dict[str, int] = field(default_factory=dict)
    last_capture: tuple[str, np.ndarray, np.ndarray] | None = None
    _in_episode: bool = False


@dataclass
class InjectedFault:
    """A fault, how long it lasts, and what became of it.

    Attributes:
        fault: what and where, from when.
        until: the fault ends at this time (UTC, tz-naive); windows from then on are clean.
        source: who injected it (``--inject`` or the control page).
        affected: windows the fault changed so far.
        delay: windows of the fault up to and including its first flagged one (None while
            none is flagged).
    """

    fault: faults.Fault
    until: np.datetime64
    source: str
    affected: int = 0
    delay: int | None = None

    def changes(self, start: np.ndarray, turbine: np.ndarray) -> np.ndarray:
        """Boolean ``[n]``: which of these windows the fault changes."""
        return faults.affected(self.fault, start, turbine) & (start < self.until)


def served_version(stub: agent_pb2_grpc.AgentStub) -> str:
    """The version of MODEL the agent serves: deployed packages are ``<model>-<version>.tar.gz``."""
    for item in stub.ListModels(agent_pb2.ListModelsRequest(), timeout=10).models:
        if item.name == MODEL:
            return Path(item.url).name.removesuffix(".tar.gz").removeprefix(f"{MODEL}-")
    return "-"


def _tensor(name: str, array: np.ndarray) -> agent_pb2.Tensor:
    return agent_pb2.Tensor(
        tensor_metadata=agent_pb2.TensorMetadata(
            name=name.encode(), data_type=agent_pb2.FLOAT32, shape=list(array.shape)),
        byte_data=np.ascontiguousarray(array, dtype=np.float32).tobytes())


class Replay:
    """Replays ``windows`` through the agents, one UTC day at a time, at ``days_per_second``.

    Args:
        windows: the 2015 windows of every turbine.
        channels: turbine -> gRPC channel to its agent.
        devices: turbine -> device name.
        days_per_second: pace (0: as fast as the agents answer).
        capture: capture every Predict with CaptureData.
    """

    def __init__(self, windows: data.Windows, channels: dict[str, grpc.Channel],
                 devices: dict[str, str], *, days_per_second: float,
                 capture: bool = True) -> None:
        self.windows = windows
        self.stubs = {t: agent_pb2_grpc.AgentStub(c) for t, c in channels.items()}
        self.turbines = sorted(channels)
        self.state = {t: TurbineState(t, devices[t]) for t in self.turbines}
        self.days_per_second = days_per_second
        self.capture = capture
        days = pd.DatetimeIndex(windows.start).normalize().to_numpy()
        self.days = np.unique(days)
        self._batches: dict[tuple[str, np.datetime64], np.ndarray] = {}
        for turbine in self.turbines:
            mine = np.flatnonzero(windows.turbine == turbine)
            for day in np.unique(days[mine]):
                self._batches[(turbine, day)] = mine[days[mine] == day]
        #: Model score of every window (NaN until scored), and the version that scored it.
        self.score = np.full(len(windows.x), np.nan, dtype=np.float32)
        self.version = np.full(len(windows.x), "", dtype=object)
        #: Windows changed by an injected fault (left out of the episode analysis).
        self.faulted = np.zeros(len(windows.x), dtype=bool)
        self.flags = np.zeros(len(windows.x), dtype=bool)
        self.injected: list[InjectedFault] = []
        self.day_index = 0
        self.captures_refused = 0
        self.predict_retries = 0
        #: Wall-clock seconds spent in each kind of agent call, and the calls made.
        self.call_seconds = {"ListModels": 0.0, "Predict": 0.0, "CaptureData": 0.0}
        self.calls = {"ListModels": 0, "Predict": 0, "CaptureData": 0}
        self._lock = threading.Lock()

    @property
    def current_day(self) -> np.datetime64:
        """The day being (or next to be) replayed."""
        day: np.datetime64 = self.days[min(self.day_index, len(self.days) - 1)]
        return day

    def inject(self, fault: faults.Fault, source: str, *, days: float) -> InjectedFault:
        """Add a fault lasting ``days`` from where it begins (thread-safe); that is resolved on
        the whole replay first (:func:`faults.resolve`).

        Raises:
            ValueError: the fault never begins in the replayed data (no wind for it).
        """
        fault = faults.resolve(fault, self.windows.x, self.windows.start, self.windows.turbine)
        until = fault.begins + np.timedelta64(int(days * 86400), "s")
        entry = InjectedFault(fault, until, source)
        with self._lock:
            self.injected.append(entry)
        return entry

    def run(self, *, stop: threading.Event, hold: Callable[[np.datetime64], bool],
            on_day: Callable[[], None]) -> None:
        """Replay every day in order.

        Args:
            stop: set to end early (between turbine-days).
            hold: called before each day; while it returns True the replay waits (the demo
                holds the replay a bounded lead ahead of a rollout in progress).
            on_day: called after each day (progress display).

        Raises:
            grpc.RpcError: an agent refused a Predict other than for a moment.
        """
        started = time.monotonic()
        for index, day in enumerate(self.days):
            self.day_index = index
            if hold(day):
                while hold(day) and not stop.is_set():
                    stop.wait(0.1)
                if self.days_per_second:  # the pace goes on from here, without catching up
                    started = time.monotonic() - index / self.days_per_second
            if self.days_per_second:
                stop.wait(max(0.0, started + index / self.days_per_second - time.monotonic()))
            if stop.is_set():
                return
            for turbine in self.turbines:
                batch = self._batches.get((turbine, day))
                if batch is not None:
                    self._turbine_day(turbine, batch)
            on_day()
        self.day_index = len(self.days)

    def _turbine_day(self, turbine: str, batch: np.ndarray) -> None:
        windows, state, stub = self.windows, self.state[turbine], self.stubs[turbine]
        x, start, names = windows.x[batch], windows.start[batch], windows.turbine[batch]
        with self._lock:
            active = [f for f in self.injected if f.fault.turbine == turbine]
        changed = {}
        for entry in active:
            changed[id(entry)] = mask = entry.changes(start, names)
            if mask.any():
                x = x.copy()
                x[mask] = faults.apply(entry.fault, x[mask], start[mask], names[mask])
                self.faulted[batch[mask]] = True
        with self._timed("ListModels"):
            state.version = served_version(stub)
        with self._timed("Predict"):
            score = self._predict(stub, x)
        mean_wind = x[:, np.arange(windows.length) * len(data.FEATURES) + model.WS].mean(axis=1)
        flags = episodes.flag_windows(score, mean_wind)
        self.score[batch], self.flags[batch] = score, flags
        self.version[batch] = state.version
        for entry in active:
            mask = changed[id(entry)]
            if entry.delay is None and mask.any():
                hits = np.flatnonzero(flags[mask])
                if hits.size:
                    entry.delay = entry.affected + int(hits[0]) + 1
                entry.affected += int(mask.sum())
        state.windows += len(batch)
        state.windows_by_version[state.version] = (
            state.windows_by_version.get(state.version, 0) + len(batch))
        state.flagged += int(flags.sum())
        for flagged in flags:
            if flagged and not state._in_episode:
                state.episodes += 1
            state._in_episode = bool(flagged)
        if self.capture:
            with self._timed("CaptureData"):
                self._capture(stub, state, x, score, flags, start)

    @contextmanager
    def _timed(self, call: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.call_seconds[call] += time.perf_counter() - started
            self.calls[call] += 1

    def _predict(self, stub: agent_pb2_grpc.AgentStub, x: np.ndarray) -> np.ndarray:
        request = agent_pb2.PredictRequest(name=MODEL, tensors=[_tensor(INPUT_NAME, x)])
        for attempt in range(100):
            try:
                reply = stub.Predict(request, timeout=30)
                break
            except grpc.RpcError as error:
                if error.code() not in _TRANSIENT or attempt == 99:
                    raise
                self.predict_retries += 1
                time.sleep(0.05)
        outputs = {t.tensor_metadata.name.decode(): t for t in reply.tensors}
        return np.frombuffer(outputs[SCORE_NAME].byte_data, dtype=np.float32).copy()

    def _capture(self, stub: agent_pb2_grpc.AgentStub, state: TurbineState, x: np.ndarray,
                 score: np.ndarray, flags: np.ndarray, start: np.ndarray) -> None:
        # The record's time is when the day's last window ended: when a controller would
        # have scored it.
        end = pd.Timestamp(start[-1]) + self.windows.duration
        seconds = int(end.tz_localize("UTC").timestamp())
        auxiliary = []
        if flags.any():
            event = {"event": "anomaly", "turbine": state.turbine,
                     "flagged_windows": int(flags.sum()), "max_score": float(score.max()),
                     "first_flagged_utc": pd.Timestamp(start[flags][0]).isoformat() + "Z"}
            auxiliary.append(agent_pb2.AuxiliaryData(
                name="event", encoding=agent_pb2.JSON, byte_data=json.dumps(event).encode()))
        capture_id = f"{state.device}-{end:%Y%m%d%H%M}"
        request = agent_pb2.CaptureDataRequest(
            model_name=MODEL, capture_id=capture_id,
            inference_timestamp=agent_pb2.Timestamp(seconds=seconds),
            input_tensors=[_tensor(INPUT_NAME, x)], output_tensors=[_tensor(SCORE_NAME, score)],
            outputs=auxiliary)
        try:
            stub.CaptureData(request, timeout=30)
            state.captures += 1
            state.last_capture = (capture_id, x.astype(np.float32), score)
        except grpc.RpcError as error:
            # A full buffer refuses the capture; the replay goes on (and says so at the end).
            if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            self.captures_refused += 1
