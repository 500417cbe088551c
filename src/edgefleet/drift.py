"""Input drift against a model's training baseline: the population stability index (PSI).

A *baseline* describes the training inputs of one input tensor, feature by feature. The tensor's
rows are its first dimension and its *features* everything after it, flattened in C order (a
``[N, 24]`` tensor has 24 features; a ``[N, 6, 4]`` one has 24 too). For each feature the
baseline keeps the cut points of ``bins`` quantile bins of the training values and the share of
training values in each bin (close to ``1 / bins``, less where many values are equal).

Captured inputs are counted into the same bins (:func:`bin_counts`) and compared with

    PSI = sum over bins i of (A_i - E_i) * ln(A_i / E_i)

where ``E_i`` is the baseline's share of bin ``i`` and ``A_i`` the captured share; both are
floored at :data:`SHARE_FLOOR` so that an empty bin gives a large, finite term. This is the
population stability index of credit scoring (N. Siddiqi, *Credit Risk Scorecards*, Wiley 2006,
ch. 8; its sampling properties in B. Yurdakul, *Statistical Properties of Population Stability
Index*, Western Michigan University 2018). The usual reading: under 0.1 no shift, 0.1 to 0.25 a
moderate shift, over 0.25 (:data:`PSI_THRESHOLD`) a significant one. With ``n`` captured rows a
feature whose distribution did not change still shows a PSI of about ``(bins - 1) / n`` from
sampling alone, hence :data:`MIN_ROWS`.

The baseline travels inside the signed model package as :data:`BASELINE_FILE`
(docs/package-format.md), so device and server read the same numbers.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

import numpy as np

from edgefleet.errors import InvalidArgument

#: File name of the baseline inside a model package.
BASELINE_FILE = "baseline.json"

#: Format of :data:`BASELINE_FILE` written by this edgefleet; readers refuse newer ones.
BASELINE_FORMAT_VERSION = 1

#: Quantile bins per feature unless the caller asks for another number.
DEFAULT_BINS = 10

#: Shares are floored at this before the logarithm (a common choice; any small positive value
#: keeps an empty bin finite).
SHARE_FLOOR = 1e-4

#: PSI above which a feature is said to have drifted (Siddiqi 2006: "significant shift").
PSI_THRESHOLD = 0.25

#: Fewest captured rows a PSI is computed from: with 10 bins, sampling noise alone is then
#: about 0.09, well under the threshold.
MIN_ROWS = 100

#: Most features one baseline describes (keeps the file and the server's counts small).
MAX_FEATURES = 4096


@dataclass(frozen=True, slots=True)
class FeatureBaseline:
    """One feature of a baseline.

    Attributes:
        edges: increasing inner cut points, ``len(shares) - 1`` of them; bin ``i`` holds values
            ``v`` with ``edges[i-1] <= v < edges[i]`` (bin 0 everything below ``edges[0]``, the
            last bin everything from ``edges[-1]`` up).
        shares: the share of training values in each bin; they sum to 1.
    """

    edges: tuple[float, ...]
    shares: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Baseline:
    """The training-input distribution of one input tensor of a model.

    Attributes:
        tensor: the input tensor's name, as in the package manifest.
        feature_names: one name per feature (``"0"``, ``"1"``, ... unless given).
        features: one :class:`FeatureBaseline` per feature, same order.
        rows: training rows the baseline was computed from.
    """

    tensor: str
    feature_names: tuple[str, ...]
    features: tuple[FeatureBaseline, ...]
    rows: int

    def to_json(self) -> bytes:
        """The bytes of :data:`BASELINE_FILE`: UTF-8 JSON with sorted keys."""
        return (json.dumps({
            "format_version": BASELINE_FORMAT_VERSION,
            "statistic": "psi",
            "tensor": self.tensor,
            "rows": self.rows,
            "features": [{"name": name, "edges": list(f.edges), "shares": list(f.shares)}
                         for name, f in zip(self.feature_names, self.features, strict=True)],
        }, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Baseline:
        """Parse :data:`BASELINE_FILE`.

        Raises:
            InvalidArgument: not JSON, a field missing or of the wrong type, edges not
                increasing, shares not summing to 1, or a newer ``format_version``; the message
                names the field.
        """
        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as error:
            raise InvalidArgument(f"{BASELINE_FILE} is not valid JSON ({error})") from None
        if not isinstance(document, dict):
            raise InvalidArgument(f"{BASELINE_FILE} must hold a JSON object")
        version = document.get("format_version")
        if (not isinstance(version, int) or isinstance(version, bool)
                or not 1 <= version <= BASELINE_FORMAT_VERSION):
            raise InvalidArgument(
                f"{BASELINE_FILE}: format_version must be 1 to {BASELINE_FORMAT_VERSION}, "
                f"not {str(version)[:20]!r}; upgrade edgefleet to read it")
        tensor, rows, items = (document.get(k) for k in ("tensor", "rows", "features"))
        if not isinstance(tensor, str) or not tensor:
            raise InvalidArgument(f"{BASELINE_FILE}: 'tensor' must be a non-empty string")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
            raise InvalidArgument(f"{BASELINE_FILE}: 'rows' must be a positive integer")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_FEATURES:
            raise InvalidArgument(
                f"{BASELINE_FILE}: 'features' must be a list of 1 to {MAX_FEATURES} objects")
        names, features = [], []
        for index, item in enumerate(items):
            where = f"{BASELINE_FILE}: features[{index}]"
            if not isinstance(item, dict):
                raise InvalidArgument(f"{where} must be an object")
            name, edges, shares = item.get("name"), item.get("edges"), item.get("shares")
            if not isinstance(name, str):
                raise InvalidArgument(f"{where}.name must be a string")
            names.append(name)
            features.append(_feature(where, edges, shares))
        return cls(tensor, tuple(names), tuple(features), rows)


def _finite(value: object) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _numbers(where: str, values: object) -> tuple[float, ...]:
    if not isinstance(values, list) or not all(_finite(v) for v in values):
        raise InvalidArgument(f"{where} must be a list of finite numbers")
    return tuple(float(v) for v in values)


def _feature(where: str, edges: object, shares: object) -> FeatureBaseline:
    cut, share = _numbers(f"{where}.edges", edges), _numbers(f"{where}.shares", shares)
    if len(share) != len(cut) + 1 or len(share) > 1000:
        raise InvalidArgument(f"{where}: 'shares' must have one more entry than 'edges' "
                              "(at most 1000 bins)")
    if any(b <= a for a, b in itertools.pairwise(cut)):
        raise InvalidArgument(f"{where}.edges must be strictly increasing")
    if any(s < 0 for s in share) or abs(sum(share) - 1) > 1e-6:
        raise InvalidArgument(f"{where}.shares must be >= 0 and sum to 1")
    return FeatureBaseline(cut, share)


def _rows(x: np.ndarray, features: int | None = None) -> np.ndarray:
    """``x`` as ``[rows, features]``: first dimension rows, the rest features (its own dtype:
    columns are converted to float64 one at a time, so a uint8 tensor does not grow 8-fold)."""
    array = np.asarray(x)
    if array.ndim == 0 or array.size == 0:
        raise InvalidArgument("a baseline needs a tensor with at least one row and one value")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise InvalidArgument(f"drift is computed for real numbers, not dtype {array.dtype}")
    width = int(np.prod(array.shape[1:], dtype=np.int64)) if array.ndim > 1 else 1
    if features is not None and width != features:
        raise InvalidArgument(
            f"the tensor has {width} features per row (shape {list(array.shape)}); its "
            f"baseline has {features}")
    return array.reshape(array.shape[0], width)


def build_baseline(x: np.ndarray, *, tensor: str, feature_names: list[str] | None = None,
                   bins: int = DEFAULT_BINS) -> Baseline:
    """The baseline of training inputs ``x`` for the input tensor named ``tensor``.

    Args:
        x: numeric array, first dimension the rows (at least :data:`MIN_ROWS`); any dtype
            numpy reads as real numbers. Non-finite values are left out per feature.
        tensor: the model's input tensor name.
        feature_names: one per feature (default ``"0"``, ``"1"``, ...).
        bins: quantile bins per feature, 2 to 100. Ties merge bins, so a feature with few
            distinct values gets fewer.

    Raises:
        InvalidArgument: too few rows, too many features, a feature without a finite value,
            wrong ``feature_names`` length, or ``bins`` out of range.
    """
    if not 2 <= bins <= 100:
        raise InvalidArgument(f"bins must be 2 to 100, not {bins}")
    rows = _rows(x)
    if rows.shape[0] < MIN_ROWS:
        raise InvalidArgument(f"a baseline needs at least {MIN_ROWS} rows; got {rows.shape[0]}")
    if rows.shape[1] > MAX_FEATURES:
        raise InvalidArgument(
            f"a baseline describes at most {MAX_FEATURES} features; the tensor has "
            f"{rows.shape[1]} per row")
    names = feature_names or [str(i) for i in range(rows.shape[1])]
    if len(names) != rows.shape[1]:
        raise InvalidArgument(
            f"{len(names)} feature names given for {rows.shape[1]} features")
    features = []
    for column, name in zip(rows.T, names, strict=True):
        values = column.astype(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise InvalidArgument(f"feature {name!r} has no finite value")
        edges = np.unique(np.quantile(finite, np.arange(1, bins) / bins))
        counts = np.bincount(np.searchsorted(edges, finite, side="right"),
                             minlength=len(edges) + 1)
        features.append(FeatureBaseline(tuple(float(e) for e in edges),
                                        tuple(float(c) for c in counts / finite.size)))
    return Baseline(tensor, tuple(names), tuple(features), int(rows.shape[0]))


def bin_counts(baseline: Baseline, x: np.ndarray) -> list[list[int]]:
    """Count the rows of ``x`` into the baseline's bins.

    Args:
        x: numeric array, first dimension the rows, the rest as many features as the baseline
            has (any dtype numpy reads as real numbers). Non-finite values are not counted.

    Returns:
        One list of bin counts per feature (JSON-ready; sum them over captures, then
        :func:`psi`).

    Raises:
        InvalidArgument: the features per row do not match the baseline, or ``x`` is not real.
    """
    rows = _rows(x, len(baseline.features))
    counts = []
    for column, feature in zip(rows.T, baseline.features, strict=True):
        values = column.astype(np.float64)
        finite = values[np.isfinite(values)]
        index = np.searchsorted(np.asarray(feature.edges), finite, side="right")
        counts.append(np.bincount(index, minlength=len(feature.shares)).tolist())
    return counts


def psi(feature: FeatureBaseline, counts: list[int] | np.ndarray) -> float | None:
    """The population stability index of captured ``counts`` against ``feature``.

    Returns:
        PSI (dimensionless, >= 0; the module docstring gives the formula), or None when fewer
        than :data:`MIN_ROWS` values were counted.

    Raises:
        InvalidArgument: ``counts`` has not one entry per bin of ``feature``.
    """
    actual = np.asarray(counts, dtype=np.float64)
    if actual.shape != (len(feature.shares),):
        raise InvalidArgument(
            f"{actual.size} bin counts given for a feature of {len(feature.shares)} bins")
    total = actual.sum()
    if total < MIN_ROWS:
        return None
    a = np.maximum(actual / total, SHARE_FLOOR)
    e = np.maximum(np.asarray(feature.shares), SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))
