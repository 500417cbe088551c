"""Train the turbine anomaly detector and export it to ONNX.

The detector is a *normal-behaviour model*: an MLP (scikit-learn ``MLPRegressor``) that, from a
1-hour window of wind speed and outdoor temperature, predicts the active power and pitch angle a
healthy turbine shows in that wind. It is trained on 2014 windows of normal operation only. A
window's anomaly score is the weighted mean of the squared standardised residuals of power and
pitch, divided by the threshold (the 99.9th percentile of that score on the training windows,
i.e. a 0.1 % false-alarm rate on 2014), so that a score >= 1 means "anomalous".

Why not a plain autoencoder over all features: when we tried one, it "explained" a stopped
turbine by a wrong wind-speed reading (wind speed is just another feature to it) and spent its
error budget on the noisy pitch angle of an idling turbine; it caught 43-80 % of the 2015
stoppages of an hour or more, against 100 % here (docs/windfarm.md).

The ONNX graph does the whole computation, so the edge agent returns the final score:

- input ``windows``: float32 ``[N, length * 4]``, each row the window's records flattened
  record-major with the features of :data:`data.FEATURES` (Ws_avg m/s, P_avg kW, Ba_avg deg,
  Ot_avg degC);
- output ``expected``: float32 ``[N, 2 * length]``, the normal power (kW) of each record followed
  by the normal pitch angle (deg) of each record;
- output ``score``: float32 ``[N]``, the anomaly score (>= 1: anomalous).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor

from windfarm.data import FEATURES, Windows

#: Index of each feature inside a record.
WS, POWER, PITCH, TEMP = (FEATURES.index(name) for name in ("Ws_avg", "P_avg", "Ba_avg", "Ot_avg"))
#: Score weights of the power and pitch residuals. Pitch gets less: an idling turbine's pitch
#: wanders between 45 and 90 deg at the same wind speed without costing any energy.
POWER_WEIGHT, PITCH_WEIGHT = 1.0, 0.2
#: Percentile of the training scores used as threshold (a 0.1 % false-alarm rate on 2014).
#: 99.0-99.7 added mostly one-hour episodes without a visible deficit (docs/windfarm.md).
THRESHOLD_PERCENTILE = 99.9
#: A record is not normal operation if the turbine makes under 20 kW (1 % of rated) in 4.5 m/s
#: or more of wind (stopped), or pitches over 20 deg below 10 m/s (feathered or curtailed).
STOP_WIND_MS, STOP_POWER_KW, FEATHER_PITCH_DEG, FEATHER_WIND_MS = 4.5, 20.0, 20.0, 10.0
OPSET = 17
INPUT_NAME, EXPECTED_NAME, SCORE_NAME = "windows", "expected", "score"


def normal_records(ws: np.ndarray, power: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Return a boolean mask of records that look like normal operation.

    Args:
        ws: wind speed, m/s; power: active power, kW; pitch: pitch angle, deg (same shapes).
    """
    stopped = (ws >= STOP_WIND_MS) & (power < STOP_POWER_KW)
    feathered = (ws < FEATHER_WIND_MS) & (pitch > FEATHER_PITCH_DEG) & (ws >= STOP_WIND_MS)
    return ~(stopped | feathered)


def _columns(length: int, feature: int) -> np.ndarray:
    return np.arange(length) * len(FEATURES) + feature


def input_columns(length: int) -> np.ndarray:
    """Columns of a window row that the MLP reads: wind speeds, then temperatures."""
    return np.concatenate([_columns(length, WS), _columns(length, TEMP)])


def output_columns(length: int) -> np.ndarray:
    """Columns of a window row that the MLP predicts: powers, then pitch angles."""
    return np.concatenate([_columns(length, POWER), _columns(length, PITCH)])


