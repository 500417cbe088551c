"""Deployments on the device: download, verify, swap, health gate, rollback, durable state.

The control plane hands out deployments (``GetDeployments``, botocore's ``EdgeDeployment``
shape); :class:`DeploymentExecutor` applies one at a time:

1. **fetch** each ``DEPLOY`` definition's package: stream it from ``S3Url`` into
   ``<local data root>/deployments/packages/<sha1>/``, check its SHA-1 against ``Checksum``,
   retry up to ``sagemaker_edge_model_deployment_max_retry`` times with backoff;
2. **open** it as LoadModel does (signature, certificate chain, digests, safe extraction under
   the local data root; :func:`edgefleet.package.open_package`) without publishing it;
3. **probe** it: one prediction on zeros of each declared input shape (dynamic dimensions as 1).
   A model that fails here never serves, whatever the failure policy;
4. **swap** it in under the ``ModelHandle`` alias (:meth:`ModelRegistry.replace`: calls in flight
   finish on the old version, no call sees NOT_FOUND); ``UNDEPLOY`` definitions unload;
5. **health gate**: no prediction error on the swapped models for
   ``edgefleet_deployment_health_seconds``;
6. **commit**: the deployed models and the ``DeploymentResult`` go to the state file in one
   atomic write; the heartbeat reports the result until the control plane took it.

On failure under ``ROLLBACK_ON_FAILURE`` every model the deployment swapped goes back to its
previous version (whose package stays on disk until the commit); under ``DO_NOTHING`` the
models stay as they are. The state file lists only committed deployments, so an agent stopped
or killed mid-deployment restarts with the previous versions (fully rolled back) and reports
the deployment as failed: it never ends half-deployed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from edgefleet.agent.config import AgentConfig
from edgefleet.agent.device.state import DeployedModel, StateStore
from edgefleet.agent.device.transport import control_backoff, shown_url
from edgefleet.agent.serving.registry import LoadedModel
from edgefleet.agent.serving.service import AgentService
from edgefleet.errors import EdgefleetError, NotFound
from edgefleet.package import read_unverified
from edgefleet.wire.edge import Definition, Deployment, wire_model_name, wire_version

log = logging.getLogger(__name__)

#: Longest status reason sent to the control plane, in characters.
MAX_REASON = 1000

Download = Callable[[str], Generator[bytes, None, None]]
"""Streams the object at a URL in chunks; raises an EdgefleetError (or OSError) on failure."""


class DeploymentFailed(EdgefleetError):
    """One model of a deployment could not be deployed; the message is the StatusReason."""


class Interrupted(Exception):
    """The agent is stopping in the middle of a deployment; the next start rolls it back."""


@dataclass
class _Outcome:
    """What happened to one definition (becomes a ``DeploymentModel``)."""

    definition: Definition
    model_name: str | None = None
    version: str | None = None
    failure: str | None = None
    rollback_failure: str | None = None
    rolled_back: bool = False


@dataclass
class _Swap:
    """A model the deployment changed: what served before and what serves now."""

    handle: str
    previous: DeployedModel | None
    current: DeployedModel | None
    outcome: _Outcome
    model: LoadedModel | None = None


class DeploymentExecutor:
    """Applies deployments to the agent's models and keeps their state durable.

    Args:
        service: the agent's service (models are opened and unloaded through it).
        config: agent configuration (local data root, retries, health window, size cap).
        download: streams a package URL (the control-plane transport's ``download``); None
            when the agent runs without a control plane (only :meth:`restore` is useful then).
        stop: set when the agent stops; downloads, retries and the health gate end early.
    """

    def __init__(self, service: AgentService, config: AgentConfig, *,
                 download: Download | None, stop: threading.Event) -> None:
        self._service = service
        self._registry = service.registry
        self._config = config
        self._download = download
        self._stop = stop
        root = config.sagemaker_edge_local_data_root_path / "deployments"
        self._packages = root / "packages"
        self._downloads = root / "downloads"
        self.state = StateStore(root / "state.json")
        self._busy = threading.Lock()
        self._owner: int | None = None  # thread id holding _busy; its unloads are our own
        self._registry.on_unload.append(self._on_unload)

    @contextlib.contextmanager
    def _working(self) -> Iterator[None]:
        with self._busy:
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._owner = None

    # -- start and stop ---------------------------------------------------------------------------
    def restore(self) -> None:
        """At agent start: count the start, fail an interrupted deployment, reload the deployed
        models. Never raises for a model that no longer loads (it is logged and dropped)."""
        with self._working():
            self.state.record_start()
            if not self._registry.models():
                # Folders extracted by a process that was killed: nothing uses them now.
                shutil.rmtree(self._config.sagemaker_edge_local_data_root_path / "packages",
                              ignore_errors=True)
            active = self.state.active()
            if active is not None:
                self._fail_interrupted(active)
            for alias, record in sorted(self.state.deployed().items()):
                try:
                    self._service.load_model(record["url"], alias)
                except EdgefleetError as error:
                    log.error("deployed model %r (%s) no longer loads and was dropped: %s",
                              alias, record["url"], error.message)
                    self.state.forget(alias)
                else:
                    log.info("reloaded deployed model %r version %r (deployment %s)", alias,
                             record["version"], record["deployment"])
            self._collect_garbage()

    def close(self) -> None:
        """Stop watching unloads (call before the service unloads every model)."""
        with contextlib.suppress(ValueError):
            self._registry.on_unload.remove(self._on_unload)

    def _on_unload(self, model: LoadedModel) -> None:
        # A client's UnLoadModel of a deployed model: do not bring it back at the next start.
        # Replacements (the alias still serves) and the executor's own unloads (made on the
        # thread that holds _busy; hooks run on the unloading thread) are not that.
        alias = model.info.alias
        if self._owner == threading.get_ident() or alias not in self.state.deployed():
            return
        with contextlib.suppress(NotFound):
            self._registry.get(alias)
            return
        self.state.forget(alias)
        log.info("deployed model %r was unloaded by a client; it will not be reloaded at start",
                 alias)

    def _fail_interrupted(self, active: dict[str, Any]) -> None:
        reason = ("the agent stopped during the deployment; the previous versions were "
                  "restored at restart")
        models = [{"ModelHandle": handle, "DesiredState": state, "Status": "FAIL",
                   "StatusReason": reason}
                  for handle, state in zip(active["handles"], active["states"], strict=True)]
        for model in models:
            deployed = self.state.deployed().get(model["ModelHandle"])
            model["State"] = "DEPLOY" if deployed else "UNDEPLOY"
        self.state.finish({}, {
            "DeploymentName": active["name"], "DeploymentStatus": "FAIL",
            "DeploymentStatusMessage": reason, "DeploymentStartTime": active["started"],
            "DeploymentEndTime": time.time(), "DeploymentModels": models})
        log.warning("deployment %s was interrupted by a stop; reporting it as failed",
                    active["name"])

    # -- applying ---------------------------------------------------------------------------------
    def apply(self, deployment: Deployment) -> bool:
        """Apply ``deployment`` unless it was applied before.

        A failing deployment does not raise: its failure is the committed result.

        Returns:
            True when a result was committed (the heartbeat should report it soon), False when
            the deployment was known already or the agent is stopping (the next start reports
            it as failed and rolled back).

        Raises:
            OSError: the state file cannot be written (disk full, read-only file system).
        """
        with self._working():
            if self.state.is_known(deployment.name):
                return False
            started = time.time()
            log.info("deployment %s: %s (%s)", deployment.name, ", ".join(
                f"{d.state} {d.handle}" for d in deployment.definitions), deployment.policy)
            self.state.begin(deployment, started)
            try:
                swaps, outcomes = self._run(deployment)
            except Interrupted:
                log.warning("deployment %s interrupted by a stop", deployment.name)
                return False
            self._commit(deployment, started, swaps, outcomes)
            self._collect_garbage()
            return True

    def _run(self, deployment: Deployment) -> tuple[list[_Swap], list[_Outcome]]:
        swaps: list[_Swap] = []
        outcomes: list[_Outcome] = []
        for definition in deployment.definitions:
            outcome = _Outcome(definition)
            outcomes.append(outcome)
            try:
                swap = self._change(deployment, definition, outcome)
            except DeploymentFailed as error:
                outcome.failure = error.message
                log.warning("deployment %s: %s failed: %s", deployment.name, definition.handle,
                            error.message)
                continue
            if swap is not None:
                swaps.append(swap)
        if not any(o.failure for o in outcomes):
            self._health_gate(swaps)
        if any(o.failure for o in outcomes) and deployment.policy == "ROLLBACK_ON_FAILURE":
            for swap in reversed(swaps):
                self._roll_back(swap)
        return swaps, outcomes

    def _change(self, deployment: Deployment, definition: Definition,
                outcome: _Outcome) -> _Swap | None:
        previous = self._serving(definition.handle)
        if definition.state == "UNDEPLOY":
            if previous is None:
                return None
            self._unload(definition.handle)
            return _Swap(definition.handle, previous, None, outcome)
        archive = self._fetch(definition)
        self._check_stop()
        try:
            model = self._service.open_model(str(archive), definition.handle)
        except EdgefleetError as error:
            raise DeploymentFailed(f"the package does not load: {error.message}") from None
        manifest_name = _manifest_name(model)
        outcome.model_name, outcome.version = manifest_name, model.info.version
        try:
            _probe(model)
            self._check_stop()
            self._registry.replace(model)
        except Interrupted:
            _discard(model)
            raise
        except Exception as error:
            _discard(model)
            message = error.message if isinstance(error, EdgefleetError) else str(error)
            raise DeploymentFailed(
                f"version {model.info.version!r} did not answer a probe prediction (zeros of "
                f"each input shape): {message}") from None
        log.info("deployment %s: %s now serves version %r", deployment.name, definition.handle,
                 model.info.version)
        current = DeployedModel(url=str(archive), model_name=manifest_name or "",
                                version=model.info.version, deployment=deployment.name)
        return _Swap(definition.handle, previous, current, outcome, model)

    def _serving(self, alias: str) -> DeployedModel | None:
        """What serves under ``alias`` now, as a record a rollback can reopen."""
        try:
            info = self._registry.get(alias).info
        except NotFound:
            return None
        deployed = self.state.deployed().get(alias)
        if deployed is not None and deployed["url"] == info.url:
            return deployed
        return DeployedModel(url=info.url, model_name="", version=info.version, deployment="")

    def _health_gate(self, swaps: list[_Swap]) -> None:
        watched = [s for s in swaps if s.model is not None]
        if not watched:
            return
        deadline = time.monotonic() + self._config.edgefleet_deployment_health_seconds
        while True:
            for swap in watched:
                assert swap.model is not None
                errors = swap.model.stats.errors  # a fresh model: every error is since the swap
                if errors:
                    swap.outcome.failure = (
                        f"{errors} prediction error(s) within the health window of "
                        f"{self._config.edgefleet_deployment_health_seconds:g} s after the swap")
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._stop.wait(min(0.2, remaining)):
                raise Interrupted

    def _roll_back(self, swap: _Swap) -> None:
        swap.outcome.rolled_back = True
        previous = swap.previous
        try:
            if previous is None:
                self._unload(swap.handle)
            else:
                model = self._service.open_model(previous["url"], swap.handle)
                self._registry.replace(model)
        except EdgefleetError as error:
            swap.outcome.rollback_failure = _clip(error.message)
            log.error("rollback of %r failed: %s", swap.handle, error.message)
            return
        swap.current = previous
        log.info("rolled %r back to %s", swap.handle,
                 f"version {previous['version']!r}" if previous else "no model")

    def _unload(self, alias: str) -> None:
        with contextlib.suppress(NotFound):
            self._service.unload_model(alias)

    def _commit(self, deployment: Deployment, started: float, swaps: list[_Swap],
                outcomes: list[_Outcome]) -> None:
        failed = [o for o in outcomes if o.failure]
        serving = {m.info.alias for m in self._registry.models()}
        models = []
        for outcome in outcomes:
            definition = outcome.definition
            deployed = definition.handle in serving
            status = "FAIL" if outcome.failure or (failed and outcome.rolled_back) else "SUCCESS"
            reason = outcome.failure or (
                f"rolled back because {', '.join(o.definition.handle for o in failed)} failed"
                if status == "FAIL" else None)
            entry: dict[str, Any] = {
                "ModelHandle": definition.handle, "DesiredState": definition.state,
                "State": "DEPLOY" if deployed else "UNDEPLOY", "Status": status}
            for key, value in (("ModelName", wire_model_name(outcome.model_name)),
                               ("ModelVersion", wire_version(outcome.version)),
                               ("StatusReason", _clip(reason) if reason else None),
                               ("RollbackFailureReason", outcome.rollback_failure)):
                if value is not None:
                    entry[key] = value
            models.append(entry)
        if not failed:
            message = "deployed: " + ", ".join(
                f"{o.definition.handle} {o.version or ''}".strip() if o.definition.state ==
                "DEPLOY" else f"{o.definition.handle} undeployed" for o in outcomes)
        else:
            if not swaps:
                outcome_text = "failed before any model changed; the previous versions serve"
            elif deployment.policy == "ROLLBACK_ON_FAILURE":
                outcome_text = "failed and rolled back to the previous versions"
            else:
                outcome_text = "failed; left as is (DO_NOTHING)"
            message = f"{outcome_text}: " + "; ".join(
                f"{o.definition.handle}: {o.failure}" for o in failed)
        result = {"DeploymentName": deployment.name,
                  "DeploymentStatus": "FAIL" if failed else "SUCCESS",
                  "DeploymentStatusMessage": _clip(message), "DeploymentStartTime": started,
                  "DeploymentEndTime": time.time(), "DeploymentModels": models}
        self.state.finish({s.handle: s.current for s in swaps}, result)
        log.info("deployment %s %s: %s", deployment.name, result["DeploymentStatus"], message)

    # -- packages ---------------------------------------------------------------------------------
    def _fetch(self, definition: Definition) -> Path:
        """The verified package archive of ``definition`` on disk (downloaded if needed).

        Raises:
            DeploymentFailed: every attempt failed; the message says how the last one did.
        """
        name = PurePosixPath(unquote(urlsplit(definition.url).path)).name
        if not name.endswith((".tar.gz", ".tgz")):
            name = f"{definition.handle}.tar.gz"
        if definition.sha1:
            kept = self._packages / definition.sha1 / name
            if kept.is_file():
                return kept
        if self._download is None:
            raise DeploymentFailed(
                "no control plane is configured to download packages from; set "
                "sagemaker_edge_provider_provider to Aws and sagemaker_edge_core_endpoint_override")
        attempts = 1 + self._config.sagemaker_edge_model_deployment_max_retry
        backoff = control_backoff(self._config)
        problem = ""
        for attempt in range(1, attempts + 1):
            self._check_stop()
            try:
                return self._download_once(definition, name)
            except (EdgefleetError, OSError) as error:
                problem = error.message if isinstance(error, EdgefleetError) else str(error)
            log.warning("download of %s for %r failed (attempt %d of %d): %s",
                        shown_url(definition.url), definition.handle, attempt, attempts, problem)
            if attempt < attempts and self._stop.wait(backoff.next_delay()):
                raise Interrupted
        raise DeploymentFailed(f"download failed {attempts} time(s); last: {problem}")

    def _download_once(self, definition: Definition, name: str) -> Path:
        assert self._download is not None
        self._downloads.mkdir(parents=True, exist_ok=True)
        partial = self._downloads / f"{uuid.uuid4().hex}.partial"
        digest = hashlib.sha1(usedforsecurity=False)
        size, cap = 0, self._config.edgefleet_max_package_bytes
        try:
            with partial.open("wb") as file, contextlib.closing(
                    self._download(definition.url)) as chunks:
                for chunk in chunks:
                    self._check_stop()
                    size += len(chunk)
                    if size > cap:
                        raise DeploymentFailed(
                            f"the package is larger than edgefleet_max_package_bytes ({cap} "
                            f"bytes)")
                    digest.update(chunk)
                    file.write(chunk)
                file.flush()
                os.fsync(file.fileno())
            sha1 = digest.hexdigest()
            if definition.sha1 and sha1 != definition.sha1:
                raise DeploymentFailed(
                    f"checksum mismatch: the downloaded package ({size} bytes) has SHA-1 {sha1}, "
                    f"the deployment expects {definition.sha1}")
            target = self._packages / sha1 / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return target

    def _collect_garbage(self) -> None:
        """Remove packages no committed deployment uses, and partial downloads."""
        kept = {Path(r["url"]).parent for r in self.state.deployed().values()}
        if self._packages.is_dir():
            for folder in self._packages.iterdir():
                if folder not in kept:
                    shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(self._downloads, ignore_errors=True)

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise Interrupted


def _probe(model: LoadedModel) -> None:
    """One prediction on zeros of every declared input shape (dynamic dimensions as 1)."""
    feeds = {spec.name: np.zeros(tuple(1 if d < 0 else d for d in spec.shape), spec.dtype)
             for spec in model.info.inputs}
    model.runtime.predict(feeds)


def _discard(model: LoadedModel) -> None:
    """Release a model that was opened but never published."""
    model.release()


def _manifest_name(model: LoadedModel) -> str | None:
    if model.extracted_to is None:
        return None
    with contextlib.suppress(EdgefleetError):
        return read_unverified(model.extracted_to)[0].model_name
    return None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 3] + "..."
