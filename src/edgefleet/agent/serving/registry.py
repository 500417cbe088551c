"""The loaded models, by alias, with safe concurrent load, predict and unload.

Lifecycle: ``load`` reserves the alias, loads outside the lock (loading takes seconds; other
models keep serving), then publishes the model. ``acquire`` hands out a model for one call and
counts it in flight; ``unload`` unpublishes the alias at once (new calls get NOT_FOUND), waits
until the calls in flight on that model return, then releases it. Calls on other models never
wait on any of this.

Lifecycle hooks (``on_load``, ``on_unload``) let cross-cutting features such as metrics or
deployment bookkeeping attach without editing the registry.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet.agent.types import ModelInfo
from edgefleet.errors import AlreadyExists, NotFound, Unavailable
from edgefleet.names import check_alias
from edgefleet.runtimes import Runtime
from edgefleet.tensors import TensorSpec


@dataclass(slots=True)
class ModelStats:
    """Per-model counters since load; latencies since the last :meth:`drain_latencies`.

    Attributes:
        inferences: successful predictions.
        errors: predictions that failed after the model was found.
        latest_inference: wall-clock time (epoch seconds) of the last prediction, 0 if none.
        latencies: recent prediction latencies in seconds (bounded).
    """

    inferences: int = 0
    errors: int = 0
    latest_inference: float = 0.0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, seconds: float, ok: bool) -> None:
        """Count one prediction that took ``seconds``."""
        with self._lock:
            if ok:
                self.inferences += 1
                self.latencies.append(seconds)
            else:
                self.errors += 1
            self.latest_inference = time.time()

    def drain_latencies(self) -> list[float]:
        """Return and forget the latencies recorded so far (seconds)."""
        with self._lock:
            drained = list(self.latencies)
            self.latencies.clear()
        return drained


@dataclass(slots=True)
class LoadedModel:
    """A published model: its runtime, what clients see of it, and its counters.

    ``extracted_to`` is the folder a ``.tar.gz`` package was extracted to for this model alone
    (removed by :meth:`release`), or ``None``.
    """

    info: ModelInfo
    runtime: Runtime
    stats: ModelStats = field(default_factory=ModelStats)
    in_flight: int = 0
    extracted_to: Path | None = None
    inputs_by_name: dict[str, tuple[int, TensorSpec]] = field(init=False)

    def __post_init__(self) -> None:
        self.inputs_by_name = {
            spec.name: (position, spec) for position, spec in enumerate(self.info.inputs)}

    def release(self) -> None:
        """Free the runtime and remove the folder extracted for this model (if any).

        Call once, after the last prediction on this model has returned.
        """
        self.runtime.unload()
        if self.extracted_to is not None:
            shutil.rmtree(self.extracted_to, ignore_errors=True)


Hook = Callable[[LoadedModel], None]


class ModelRegistry:
    """Thread-safe map of alias -> :class:`LoadedModel`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._models: dict[str, LoadedModel] = {}
        self._reserved: set[str] = set()
        self._closed = False
        self.on_load: list[Hook] = []
        self.on_unload: list[Hook] = []

    def reserve(self, alias: str) -> None:
        """Claim ``alias`` for a load in progress.

        Raises:
            InvalidArgument: the alias is malformed.
            AlreadyExists: a model is loaded or loading under that alias.
            Unavailable: the registry is closing.
        """
        check_alias(alias)
        with self._lock:
            if self._closed:
                raise Unavailable("the agent is shutting down; load the model after it restarts")
            if alias in self._models or alias in self._reserved:
                raise AlreadyExists(
                    f"a model is already loaded under the name {alias!r}; unload it first or "
                    f"load the new version under another name")
            self._reserved.add(alias)

    def release_reservation(self, alias: str) -> None:
        """Give up a reservation after a failed load."""
        with self._lock:
            self._reserved.discard(alias)

    def publish(self, model: LoadedModel) -> None:
        """Make a reserved model visible to calls, then run the ``on_load`` hooks."""
        with self._lock:
            self._reserved.discard(model.info.alias)
            self._models[model.info.alias] = model
        for hook in self.on_load:
            hook(model)

    def get(self, alias: str) -> LoadedModel:
        """The published model under ``alias`` (for metadata; not counted in flight). Like
        :meth:`checkout`, the alias is validated only when no model has it.

        Raises:
            InvalidArgument: no model under ``alias`` and ``alias`` is malformed.
            NotFound: no model under that alias.
        """
        model = self._models.get(alias)
        if model is None:
            check_alias(alias)
            raise NotFound(self._not_loaded(alias))
        return model

    def checkout(self, alias: str) -> LoadedModel:
        """Hold the model under ``alias`` for one call; pair with :meth:`checkin`.

        Unload waits until every checked-out call is checked in. Aliases are validated only
        when no model has them (published aliases are valid), which keeps this cheap.

        Raises:
            InvalidArgument: no model under ``alias`` and ``alias`` is malformed.
            NotFound: no model under that alias.
        """
        with self._lock:
            model = self._models.get(alias)
            if model is not None:
                model.in_flight += 1
                return model
        check_alias(alias)
        raise NotFound(self._not_loaded(alias))

    def checkin(self, model: LoadedModel) -> None:
        """End a call begun with :meth:`checkout`."""
        with self._lock:
            model.in_flight -= 1
            if model.in_flight == 0:
                self._idle.notify_all()

    def unload(self, alias: str, timeout: float | None = None) -> LoadedModel:
        """Unpublish ``alias``, wait for its calls in flight, release its runtime.

        Args:
            timeout: seconds to wait for calls in flight (None: as long as they take).

        Raises:
            NotFound: no model under that alias.
        """
        with self._lock:
            model = self._models.pop(alias, None)
            if model is None:
                raise NotFound(self._not_loaded(alias))
            self._idle.wait_for(lambda: model.in_flight == 0, timeout)
        model.release()
        for hook in self.on_unload:
            hook(model)
        return model

    def replace(self, model: LoadedModel, timeout: float | None = None) -> LoadedModel | None:
        """Publish ``model`` under its alias in place of the model there, in one step.

        Every call sees either the old or the new model, never NOT_FOUND. The old model's calls
        in flight finish on it; then its runtime is released and the ``on_unload`` hooks run for
        it, and the ``on_load`` hooks for ``model``.

        Args:
            model: an opened, unpublished model.
            timeout: seconds to wait for the old model's calls in flight (None: as long as
                they take).

        Returns:
            The model that was replaced, or None if the alias was free.

        Raises:
            AlreadyExists: a LoadModel of that alias is in progress.
            Unavailable: the registry is closing.
        """
        alias = model.info.alias
        with self._lock:
            if self._closed:
                raise Unavailable("the agent is shutting down; deploy after it restarts")
            if alias in self._reserved:
                raise AlreadyExists(f"a LoadModel of {alias!r} is in progress; deploy again "
                                    f"after it finished")
            old = self._models.get(alias)
            self._models[alias] = model
            if old is not None:
                self._idle.wait_for(lambda: old.in_flight == 0, timeout)
        if old is not None:
            old.release()
            for hook in self.on_unload:
                hook(old)
        for hook in self.on_load:
            hook(model)
        return old

    def models(self) -> list[LoadedModel]:
        """The published models, sorted by alias."""
        with self._lock:
            return [self._models[alias] for alias in sorted(self._models)]

    def close(self, timeout: float | None = None) -> None:
        """Refuse new loads and unload every model (waiting for calls in flight)."""
        with self._lock:
            self._closed = True
            aliases = list(self._models)
        for alias in aliases:
            with contextlib.suppress(NotFound):  # unloaded concurrently
                self.unload(alias, timeout)

    def _not_loaded(self, alias: str) -> str:
        loaded = ", ".join(sorted(self._models)) or "none"
        return f"no model is loaded under the name {alias!r} (loaded: {loaded}); call LoadModel"
