"""class_counts and class_weights against values worked out by hand; import without torch.

Hand values: counts [100, 200, 50, 10] (total 360) give inverse weights 3.6, 1.8, 7.2, 36, i.e.
(2, 1, 4, 20) / 27 once they sum to 1; counts [1, 4, 16] (total 21) give inverse_sqrt weights
sqrt(21) * (1, 1/2, 1/4), i.e. (4, 2, 1) / 7; effective_number with beta = 0.9 and counts [1, 2]
gives (1 - 0.9) / (1 - 0.9**n) = 1 and 0.1 / 0.19 = 10/19 (Cui et al. 2019, arXiv:1901.05555).
"""

from __future__ import annotations

import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import focalkit

RTOL = 1e-14

# ------------------------------------------------------------------ class_counts


def test_class_counts_counts_each_class() -> None:
    counts = focalkit.class_counts([0, 2, 2, 3, 0, 2], num_classes=4)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [2, 0, 3, 1])


def test_class_counts_has_length_c_including_trailing_zeros() -> None:
    counts = focalkit.class_counts(np.array([[1, 1], [0, 1]]), num_classes=5)  # any shape
    assert counts.dtype == np.int64
    assert counts.shape == (5,)
    np.testing.assert_array_equal(counts, [1, 3, 0, 0, 0])


def test_class_counts_of_no_labels_is_all_zeros() -> None:
    counts = focalkit.class_counts(np.array([], dtype=np.int64), num_classes=3)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [0, 0, 0])


@pytest.mark.parametrize("labels", [[0, 1, 4], [0, -1, 2], [7]], ids=["c", "negative", "far"])
def test_class_counts_rejects_a_label_outside_the_classes(labels: list[int]) -> None:
    with pytest.raises(ValueError, match=r"class_counts\(\).*labels.*\[0, 4\)"):
        focalkit.class_counts(labels, num_classes=4)


# ------------------------------------------------------------------ class_weights: methods

COUNTS = [100, 200, 50, 10]


@pytest.mark.parametrize(
    ("normalize", "expected"),
    [
        ("sum", np.array([2.0, 1.0, 4.0, 20.0]) / 27.0),
        ("mean", np.array([8.0, 4.0, 16.0, 80.0]) / 27.0),
        (None, np.array([3.6, 1.8, 7.2, 36.0])),
    ],
)
def test_inverse(normalize: str | None, expected: np.ndarray) -> None:
    weights = focalkit.class_weights(COUNTS, method="inverse", normalize=normalize)
    assert weights.dtype == np.float64
    np.testing.assert_allclose(weights, expected, rtol=RTOL)


def test_inverse_with_mean_1_over_the_classes_is_the_default() -> None:
    np.testing.assert_allclose(
        focalkit.class_weights(COUNTS), np.array([8.0, 4.0, 16.0, 80.0]) / 27.0, rtol=RTOL
    )


def test_default_alpha_keeps_a_balanced_batchs_loss() -> None:
    # alpha never enters the 'mean' divisor, so the normalisation sets the loss's scale. With one
    # sample of each class and the same per-sample loss, the default weights give the unweighted
    # loss; weights summing to 1 give it C times smaller.
    per_sample_loss = 0.7
    unweighted = per_sample_loss
    default = (focalkit.class_weights(COUNTS) * per_sample_loss).mean()
    summed = (focalkit.class_weights(COUNTS, normalize="sum") * per_sample_loss).mean()
    np.testing.assert_allclose(default, unweighted, rtol=RTOL)
    np.testing.assert_allclose(summed, unweighted / len(COUNTS), rtol=RTOL)


@pytest.mark.parametrize(
    ("normalize", "expected"),
    [
        ("sum", np.array([4.0, 2.0, 1.0]) / 7.0),
        ("mean", np.array([12.0, 6.0, 3.0]) / 7.0),
        (None, math.sqrt(21.0) * np.array([1.0, 0.5, 0.25])),
    ],
)
def test_inverse_sqrt(normalize: str | None, expected: np.ndarray) -> None:
    weights = focalkit.class_weights([1, 4, 16], method="inverse_sqrt", normalize=normalize)
    assert weights.dtype == np.float64
    np.testing.assert_allclose(weights, expected, rtol=RTOL)