@dataclass(frozen=True)
class Detector:
    """A trained normal-behaviour model with its standardisation and threshold.

    Attributes:
        mlp: maps standardised inputs ``[N, 2 * length]`` to standardised outputs.
        length: records per window.
        in_mean, in_std, out_mean, out_std: float64 standardisation of inputs and outputs
            (SCADA units).
        weights: float64 ``[2 * length]`` score weight of each output column, summing to 1.
        threshold: training score percentile that the exported score is divided by.
        n_train: number of training windows.
    """

    mlp: MLPRegressor
    length: int
    in_mean: np.ndarray
    in_std: np.ndarray
    out_mean: np.ndarray
    out_std: np.ndarray
    weights: np.ndarray
    threshold: float
    n_train: int

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score windows in Python (what the ONNX graph computes).

        Args:
            x: float ``[N, length * 4]`` windows (see :class:`data.Windows`).

        Returns:
            ``(expected [N, 2 * length] in kW and deg, score [N])``.
        """
        inputs = (x[:, input_columns(self.length)] - self.in_mean) / self.in_std
        predicted = self.mlp.predict(inputs).reshape(len(x), -1)
        expected = predicted * self.out_std + self.out_mean
        residual = (x[:, output_columns(self.length)] - expected) / self.out_std
        return expected, (residual**2 @ self.weights) / self.threshold


def train(windows: Windows, *, max_windows: int | None = None, seed: int = 0) -> Detector:
    """Fit the detector on the normal-operation windows among ``windows``.

    Args:
        windows: training windows (the demo passes 2014).
        max_windows: train on a random subset of at most this many normal windows (quick runs).
        seed: random seed for the subset and the MLP.

    Raises:
        ValueError: fewer than 100 normal windows to learn from.
    """
    length = windows.length
    cube = windows.x.reshape(len(windows.x), length, len(FEATURES)).astype(np.float64)
    normal = normal_records(cube[..., WS], cube[..., POWER], cube[..., PITCH]).all(axis=1)
    x = windows.x[normal].astype(np.float64)
    if max_windows is not None and len(x) > max_windows:
        x = x[np.random.default_rng(seed).choice(len(x), max_windows, replace=False)]
    if len(x) < 100:
        raise ValueError(f"only {len(x)} normal windows to train on; need at least 100")
    inputs, outputs = x[:, input_columns(length)], x[:, output_columns(length)]
    in_mean, in_std = inputs.mean(axis=0), inputs.std(axis=0) + 1e-6
    out_mean, out_std = outputs.mean(axis=0), outputs.std(axis=0) + 1e-6
    mlp = MLPRegressor(
        hidden_layer_sizes=(64, 32), activation="relu", batch_size=256, learning_rate_init=2e-3,
        max_iter=60, early_stopping=True, random_state=seed,
    )
    with warnings.catch_warnings():
        # The epoch cap keeps the demo within minutes on two cores; the fit is good by then.
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit((inputs - in_mean) / in_std, (outputs - out_mean) / out_std)
    weights = np.concatenate([np.full(length, POWER_WEIGHT), np.full(length, PITCH_WEIGHT)])
    weights /= weights.sum()
    detector = Detector(mlp, length, in_mean, in_std, out_mean, out_std, weights, 1.0, len(x))
    _, raw_scores = detector.predict(x)
    threshold = float(np.percentile(raw_scores, THRESHOLD_PERCENTILE))
    return Detector(mlp, length, in_mean, in_std, out_mean, out_std, weights, threshold, len(x))


def _const(name: str, values: np.ndarray, dtype: type = np.float32) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name=name)


def to_onnx(detector: Detector) -> onnx.ModelProto:
    """Export the detector as one ONNX graph (inputs and outputs in the module docstring).

    skl2onnx converts the MLP; standardisation, residuals and score are plain ONNX nodes
    around it (opset 17), so any ONNX runtime computes the final score.
    """
    n_in = 2 * detector.length
    mlp = convert_sklearn(
        detector.mlp, initial_types=[("mlp_in", FloatTensorType([None, n_in]))],
        target_opset=OPSET,
    ).graph
    mlp_out = mlp.output[0].name
    pre = [
        helper.make_node("Gather", [INPUT_NAME, "ef_in_cols"], ["ef_in_raw"], axis=1),
        helper.make_node("Sub", ["ef_in_raw", "ef_in_mean"], ["ef_in_centered"]),
        helper.make_node("Div", ["ef_in_centered", "ef_in_std"], ["mlp_in"]),
    ]
    post = [
        helper.make_node("Reshape", [mlp_out, "ef_out_shape"], ["ef_pred"]),
        helper.make_node("Mul", ["ef_pred", "ef_out_std"], ["ef_pred_scaled"]),
        helper.make_node("Add", ["ef_pred_scaled", "ef_out_mean"], [EXPECTED_NAME]),
        helper.make_node("Gather", [INPUT_NAME, "ef_out_cols"], ["ef_actual"], axis=1),
        helper.make_node("Sub", ["ef_actual", EXPECTED_NAME], ["ef_residual"]),
        helper.make_node("Div", ["ef_residual", "ef_out_std"], ["ef_residual_std"]),
        helper.make_node("Mul", ["ef_residual_std", "ef_residual_std"], ["ef_squared"]),
        helper.make_node("Mul", ["ef_squared", "ef_weights"], ["ef_weighted"]),
        helper.make_node("ReduceSum", ["ef_weighted", "ef_axis1"], ["ef_raw_score"], keepdims=0),
        helper.make_node("Div", ["ef_raw_score", "ef_threshold"], [SCORE_NAME]),
    ]
    initializers = [
        _const("ef_in_cols", input_columns(detector.length), np.int64),
        _const("ef_out_cols", output_columns(detector.length), np.int64),
        _const("ef_in_mean", detector.in_mean),
        _const("ef_in_std", detector.in_std),
        _const("ef_out_mean", detector.out_mean),
        _const("ef_out_std", detector.out_std),
        _const("ef_weights", detector.weights),
        _const("ef_threshold", np.array(detector.threshold)),
        _const("ef_axis1", np.array([1]), np.int64),
        _const("ef_out_shape", np.array([-1, n_in]), np.int64),
    ]
    width = detector.length * len(FEATURES)
    graph = helper.make_graph(
        [*pre, *mlp.node, *post], "turbine_normal_behaviour",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", width])],
        [
            helper.make_tensor_value_info(EXPECTED_NAME, TensorProto.FLOAT, ["N", n_in]),
            helper.make_tensor_value_info(SCORE_NAME, TensorProto.FLOAT, ["N"]),
        ],
        initializer=[*initializers, *mlp.initializer],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgefleet-windfarm",
        doc_string=(
            f"Normal-behaviour model for Senvion MM82 turbines (La Haute Borne SCADA, ENGIE, "
            f"Open Licence 2.0). score >= 1 is anomalous; threshold = {THRESHOLD_PERCENTILE}th "
            f"percentile of {detector.n_train} normal 2014 windows."
        ),
    )
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(detector: Detector, path: Path) -> Path:
    """Write :func:`to_onnx` of ``detector`` to ``path`` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(to_onnx(detector), path)
    return path
