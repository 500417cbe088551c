"""Model runtimes behind one small interface (:class:`~edgefleet.runtimes.base.Runtime`).

ONNX Runtime is the default and the only runtime shipped today; it is what "compiled model" means
in edgefleet (the Neo/DLR runtime of the original product is dead). A new runtime subclasses
``Runtime`` and registers its framework name in :data:`RUNTIMES`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgefleet.errors import UnsupportedModel
from edgefleet.runtimes.base import Runtime, RuntimeOptions


def _load_onnx(path: Path, options: RuntimeOptions) -> Runtime:
    # Imported on first use: onnxruntime's import costs ~0.2 s, which the agent's start skips.
    from edgefleet.runtimes.onnx import OnnxRuntime

    return OnnxRuntime(path, options)


#: Framework name in a package manifest -> loader.
RUNTIMES: dict[str, Callable[[Path, RuntimeOptions], Runtime]] = {"onnx": _load_onnx}


def load_runtime(framework: str, path: Path, options: RuntimeOptions) -> Runtime:
    """Load the model file at ``path`` with the runtime for ``framework``.

    Raises:
        UnsupportedModel: no runtime for this framework, or the runtime rejects the file.
        ResourceExhausted: not enough memory to load it.
    """
    try:
        loader = RUNTIMES[framework.lower()]
    except KeyError:
        raise UnsupportedModel(
            f"framework {framework!r} has no runtime on this device; available: "
            f"{', '.join(sorted(RUNTIMES))}") from None
    return loader(path, options)


__all__ = ["RUNTIMES", "Runtime", "RuntimeOptions", "load_runtime"]
