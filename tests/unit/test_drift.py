"""edgefleet.drift: baselines, their JSON file, bin counts and the PSI."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from edgefleet import drift
from edgefleet.drift import Baseline, FeatureBaseline, bin_counts, build_baseline, psi
from edgefleet.errors import InvalidArgument

rng = np.random.default_rng(7)


def document(**changes: Any) -> dict[str, Any]:
    """A valid baseline.json document, with top-level ``changes``."""
    return {"format_version": 1, "statistic": "psi", "tensor": "x", "rows": 200,
            "features": [{"name": "0", "edges": [0.0, 1.0], "shares": [0.25, 0.5, 0.25]}],
            **changes}


def feature(**changes: Any) -> dict[str, Any]:
    """A document whose one feature has ``changes``."""
    return document(features=[{"name": "0", "edges": [0.0, 1.0], "shares": [0.25, 0.5, 0.25],
                               **changes}])


def test_quantile_bins_of_uniform_values() -> None:
    baseline = build_baseline(np.arange(1000, dtype=np.float32), tensor="x")

    (only,) = baseline.features
    assert (baseline.tensor, baseline.rows, baseline.feature_names) == ("x", 1000, ("0",))
    assert len(only.edges) == drift.DEFAULT_BINS - 1
    assert only.shares == pytest.approx([0.1] * 10)
    assert list(only.edges) == sorted(only.edges)


def test_rows_are_the_first_dimension_and_features_the_rest_in_c_order() -> None:
    x = rng.normal(size=(300, 2, 3)).astype(np.float32)
    x[:, 1, 2] += 100  # feature 5 in C order

    baseline = build_baseline(x, tensor="x", feature_names=list("abcdef"), bins=4)

    assert len(baseline.features) == 6 and baseline.feature_names == tuple("abcdef")
    assert min(baseline.features[5].edges) > 90 > max(baseline.features[4].edges)


def test_ties_merge_bins_and_non_finite_values_are_left_out() -> None:
    x = np.array([1.0] * 150 + [2.0] * 50 + [np.nan, np.inf])

    (only,) = build_baseline(x, tensor="x").features

    # The 10% to 70% quantiles are all 1.0, the 80% and 90% ones 2.0; nothing is below 1.0.
    assert only.edges == (1.0, 2.0)
    assert only.shares == pytest.approx([0.0, 0.75, 0.25])


def test_integer_tensors_are_binned_as_numbers() -> None:
    x = rng.integers(0, 256, size=(500, 8), dtype=np.uint8)

    baseline = build_baseline(x, tensor="pixels")

    assert len(baseline.features) == 8
    assert bin_counts(baseline, x[:10]) == [
        np.bincount(np.searchsorted(f.edges, x[:10, i], side="right"),
                    minlength=len(f.shares)).tolist()
        for i, f in enumerate(baseline.features)]


@pytest.mark.parametrize(("x", "kwargs", "error"), [
    (np.zeros((drift.MIN_ROWS - 1, 2)), {}, "at least 100 rows; got 99"),
    (np.zeros((200, 2)), {"bins": 1}, "bins must be 2 to 100"),
    (np.zeros((200, 2)), {"bins": 101}, "bins must be 2 to 100"),
    (np.zeros((200, 2)), {"feature_names": ["a"]}, "1 feature names given for 2 features"),
    (np.zeros((200, drift.MAX_FEATURES + 1), np.uint8), {}, "at most 4096 features"),
    (np.full((200, 1), np.nan), {}, "feature '0' has no finite value"),
    (np.zeros((200, 2), bool), {}, "not dtype bool"),
    (np.zeros((200, 2), complex), {}, "not dtype complex128"),
    (np.zeros((0, 2)), {}, "at least one row"),
    (np.float32(1.0), {}, "at least one row"),
])
def test_build_refusals(x: np.ndarray, kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(InvalidArgument, match=error):
        build_baseline(x, tensor="x", **kwargs)


def test_json_round_trip() -> None:
    baseline = build_baseline(rng.normal(size=(250, 3)), tensor="x", feature_names=["u", "v", "w"])

    data = baseline.to_json()

    assert Baseline.from_json(data) == baseline
    parsed = json.loads(data)
    assert (parsed["format_version"], parsed["statistic"], parsed["rows"]) == (1, "psi", 250)
    assert [f["name"] for f in parsed["features"]] == ["u", "v", "w"]


@pytest.mark.parametrize(("data", "error"), [
    (b"{", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    (b"[1]", "must hold a JSON object"),
    (json.dumps(document(format_version=2)).encode(), "format_version must be 1 to 1, not '2'"),
    (json.dumps(document(format_version=True)).encode(), "format_version must be 1"),
    (json.dumps(document(format_version="1")).encode(), "format_version must be 1"),
    (json.dumps(document(tensor="")).encode(), "'tensor' must be a non-empty string"),
    (json.dumps(document(rows=0)).encode(), "'rows' must be a positive integer"),
    (json.dumps(document(rows=True)).encode(), "'rows' must be a positive integer"),
    (json.dumps(document(features=[])).encode(), "'features' must be a list of 1 to 4096"),
    (json.dumps(document(features=[7])).encode(), r"features\[0\] must be an object"),
    (json.dumps(feature(name=3)).encode(), r"features\[0\].name must be a string"),
    (json.dumps(feature(edges=[1.0, 0.0])).encode(), "edges must be strictly increasing"),
    (json.dumps(feature(edges=[0.0])).encode(), "one more entry than 'edges'"),
    (json.dumps(feature(shares=[0.5, 0.5, 0.5])).encode(), "must be >= 0 and sum to 1"),
    (json.dumps(feature(shares=[-0.5, 1.0, 0.5])).encode(), "must be >= 0 and sum to 1"),
    (json.dumps(feature(edges=["0", 1.0])).encode(), "edges must be a list of finite numbers"),
    (json.dumps(feature(edges=[False, 1.0])).encode(), "edges must be a list of finite"),
    (json.dumps(feature(edges={"0": 1})).encode(), "edges must be a list of finite numbers"),
    # json.dumps writes NaN and Infinity, which Python's parser accepts: both are refused.
    (json.dumps(feature(edges=[math.nan, 1.0])).encode(), "edges must be a list of finite"),
    (json.dumps(feature(shares=[0.25, math.inf, 0.25])).encode(), "shares must be a list of"),
    (json.dumps(feature(edges=[0.0, 1.0])).replace("1.0]", "1e999]").encode(),
     "edges must be a list of finite numbers"),
    (json.dumps(feature(edges=[0.0, 10 ** 400])).encode(), "edges must be a list of finite"),
    (json.dumps(feature(edges=[0.0, 1.0])).replace("1.0]", "9" * 5000 + "]").encode(),
     "not valid JSON"),
])
def test_from_json_refusals(data: bytes, error: str) -> None:
    with pytest.raises(InvalidArgument, match=error):
        Baseline.from_json(data)


def test_bin_counts_follow_the_edges() -> None:
    baseline = Baseline("x", ("0",), (FeatureBaseline((1.0, 2.0), (0.2, 0.5, 0.3)),), 100)

    counts = bin_counts(baseline, np.array([0.0, 1.0, 1.5, 2.0, 3.0, np.nan, -np.inf]))

    # [.., 1) | [1, 2) | [2, ..]; NaN and -inf are not counted.
    assert counts == [[1, 2, 2]]


def test_bin_counts_refuses_another_feature_count() -> None:
    baseline = build_baseline(rng.normal(size=(200, 4)), tensor="x")

    with pytest.raises(InvalidArgument, match=r"3 features per row .* its baseline has 4"):
        bin_counts(baseline, np.zeros((5, 3)))


def test_psi_is_near_zero_for_the_same_distribution() -> None:
    baseline = build_baseline(rng.normal(size=(5000, 3)), tensor="x")
    counts = bin_counts(baseline, rng.normal(size=(5000, 3)))

    values = [psi(f, c) for f, c in zip(baseline.features, counts, strict=True)]

    assert all(v is not None and 0 <= v < 0.02 for v in values), values


def test_psi_is_over_the_threshold_for_a_shifted_distribution() -> None:
    baseline = build_baseline(rng.normal(size=(5000, 1)), tensor="x")
    counts = bin_counts(baseline, rng.normal(loc=1.0, size=(1000, 1)))

    value = psi(baseline.features[0], counts[0])

    assert value is not None and value > drift.PSI_THRESHOLD


def test_psi_needs_min_rows() -> None:
    only = FeatureBaseline((0.0,), (0.5, 0.5))

    assert psi(only, [drift.MIN_ROWS // 2, drift.MIN_ROWS // 2 - 1]) is None
    assert psi(only, [drift.MIN_ROWS // 2, drift.MIN_ROWS // 2]) == pytest.approx(0.0)


def test_psi_by_hand() -> None:
    only = FeatureBaseline((0.0,), (0.5, 0.5))

    # A = (0.3, 0.7), E = (0.5, 0.5): (0.3 - 0.5) ln(0.6) + (0.7 - 0.5) ln(1.4)
    assert psi(only, [30, 70]) == pytest.approx(0.2 * math.log(1.4) - 0.2 * math.log(0.6))
    assert psi(only, [30, 70]) == pytest.approx(0.16946, abs=1e-5)
    # An empty bin is floored at SHARE_FLOOR: large, finite.
    floor = drift.SHARE_FLOOR
    assert psi(only, np.array([0, 100])) == pytest.approx(
        (floor - 0.5) * math.log(floor / 0.5) + 0.5 * math.log(2))


def test_psi_refuses_counts_of_another_bin_count() -> None:
    with pytest.raises(InvalidArgument, match="3 bin counts given for a feature of 2 bins"):
        psi(FeatureBaseline((0.0,), (0.5, 0.5)), [1, 2, 3])
