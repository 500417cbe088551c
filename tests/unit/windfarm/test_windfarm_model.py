"""The detector: trained on synthetic turbines, exported to ONNX, scored like in Python."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from windfarm import data, model, replay

LENGTH = 6


def synthetic_windows(n: int, seed: int = 0) -> data.Windows:
    """A turbine making 60 kW per m/s above 3 m/s, pitching above 10 m/s, in mild weather."""
    rng = np.random.default_rng(seed)
    wind = np.clip(rng.uniform(2, 12, (n, 1)) + rng.normal(0, 0.3, (n, LENGTH)), 0, None)
    power = np.clip(60.0 * (wind - 3), 0, 2050) + rng.normal(0, 5, (n, LENGTH))
    pitch = np.clip(wind - 10, -1, None) + rng.normal(0, 0.1, (n, LENGTH))
    temperature = rng.uniform(0, 20, (n, 1)) + np.zeros((n, LENGTH))
    x = np.stack([wind, power, pitch, temperature], axis=-1).reshape(n, -1).astype(np.float32)
    starts = np.datetime64("2014-01-01T00:00", "ns") + np.arange(n) * np.timedelta64(1, "h")
    return data.Windows(x, np.full(n, "T1", dtype=object), starts, LENGTH)


@pytest.fixture(scope="module")
def detector() -> model.Detector:
    return model.train(synthetic_windows(1500), max_windows=1200)


def test_normal_records() -> None:
    mask = model.normal_records(np.array([8.0, 8.0, 3.0, 6.0, 12.0]),
                                np.array([900.0, 5.0, 0.0, 100.0, 1800.0]),
                                np.array([-1.0, -1.0, 45.0, 30.0, 25.0]))
    assert mask.tolist() == [True, False, True, False, True]


def test_a_stopped_turbine_scores_far_above_the_threshold(detector: model.Detector) -> None:
    windows = synthetic_windows(50, seed=1)
    _, normal = detector.predict(windows.x.astype(np.float64))
    stopped = windows.x.copy()
    stopped[:, model.output_columns(LENGTH)[:LENGTH]] = 0.0
    windy = stopped[:, model.input_columns(LENGTH)[:LENGTH]].mean(axis=1) > 6
    _, score = detector.predict(stopped.astype(np.float64))
    assert detector.n_train == 1200
    assert np.median(normal) < 1.0
    assert (score[windy] > 3.0).all()


def test_onnx_graph_matches_python_and_has_a_dynamic_batch(detector: model.Detector,
                                                            tmp_path: Path) -> None:
    path = model.save_onnx(detector, tmp_path / "m.onnx")
    graph = onnx.load(path).graph
    assert [i.name for i in graph.input] == [model.INPUT_NAME]
    assert [o.name for o in graph.output] == [model.EXPECTED_NAME, model.SCORE_NAME]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("N", LENGTH * len(data.FEATURES))
    scorer = replay.OnnxScorer(path)
    windows = synthetic_windows(37, seed=2)
    for batch in (windows.x[:1], windows.x):
        expected, score = scorer(batch)
        want_expected, want_score = detector.predict(batch.astype(np.float64))
        assert expected.shape == (len(batch), 2 * LENGTH) and score.shape == (len(batch),)
        np.testing.assert_allclose(expected, want_expected, rtol=1e-4, atol=0.05)
        np.testing.assert_allclose(score, want_score, rtol=1e-2, atol=1e-3)


def test_too_few_normal_windows() -> None:
    with pytest.raises(ValueError, match="need at least 100"):
        model.train(synthetic_windows(50))


def test_replay_sends_one_batch_per_turbine_day(detector: model.Detector) -> None:
    windows = synthetic_windows(60)  # 2.5 days of one turbine
    calls: list[int] = []

    def scorer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(x))
        return detector.predict(x.astype(np.float64))

    expected, score = replay.replay(windows, scorer)
    assert calls == [24, 24, 12]
    np.testing.assert_allclose(score, detector.predict(windows.x.astype(np.float64))[1])
    assert expected.shape == (60, 2 * LENGTH)