@pytest.mark.parametrize(
    ("normalize", "expected"),
    [
        ("sum", np.array([19.0, 10.0]) / 29.0),
        ("mean", np.array([38.0, 20.0]) / 29.0),
        (None, np.array([1.0, 10.0 / 19.0])),
    ],
)
def test_effective_number(normalize: str | None, expected: np.ndarray) -> None:
    weights = focalkit.class_weights(
        [1, 2], method="effective_number", normalize=normalize, beta=0.9
    )
    assert weights.dtype == np.float64
    np.testing.assert_allclose(weights, expected, rtol=RTOL)


def test_effective_number_default_beta_is_0_999() -> None:
    beta = 0.999
    raw = np.array([(1.0 - beta) / (1.0 - beta**n) for n in COUNTS])
    weights = focalkit.class_weights(COUNTS, method="effective_number", normalize=None)
    np.testing.assert_allclose(weights, raw, rtol=1e-12)
    normalized = focalkit.class_weights(COUNTS, method="effective_number")
    np.testing.assert_allclose(normalized, raw / raw.mean(), rtol=1e-12)


def test_effective_number_limits() -> None:
    # beta = 0: every class has effective number 1, so no re-weighting. beta -> 1: the effective
    # number tends to n, so the weights tend to inverse frequency (Cui et al., section 3).
    counts = [1, 10, 100]
    flat = focalkit.class_weights(counts, method="effective_number", normalize=None, beta=0.0)
    np.testing.assert_allclose(flat, [1.0, 1.0, 1.0], rtol=RTOL)
    near_one = focalkit.class_weights(counts, method="effective_number", beta=1.0 - 1e-9)
    inverse = focalkit.class_weights(counts, method="inverse")
    np.testing.assert_allclose(near_one, inverse, rtol=1e-6)


@pytest.mark.parametrize("method", ["inverse", "inverse_sqrt", "effective_number"])
def test_normalizations_sum_to_1_and_to_c(method: str) -> None:
    summed = focalkit.class_weights(COUNTS, method=method, normalize="sum")
    mean = focalkit.class_weights(COUNTS, method=method, normalize="mean")
    raw = focalkit.class_weights(COUNTS, method=method, normalize=None)
    np.testing.assert_allclose(summed.sum(), 1.0, rtol=RTOL)
    np.testing.assert_allclose(mean.sum(), len(COUNTS), rtol=RTOL)
    np.testing.assert_allclose(summed, raw / raw.sum(), rtol=RTOL)
    np.testing.assert_allclose(mean, raw / raw.mean(), rtol=RTOL)


# ------------------------------------------------------------------ "balanced": scikit-learn's


def _scikit_learn_balanced(counts: list[int]) -> np.ndarray:
    """compute_class_weight("balanced") on labels that have these counts."""
    class_weight = pytest.importorskip("sklearn.utils.class_weight")
    labels = np.repeat(np.arange(len(counts)), counts)
    return class_weight.compute_class_weight("balanced", classes=np.arange(len(counts)), y=labels)


def test_balanced_inverse_is_scikit_learns_balanced() -> None:
    weights = focalkit.class_weights(COUNTS, method="inverse", normalize="balanced")
    np.testing.assert_allclose(weights, [0.9, 0.45, 1.8, 9.0], rtol=RTOL)  # 360 / (4 * counts)
    np.testing.assert_allclose(weights, _scikit_learn_balanced(COUNTS), rtol=RTOL)


@given(st.lists(st.integers(min_value=1, max_value=2000), min_size=1, max_size=12))
def test_balanced_inverse_is_scikit_learns_balanced_for_any_counts(counts: list[int]) -> None:
    weights = focalkit.class_weights(counts, method="inverse", normalize="balanced")
    np.testing.assert_allclose(weights, _scikit_learn_balanced(counts), rtol=1e-13)


@pytest.mark.parametrize("method", ["inverse", "inverse_sqrt", "effective_number"])
def test_balanced_weights_average_1_over_the_samples(method: str) -> None:
    weights = focalkit.class_weights(COUNTS, method=method, normalize="balanced")
    raw = focalkit.class_weights(COUNTS, method=method, normalize=None)
    n = np.array(COUNTS, dtype=np.float64)
    np.testing.assert_allclose((n * weights).sum(), n.sum(), rtol=RTOL)
    np.testing.assert_allclose(weights, raw * n.sum() / (n * raw).sum(), rtol=RTOL)


def test_balanced_loss_keeps_the_unweighted_scale_on_the_training_labels() -> None:
    # An alpha-weighted sum over the training labels, each with the same loss, equals the
    # unweighted one; with "mean" (weights averaging 1 over the classes) it does not.
    labels = np.repeat(np.arange(4), COUNTS)
    balanced = focalkit.class_weights(COUNTS, normalize="balanced")
    np.testing.assert_allclose(balanced[labels].sum(), labels.size, rtol=RTOL)
    mean = focalkit.class_weights(COUNTS, normalize="mean")
    assert mean[labels].sum() < 0.5 * labels.size


