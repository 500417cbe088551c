"""Model v2, built and rolled out while the replay runs: a thread.

v2 is the same normal-behaviour model retrained on 2014 plus the 2015 windows replayed so far
(those no injected fault changed). It is packaged by the control plane (with its training
inputs as drift baseline) and deployed with plan ``windfarm-v2`` in two stages: a canary
turbine, then the other three. Each agent installs v2 alongside v1 and keeps serving v1 until v2
has loaded; if v2 fails in the agents' health window the agent rolls back to v1 and the stage
reports FAILED, and the second stage is not started.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from edgefleet.fleet.client import AdminClient
from windfarm import data, fleet, model

VERSION = "2.0"
PLAN = "windfarm-v2"


class Rollout(threading.Thread):
    """Train, package and roll out v2 (see the module docstring); ``status`` says where it is.

    Args:
        admin: the control plane.
        model_dir: where the v2 ONNX file goes.
        training: windows v2 learns from (2014 and the replayed part of 2015).
        canary: device of the first stage; ``rest``: devices of the second.
        max_train_rows: as ``model.train``'s ``max_windows``.
        stop: set to give up waiting (Ctrl-C).
    """

    def __init__(self, admin: AdminClient, model_dir: Path, training: data.Windows, *,
                 canary: str, rest: list[str], max_train_rows: int | None,
                 stop: threading.Event) -> None:
        super().__init__(name="rollout-v2", daemon=True)
        self.admin = admin
        self.model_dir = model_dir
        self.training = training
        self.canary = canary
        self.rest = rest
        self.max_train_rows = max_train_rows
        self.stop = stop
        self.status = "starting"
        #: Stage name -> device name -> DEPLOYED or "FAILED: reason".
        self.results: dict[str, dict[str, str]] = {}
        self.error: str | None = None
        self.seconds: dict[str, float] = {}
        self.threshold: float | None = None

    @property
    def succeeded(self) -> bool:
        """Both stages finished with every device DEPLOYED."""
        return len(self.results) == 2 and all(
            s == "DEPLOYED" for stage in self.results.values() for s in stage.values())

    def _step(self, status: str) -> float:
        self.status = status
        return time.perf_counter()

    def run(self) -> None:
        """Train, package, create the plan, run the canary stage, then the rest."""
        try:
            started = self._step(f"training v{VERSION} on {len(self.training.x):,} windows")
            detector = model.train(self.training, max_windows=self.max_train_rows, seed=1)
            self.threshold = detector.threshold
            onnx_path = model.save_onnx(detector,
                                        self.model_dir / f"{fleet.MODEL}-{VERSION}.onnx")
            self.seconds["train v2"] = time.perf_counter() - started
            started = self._step(f"packaging v{VERSION} on the control plane")
            job = fleet.package(self.admin, onnx_path, VERSION,
                                np.asarray(self.training.x, dtype=np.float32))
            fleet.create_plan(self.admin, PLAN, job,
                              [("canary", [self.canary]), ("rest", self.rest)])
            self.seconds["package v2"] = time.perf_counter() - started
            for stage, devices in (("canary", [self.canary]), ("rest", self.rest)):
                started = self._step(f"stage {stage} ({', '.join(devices)}) in progress")
                self.results[stage] = fleet.run_stage(self.admin, PLAN, stage,
                                                      stopping=self.stop.is_set)
                self.seconds[f"stage {stage}"] = time.perf_counter() - started
                if self.stop.is_set():
                    self.status = "stopped"
                    return
                if any(s != "DEPLOYED" for s in self.results[stage].values()):
                    self.status = (f"stage {stage} failed, rolled back: "
                                   + "; ".join(f"{d} {s}" for d, s in
                                               self.results[stage].items()))
                    return
            self.status = f"v{VERSION} deployed on all turbines"
        except Exception as error:  # reported by the demo, which then fails
            self.error = f"{type(error).__name__}: {error}"
            self.status = f"failed: {self.error}"
