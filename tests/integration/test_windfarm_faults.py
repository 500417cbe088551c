"""Injected faults on the real La Haute Borne data, scored by the real model, in-process.

The data comes from the cache (``~/.cache/edgefleet/windfarm`` or ``$EDGEFLEET_CACHE_DIR``);
the first run downloads the openoa 3.2 wheel from PyPI (54 MB). The model is trained on 2014 as
the demo does (about 10 s); each kind is injected at 24 random times across 2015 (6 per
turbine) with another seed than the measurement in docs/windfarm.md, and must be flagged within
``faults.BOUNDS``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from windfarm import data, faults, model, pipeline, replay

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prepared() -> pipeline.Prepared:
    console = Console(stderr=True, quiet=True)
    return pipeline.prepare(data.load_scada(data.ensure_data(console), console))


@pytest.fixture(scope="module")
def scorer(prepared: pipeline.Prepared, tmp_path_factory: pytest.TempPathFactory,
           ) -> replay.OnnxScorer:
    detector = model.train(prepared.train_windows)
    return replay.OnnxScorer(model.save_onnx(
        detector, Path(tmp_path_factory.mktemp("model")) / "turbine-anomaly.onnx"))


def test_every_kind_is_flagged_within_its_bound(prepared: pipeline.Prepared,
                                                scorer: replay.OnnxScorer) -> None:
    found = faults.measure(prepared.test_windows, scorer, trials=24, seed=2024)
    for kind, measurement in found.items():
        assert len(measurement.delays) == 24
        assert measurement.detected == 24, (kind, measurement.delays)
        assert max(d for d in measurement.delays if d is not None) <= faults.BOUNDS[kind], (
            kind, measurement.delays)


@pytest.mark.parametrize("kind", faults.KINDS)
def test_day_batches_give_the_same_windows_as_the_whole_year(
        prepared: pipeline.Prepared, kind: str) -> None:
    windows = prepared.test_windows
    fault = faults.resolve(faults.Fault.parse(f"{kind}:R80736:2015-03-10"), windows.x,
                           windows.start, windows.turbine)
    whole = faults.apply(fault, windows.x, windows.start, windows.turbine)
    batched = np.empty_like(whole)
    for batch in replay.day_batches(windows):
        batched[batch] = faults.apply(fault, windows.x[batch], windows.start[batch],
                                      windows.turbine[batch])
    assert np.array_equal(batched, whole)
    changed = (whole != windows.x).any(axis=1)
    assert changed.any() and not (changed & ~faults.affected(
        fault, windows.start, windows.turbine)).any()