def test_balanced_with_an_empty_class_ignored() -> None:
    # The empty class has no samples, so the other two share n = 5: inverse weights 5/3 and 5/2,
    # scaled by 5 / (3 * 5/3 + 2 * 5/2) = 1/2.
    weights = focalkit.class_weights([3, 0, 2], normalize="balanced", zero="ignore")
    np.testing.assert_allclose(weights, [5.0 / 6.0, 0.0, 1.25], rtol=RTOL, atol=0)


def test_counts_are_not_modified() -> None:
    counts = np.array([3.0, 1.0, 2.0])
    focalkit.class_weights(counts, method="effective_number", normalize="mean")
    np.testing.assert_array_equal(counts, [3.0, 1.0, 2.0])


# ------------------------------------------------------------------ zero counts and bad input


@pytest.mark.parametrize("method", ["inverse", "inverse_sqrt", "effective_number"])
def test_zero_count_raises_naming_the_class(method: str) -> None:
    with pytest.raises(ValueError, match="class 1"):
        focalkit.class_weights([3, 0, 2], method=method)


@pytest.mark.parametrize(
    ("normalize", "expected"),
    [
        ("sum", [0.4, 0.0, 0.6]),
        ("mean", [1.2, 0.0, 1.8]),  # sums to C = 3 over all three classes, the empty one too
        (None, [5.0 / 3.0, 0.0, 2.5]),
    ],
)
def test_zero_ignore_gives_weight_0(normalize: str | None, expected: list[float]) -> None:
    weights = focalkit.class_weights([3, 0, 2], normalize=normalize, zero="ignore")
    np.testing.assert_allclose(weights, expected, rtol=RTOL, atol=0)
    assert weights[1] == 0.0


@pytest.mark.parametrize("method", ["inverse_sqrt", "effective_number"])
def test_zero_ignore_mean_sums_to_c_for_every_method(method: str) -> None:
    weights = focalkit.class_weights([3, 0, 2, 7], method=method, normalize="mean", zero="ignore")
    assert weights[1] == 0.0
    np.testing.assert_allclose(weights.sum(), 4.0, rtol=RTOL)


def test_unknown_method_raises() -> None:
    with pytest.raises(ValueError, match=r"method.*'inverse_square'"):
        focalkit.class_weights(COUNTS, method="inverse_square")  # type: ignore[arg-type]


def test_unknown_normalize_raises() -> None:
    with pytest.raises(ValueError, match=r"normalize.*'max'"):
        focalkit.class_weights(COUNTS, normalize="max")  # type: ignore[arg-type]


def test_negative_count_raises() -> None:
    with pytest.raises(ValueError, match=r"counts.*>= 0"):
        focalkit.class_weights([3, -1, 2])


# ------------------------------------------------------------------ properties


@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=30))
def test_inverse_sum_weights_are_proportional_to_1_over_count(counts: list[int]) -> None:
    weights = focalkit.class_weights(counts, method="inverse", normalize="sum")
    n = np.array(counts, dtype=np.float64)
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(weights, (1.0 / n) / (1.0 / n).sum(), rtol=1e-12)
    # Proportional: weight times count is the same for every class.
    np.testing.assert_allclose(weights * n, np.full(len(counts), weights[0] * n[0]), rtol=1e-12)


# ------------------------------------------------------------------ import without torch

_NO_TORCH = """
import sys
sys.modules["torch"] = None  # `import torch` now raises ModuleNotFoundError (name 'torch')
import focalkit
print(focalkit.class_weights([1, 3], normalize=None).tolist())
print(focalkit.class_counts([0, 1, 1], 3).tolist())
try:
    focalkit.softmax_focal_loss
except ImportError as error:
    print("ImportError:", error)
else:
    print("no error")
"""


def test_import_without_torch() -> None:
    source_root = pathlib.Path(focalkit.__file__).resolve().parents[1]
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(source_root), *filter(None, [environment.get("PYTHONPATH")])]
    )
    result = subprocess.run(
        [sys.executable, "-c", _NO_TORCH],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[4.0, 1.3333333333333333]"
    assert lines[1] == "[1, 2, 0]"
    assert lines[2].startswith("ImportError:")
    assert 'pip install "focalkit[torch]"' in lines[2]
