"""The agent's durable device state: start count, deployed models, deployments in progress and
their results until the control plane acknowledged them.

One JSON file (``<local data root>/deployments/state.json``) replaced atomically on every change;
the deployment executor writes it, the heartbeat reads it (restart count, results to report).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from edgefleet import jsondoc
from edgefleet.errors import InvalidArgument
from edgefleet.wire.edge import Deployment

log = logging.getLogger(__name__)

#: Format of the state file; a newer format is refused rather than misread.
STATE_FORMAT = 1
#: Deployment names remembered as finished, so that one handed out again is not re-applied.
MAX_FINISHED = 100
class DeployedModel(TypedDict):
    """A model a committed deployment put under an alias (one entry of the state file)."""

    url: str
    """The package archive on disk (under ``deployments/packages``)."""
    model_name: str
    version: str
    deployment: str
    """Name of the deployment that deployed it ("" for a model loaded with LoadModel)."""


class StateStore:
    """The agent's durable state, one JSON file replaced atomically on every change.

    Holds the start count, the committed deployed models per alias, the deployment in progress,
    recently finished deployment names and the DeploymentResults not yet acknowledged. Every
    write goes to a temporary file that is fsync'ed and renamed over the old one, then the
    folder is fsync'ed: after a crash or power loss the file is the old or the new state.
    Thread-safe.

    Args:
        path: the state file (its folder is created).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._data = self._read()

    def _read(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"format": STATE_FORMAT, "starts": 0, "deployed": {},
                                 "active": None, "finished": [], "results": []}
        try:
            data = jsondoc.loads(self.path.read_bytes())
        except FileNotFoundError:
            return empty
        except (OSError, ValueError) as error:
            aside = self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}")
            with contextlib.suppress(OSError):
                self.path.rename(aside)
            log.error("deployment state %s is unreadable (%s); moved it to %s and starting "
                      "without deployed models", self.path, error, aside)
            return empty
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise InvalidArgument(
                f"{self.path} has state format {found!r}, this agent reads format "
                f"{STATE_FORMAT}; run the edgefleet version that wrote it")
        return {**empty, **data}

    def _write(self) -> None:
        text = json.dumps(self._data, indent=1, sort_keys=True)
        fd, temporary = tempfile.mkstemp(prefix=".state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def record_start(self) -> int:
        """Count one agent start; returns the number of starts so far (1 at the first)."""
        with self._lock:
            self._data["starts"] += 1
            self._write()
            return int(self._data["starts"])

    @property
    def starts(self) -> int:
        """Agent starts recorded so far."""
        return int(self._data["starts"])

    def deployed(self) -> dict[str, DeployedModel]:
        """A copy of the committed deployed models by alias."""
        with self._lock:
            return dict(self._data["deployed"])

    def active(self) -> dict[str, Any] | None:
        """The deployment in progress (name, policy, start time, handles), or None."""
        with self._lock:
            active = self._data["active"]
            return dict(active) if active else None

    def is_known(self, name: str) -> bool:
        """Whether a deployment of that name finished here (or is in progress)."""
        with self._lock:
            active = self._data["active"]
            return name in self._data["finished"] or bool(active and active["name"] == name)

    def begin(self, deployment: Deployment, started: float) -> None:
        """Note a deployment in progress before anything changes."""
        with self._lock:
            self._data["active"] = {
                "name": deployment.name, "policy": deployment.policy, "started": started,
                "handles": [d.handle for d in deployment.definitions],
                "states": [d.state for d in deployment.definitions]}
            self._write()

    def finish(self, deployed: Mapping[str, DeployedModel | None],
               result: dict[str, Any]) -> None:
        """Commit a deployment: set (or, for None, remove) deployed models, queue ``result``."""
        with self._lock:
            current = self._data["deployed"]
            for alias, record in deployed.items():
                if record is None or not record["deployment"]:
                    current.pop(alias, None)
                else:
                    current[alias] = record
            self._data["active"] = None
            self._data["finished"] = [*self._data["finished"],
                                      result["DeploymentName"]][-MAX_FINISHED:]
            self._data["results"].append(result)
            self._write()

    def forget(self, alias: str) -> None:
        """Drop a deployed model that was unloaded by a client (it is not reloaded at start)."""
        with self._lock:
            if self._data["deployed"].pop(alias, None) is not None:
                self._write()

    def pending_result(self) -> dict[str, Any] | None:
        """The oldest DeploymentResult the control plane has not acknowledged, or None."""
        with self._lock:
            results = self._data["results"]
            return dict(results[0]) if results else None

    def acknowledge(self, name: str) -> None:
        """Forget the result of deployment ``name`` (a heartbeat carrying it succeeded)."""
        with self._lock:
            before = len(self._data["results"])
            self._data["results"] = [r for r in self._data["results"]
                                     if r["DeploymentName"] != name]
            if len(self._data["results"]) != before:
                self._write()
