"""ModelRegistry: reservations, in-flight accounting and unload ordering."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from edgefleet.agent.serving.registry import LoadedModel, ModelRegistry
from edgefleet.agent.types import ModelInfo
from edgefleet.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from edgefleet.names import check_alias
from edgefleet.runtimes import Runtime


class GatedRuntime(Runtime):
    """A runtime whose predict blocks until released: makes in-flight calls observable."""

    def __init__(self) -> None:
        self.path = Path("gated")
        self.inputs = ()
        self.outputs = ()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.unloaded = threading.Event()

    def predict(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.entered.set()
        self.release.wait(10)
        return []

    def unload(self) -> None:
        self.unloaded.set()


def publish(registry: ModelRegistry, alias: str) -> GatedRuntime:
    runtime = GatedRuntime()
    registry.reserve(alias)
    registry.publish(LoadedModel(
        info=ModelInfo(alias=alias, url="u", version="1", inputs=(), outputs=()),
        runtime=runtime))
    return runtime


@pytest.mark.parametrize("alias", ["a", "model-1", "A--b", "x9"])
def test_valid_aliases(alias: str) -> None:
    assert check_alias(alias) == alias


@pytest.mark.parametrize("alias", ["", "a_b", "a.b", "-a", "a-", "a b", "x" * 101])
def test_invalid_aliases(alias: str) -> None:
    with pytest.raises(InvalidArgument):
        check_alias(alias)


def test_reserved_or_loaded_alias_is_taken() -> None:
    registry = ModelRegistry()
    registry.reserve("m")
    with pytest.raises(AlreadyExists):
        registry.reserve("m")
    registry.release_reservation("m")
    publish(registry, "m")
    with pytest.raises(AlreadyExists):
        registry.reserve("m")


def test_unload_waits_for_call_in_flight_and_spares_other_models() -> None:
    registry = ModelRegistry()
    slow = publish(registry, "slow")
    other = publish(registry, "other")
    other.release.set()

    def call() -> None:
        model = registry.checkout("slow")
        try:
            model.runtime.predict({})
        finally:
            registry.checkin(model)

    caller = threading.Thread(target=call)
    caller.start()
    assert slow.entered.wait(5)
    unloader = threading.Thread(target=registry.unload, args=("slow",))
    unloader.start()
    unloader.join(0.3)
    assert unloader.is_alive(), "unload returned while a call was in flight"
    assert not slow.unloaded.is_set()
    with pytest.raises(NotFound):  # unpublished at once: new calls are refused
        registry.get("slow")
    model = registry.checkout("other")  # other models are not held up
    model.runtime.predict({})
    registry.checkin(model)
    slow.release.set()
    caller.join(5)
    unloader.join(5)
    assert slow.unloaded.is_set()


def test_close_refuses_new_loads_and_unloads_everything() -> None:
    registry = ModelRegistry()
    runtime = publish(registry, "m")
    registry.close()
    assert runtime.unloaded.is_set()
    with pytest.raises(Unavailable):
        registry.reserve("n")


def test_alias_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        check_alias("anomaly\n")
