"""focalkit.gbdt: gradients and Hessians against two oracles, stability, helpers and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gbdt_oracles import decimal_binary, decimal_softmax, torch_binary, torch_softmax
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

import focalkit
from focalkit.gbdt import (
    binary_focal_grad_hess,
    binary_focal_value,
    predict_proba,
    prior_margin,
    softmax_focal_grad_hess,
    softmax_focal_value,
)

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]
RTOL, ATOL = 1e-8, 1e-12  # against the float64 autograd oracle
MARGINS = np.linspace(-50.0, 50.0, 1001)
PER_CLASS = [0.1, 0.2, 0.3, 0.4]


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> None:
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def softmax_rows(rows: int = 400, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Margins from -50 to 50: a quarter near 0, the rest spread wide; labels of every class."""
    rng = np.random.default_rng(seed)
    margins = rng.uniform(-50.0, 50.0, size=(rows, classes))
    margins[: rows // 4] *= 0.05
    return margins, rng.integers(0, classes, size=rows)


# ------------------------------------------------------------------------------ binary


@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("label", [0, 1])
def test_binary_matches_autograd(label: int, gamma: float, alpha: float | None) -> None:
    labels = np.full(MARGINS.shape, label)
    grad, hess = binary_focal_grad_hess(MARGINS, labels, gamma=gamma, alpha=alpha, hessian="exact")
    grad_ref, hess_ref = torch_binary(MARGINS, labels.astype(float), gamma, alpha)
    assert_close(grad, grad_ref, RTOL, ATOL)
    assert_close(hess, np.maximum(hess_ref, 1e-6), RTOL, ATOL)  # the floored contract
    _, exact = binary_focal_grad_hess(
        MARGINS, labels, gamma=gamma, alpha=alpha, min_hessian=-math.inf, hessian="exact"
    )
    assert_close(exact, hess_ref, RTOL, ATOL)
    assert np.any(hess_ref < 1e-6)
    assert np.any(hess_ref > 1e-3)
    # The default: at least cross-entropy's curvature alpha_t p (1 - p), the gamma = 0 Hessian.
    bounded_grad, bounded = binary_focal_grad_hess(MARGINS, labels, gamma=gamma, alpha=alpha)
    _, cross_entropy = torch_binary(MARGINS, labels.astype(float), 0.0, alpha)
    np.testing.assert_array_equal(bounded_grad, grad)
    assert_close(bounded, np.maximum(np.maximum(hess_ref, cross_entropy), 1e-6), RTOL, ATOL)
    if gamma == 0:
        np.testing.assert_array_equal(bounded, hess)
    else:  # both bounds are reached somewhere
        assert np.any(cross_entropy > 10 * np.maximum(hess_ref, 1e-6))
        assert np.any(hess_ref > 1.1 * cross_entropy)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_binary_tails_match_exact_oracle(gamma: float) -> None:
    """Where values are tiny, relative precision against 150-digit arithmetic (no atol)."""
    margins = np.array([-50.0, -35.0, -20.0, -15.0, -2.5, 0.3, 15.0, 20.0, 35.0, 50.0])
    for label in (0, 1):
        labels = np.full(margins.shape, label)
        grad, hess = binary_focal_grad_hess(
            margins, labels, gamma=gamma, alpha=0.25, min_hessian=-math.inf, hessian="exact"
        )
        reference = np.array([decimal_binary(m, label, gamma, 0.25) for m in margins])
        assert_close(grad, reference[:, 0], 1e-12, 0.0)
        assert_close(hess, reference[:, 1], 1e-12, 0.0)
        _, bounded = binary_focal_grad_hess(
            margins, labels, gamma=gamma, alpha=0.25, min_hessian=-math.inf
        )
        cross_entropy = np.array([decimal_binary(m, label, 0.0, 0.25)[1] for m in margins])
        assert_close(bounded, np.maximum(reference[:, 1], cross_entropy), 1e-12, 0.0)


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 0.9, 2.0])
def test_binary_finite_at_extreme_margins(gamma: float) -> None:
    margins = np.array([-1e4, -1e3, -745.0, -40.0, 0.0, 40.0, 745.0, 1e3, 1e4])
    for label in (0, 1):
        labels = np.full(margins.shape, label)
        grad, hess = binary_focal_grad_hess(margins, labels, gamma=gamma, min_hessian=-math.inf)
        loss = binary_focal_value(margins, labels, gamma=gamma)
        assert np.isfinite(grad).all()
        assert np.isfinite(hess).all()
        assert np.isfinite(loss).all()
        wrong = 1e4 if label == 0 else -1e4  # confidently wrong: |g| -> alpha_t, the loss ~ 1e4
        assert abs(grad[margins == wrong][0]) == pytest.approx(0.75 if label == 0 else 0.25)


def test_binary_weight_and_floor() -> None:
    margins, labels = np.array([-3.0, 0.0, 2.0, 8.0]), np.array([1, 0, 1, 0])
    weight = np.array([2.0, 0.5, 1.0, 3.0])
    grad, hess = binary_focal_grad_hess(
        margins, labels, weight=weight, min_hessian=1e-3, hessian="exact"
    )
    grad1, exact = binary_focal_grad_hess(margins, labels, min_hessian=-math.inf, hessian="exact")
    np.testing.assert_array_equal(grad, weight * grad1)
    np.testing.assert_array_equal(hess, weight * np.maximum(exact, 1e-3))
    assert exact[0] < 0  # a confident mistake: the exact Hessian is negative
    _, bounded = binary_focal_grad_hess(margins, labels, weight=weight, min_hessian=1e-3)
    _, unfloored = binary_focal_grad_hess(margins, labels, min_hessian=-math.inf)
    np.testing.assert_array_equal(bounded, weight * np.maximum(unfloored, 1e-3))
    assert unfloored[0] > 1e-3  # alpha_t p (1 - p) = 0.25 * 0.045: above the floor
    assert unfloored[3] < 1e-3  # p (1 - p) = 3.4e-4 at margin 8: the floor is below it


def test_binary_value_matches_torch_loss() -> None:
    labels = (np.arange(MARGINS.size) % 2).astype(float)
    for gamma in GAMMAS:
        for alpha in (None, 0.25):
            expected = focalkit.sigmoid_focal_loss(
                torch.tensor(MARGINS),
                torch.tensor(labels),
                reduction="none",
                gamma=gamma,
                alpha=alpha,
            ).numpy()
            assert_close(
                binary_focal_value(MARGINS, labels, gamma=gamma, alpha=alpha),
                expected,
                1e-12,
                1e-12,
            )


def test_inputs_are_not_written_to() -> None:
    margins, labels = np.linspace(-5, 5, 11), (np.arange(11) % 2).astype(float)
    margins_2d, classes = np.linspace(-5, 5, 33).reshape(11, 3), np.arange(11) % 3
    copies = [a.copy() for a in (margins, labels, margins_2d, classes)]
    binary_focal_grad_hess(margins, labels, weight=labels + 1)
    binary_focal_value(margins, labels)
    softmax_focal_grad_hess(margins_2d, classes, alpha=[1.0, 2.0, 3.0])
    softmax_focal_value(margins_2d, classes)
    for before, after in zip(copies, (margins, labels, margins_2d, classes), strict=True):
        np.testing.assert_array_equal(before, after)


def test_many_blocks_match_one() -> None:
    """Rows are computed in blocks; a long input equals its pieces computed alone."""
    rng = np.random.default_rng(1)
    margins, labels = rng.normal(0, 5, 100_003), rng.integers(0, 2, 100_003)
    grad, hess = binary_focal_grad_hess(margins, labels, gamma=0.5)
    head = binary_focal_grad_hess(margins[:7], labels[:7], gamma=0.5)
    tail = binary_focal_grad_hess(margins[-5:], labels[-5:], gamma=0.5)
    np.testing.assert_array_equal(grad[:7], head[0])
    np.testing.assert_array_equal(hess[-5:], tail[1])
    z, t = rng.normal(0, 5, (70_001, 3)), rng.integers(0, 3, 70_001)
    grad, hess = softmax_focal_grad_hess(z, t)
    np.testing.assert_array_equal(hess[-3:], softmax_focal_grad_hess(z[-3:], t[-3:])[1])


# ------------------------------------------------------------------------------ multi-class


@pytest.mark.parametrize("alpha", [None, 0.25, PER_CLASS], ids=["none", "scalar", "per-class"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_matches_autograd(gamma: float, alpha: object) -> None:
    margins, labels = softmax_rows()
    grad, hess = softmax_focal_grad_hess(margins, labels, gamma=gamma, alpha=alpha, hessian="exact")
    grad_ref, hess_ref = torch_softmax(margins, labels, gamma, alpha)
    assert_close(grad, grad_ref, RTOL, ATOL)
    assert_close(hess, np.maximum(hess_ref, 1e-6), RTOL, ATOL)
    _, exact = softmax_focal_grad_hess(
        margins, labels, gamma=gamma, alpha=alpha, min_hessian=-math.inf, hessian="exact"
    )
    assert_close(exact, hess_ref, RTOL, ATOL)
    # The default: at least cross-entropy's diagonal alpha_t p_j (1 - p_j), the gamma = 0 one.
    bounded_grad, bounded = softmax_focal_grad_hess(margins, labels, gamma=gamma, alpha=alpha)
    _, cross_entropy = torch_softmax(margins, labels, 0.0, alpha)
    np.testing.assert_array_equal(bounded_grad, grad)
    assert_close(bounded, np.maximum(np.maximum(hess_ref, cross_entropy), 1e-6), RTOL, ATOL)
    if gamma == 0:
        np.testing.assert_array_equal(bounded, hess)
    else:
        assert np.any(cross_entropy > 10 * np.maximum(hess_ref, 1e-6))
        assert np.any(hess_ref > 1.1 * cross_entropy)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_tails_match_exact_oracle(gamma: float) -> None:
    rows = [[40.0, -10.0, 0.0], [-20.0, 25.0, 24.5], [3.0, -45.0, 1.0], [50.0, -50.0, 49.9]]
    alpha = [0.2, 0.3, 0.5]
    for row in rows:
        for label in range(3):
            arguments = {"gamma": gamma, "alpha": alpha, "min_hessian": -math.inf}
            grad, hess = softmax_focal_grad_hess(
                np.array([row]), np.array([label]), **arguments, hessian="exact"
            )
            grad_ref, hess_ref = decimal_softmax(row, label, gamma, alpha)
            assert_close(grad[0], grad_ref, 1e-12, 0.0)
            assert_close(hess[0], hess_ref, 1e-12, 0.0)
            _, bounded = softmax_focal_grad_hess(np.array([row]), np.array([label]), **arguments)
            _, cross_entropy = decimal_softmax(row, label, 0.0, alpha)
            assert_close(bounded[0], np.maximum(hess_ref, cross_entropy), 1e-12, 0.0)


@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.5, 2.0])
def test_softmax_finite_at_extreme_margins(gamma: float) -> None:
    margins = np.array(
        [[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, -1e4, -1e4], [1e4, 1e4 - 1, -1e4]]
    )
    for label in range(3):
        labels = np.full(4, label)
        grad, hess = softmax_focal_grad_hess(margins, labels, gamma=gamma, min_hessian=-math.inf)
        loss = softmax_focal_value(margins, labels, gamma=gamma)
        assert np.isfinite(grad).all()
        assert np.isfinite(hess).all()
        assert np.isfinite(loss).all()
        np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)  # softmax: shift-invariant


def test_softmax_shift_invariance_and_weight() -> None:
    margins, labels = softmax_rows(50, 3, seed=2)
    weight = np.linspace(0.5, 2.0, 50)
    grad, hess = softmax_focal_grad_hess(margins, labels, weight=weight)
    shifted = softmax_focal_grad_hess(margins + 1e3, labels, weight=weight)
    assert_close(shifted[0], grad, 1e-9, 1e-12)
    assert_close(shifted[1], hess, 1e-9, 1e-12)
    grad1, hess1 = softmax_focal_grad_hess(margins, labels)
    np.testing.assert_array_equal(grad, weight[:, None] * grad1)
    np.testing.assert_array_equal(hess, weight[:, None] * hess1)


def test_softmax_value_matches_torch_loss_and_class_weights_plug_in() -> None:
    margins, labels = softmax_rows(200, 4, seed=3)
    alpha = focalkit.class_weights(focalkit.class_counts(labels, 4))
    for gamma in GAMMAS:
        expected = focalkit.softmax_focal_loss(
            torch.tensor(margins),
            torch.tensor(labels),
            reduction="none",
            gamma=gamma,
            alpha=torch.tensor(alpha),
        ).numpy()
        actual = softmax_focal_value(margins, labels, gamma=gamma, alpha=alpha)
        assert_close(actual, expected, 1e-12, 1e-12)


# ------------------------------------------------------------------------------ helpers


def test_prior_margin() -> None:
    assert prior_margin([0, 1, 0, 0]) == pytest.approx(math.log(1 / 3))
    assert prior_margin(np.array([0.0, 1.0, 1.0])) == pytest.approx(math.log(2))
    prior = prior_margin([0, 1, 1, 2, 2, 2], num_class=3)
    np.testing.assert_allclose(predict_proba(prior[None, :])[0], [1 / 6, 2 / 6, 3 / 6])
    with pytest.raises(ValueError, match=r"prior_margin\(\): class 2 has no samples"):
        prior_margin([0, 1, 1], num_class=3)
    with pytest.raises(ValueError, match=r"prior_margin\(\): labels have no positive samples"):
        prior_margin([0, 0])
    with pytest.raises(ValueError, match=r"prior_margin\(\): label values must be 0 or 1, got 2"):
        prior_margin([0, 2])


def test_predict_proba() -> None:
    margins = np.array([-800.0, -3.0, 0.0, 3.0, 800.0])
    np.testing.assert_allclose(predict_proba(margins), expit(margins), rtol=1e-15, atol=0)
    rows = np.array([[1000.0, 1000.0, -1000.0], [0.0, 1.0, 2.0]])
    proba = predict_proba(rows)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[0], [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match=r"predict_proba\(\): margins must be 1-D"):
        predict_proba(np.zeros((2, 2, 2)))


# ------------------------------------------------------------------------------ errors

BAD_BINARY = [
    ({"label": [0, 2, 1]}, r"binary_focal_grad_hess\(\): label values must be 0 or 1, got 2"),
    ({"label": [0, 0.5, 1]}, r"label values must be 0 or 1, got 0.5"),
    ({"label": [0, 1]}, r"expected label of shape \(3,\) for margin with 3 rows, got \(2,\)"),
    ({"gamma": -1}, r"binary_focal_grad_hess\(\): gamma must be >= 0, got -1"),
    ({"alpha": 1.5}, r"binary_focal_grad_hess\(\): alpha must be in \[0, 1\], got 1.5"),
    ({"weight": [1.0, 2.0]}, r"expected weight of shape \(3,\), one per row, got \(2,\)"),
    ({"min_hessian": math.nan}, r"min_hessian must be a real number, got nan"),
    (
        {"hessian": "Exact"},
        r"binary_focal_grad_hess\(\): hessian must be one of 'bounded', 'exact', got 'Exact'",
    ),
    ({"hessian": None}, r"hessian must be one of 'bounded', 'exact', got None"),
    ({"margin": np.zeros((3, 2))}, r"margin must be 1-D of shape \(N,\), got shape \(3, 2\)"),
]


@pytest.mark.parametrize(("change", "message"), BAD_BINARY)
def test_binary_bad_inputs(change: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"margin": np.zeros(3), "label": [0, 1, 1], **change}
    margin, label = arguments.pop("margin"), arguments.pop("label")
    with pytest.raises(ValueError, match=message):
        binary_focal_grad_hess(margin, label, **arguments)  # type: ignore[arg-type]


BAD_SOFTMAX = [
    (
        {"label": [0, 3]},
        r"softmax_focal_grad_hess\(\): label values must be integers in \[0, 3\), got 3",
    ),
    ({"label": [-1, 0]}, r"label values must be integers in \[0, 3\), got -1"),
    ({"label": [0.0, 1.5]}, r"label values must be integers in \[0, 3\), got 1.5"),
    ({"label": [0, 1, 2]}, r"expected label of shape \(2,\) for margins with 2 rows, got \(3,\)"),
    ({"gamma": -0.5}, r"softmax_focal_grad_hess\(\): gamma must be >= 0, got -0.5"),
    ({"alpha": [1.0, 2.0]}, r"alpha must have one value per class \(3 classes\), got 2 values"),
    (
        {"alpha": [1.0, -2.0, 1.0]},
        r"softmax_focal_grad_hess\(\): alpha values must be >= 0; found a negative value",
    ),
    ({"alpha": -1.0}, r"softmax_focal_grad_hess\(\): alpha must be >= 0, got -1.0"),
    ({"hessian": "newton"}, r"softmax_focal_grad_hess\(\): hessian must be one of 'bounded'"),
    ({"margins": np.zeros(2)}, r"margins must be 2-D of shape \(N, K\) with K >= 2 classes"),
]


@pytest.mark.parametrize(("change", "message"), BAD_SOFTMAX)
def test_softmax_bad_inputs(change: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"margins": np.zeros((2, 3)), "label": [0, 2], **change}
    margins, label = arguments.pop("margins"), arguments.pop("label")
    with pytest.raises(ValueError, match=message):
        softmax_focal_grad_hess(margins, label, **arguments)  # type: ignore[arg-type]


# Checks of arguments come from focalkit._core.validation: a negative alpha reads the same in
# every front-end, and a value that is not a number (None, a bool, a string) is a TypeError.
NOT_NUMBERS = [
    (
        {"alpha": [1.0, None, 2.0]},
        r"softmax_focal_grad_hess\(\): alpha must be a tensor or a sequence of numbers, "
        r"got \[1.0, None, 2.0\]",
    ),
    ({"alpha": [True, 0.5, 2.0]}, r"alpha must be a tensor or a sequence of numbers, got \[True"),
    ({"alpha": np.array([True, False, True])}, r"alpha must be a tensor or a sequence of numbers"),
    ({"alpha": False}, r"alpha must be a tensor or a sequence of numbers, got False"),
    ({"alpha": "abc"}, r"alpha must be a tensor or a sequence of numbers, got 'abc'"),
    ({"min_hessian": True}, r"min_hessian must be a real number, got True"),
]


@pytest.mark.parametrize(("change", "message"), NOT_NUMBERS)
def test_softmax_arguments_that_are_not_numbers(change: dict[str, object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        softmax_focal_grad_hess(np.zeros((2, 3)), [0, 2], **change)  # type: ignore[arg-type]


def test_binary_alpha_and_num_class_types() -> None:
    with pytest.raises(TypeError, match=r"binary_focal_value\(\): alpha must be a real number in"):
        binary_focal_value(np.zeros(2), [0, 1], alpha=True)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"prior_margin\(\): num_class must be an int >= 2, got 2.5"
    ):
        prior_margin([0, 1], num_class=2.5)  # type: ignore[arg-type]


alpha_entries = st.one_of(
    st.floats(0.0, 10.0), st.integers(0, 10), st.booleans(), st.none(), st.floats(-10.0, -1e-3)
)


@settings(max_examples=60, deadline=None)
@given(st.lists(alpha_entries, min_size=3, max_size=3), st.sampled_from([list, tuple]))
def test_per_class_alpha_holds_numbers_only(alpha: list[object], container: type) -> None:
    margins, label = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0]]), np.array([0, 2])
    given_alpha = container(alpha)
    if any(value is None or isinstance(value, bool) for value in alpha):
        with pytest.raises(TypeError, match=r"alpha must be a tensor or a sequence of numbers"):
            softmax_focal_value(margins, label, alpha=given_alpha)
    elif any(value < 0 for value in alpha):  # type: ignore[operator]
        with pytest.raises(ValueError, match=r"alpha values must be >= 0; found a negative value"):
            softmax_focal_value(margins, label, alpha=given_alpha)
    else:  # alpha_t times the unweighted loss of the torch definition
        expected = (
            focalkit.softmax_focal_loss(
                torch.tensor(margins), torch.tensor(label), reduction="none", gamma=2.0
            ).numpy()
            * np.array(alpha, dtype=np.float64)[label]
        )
        np.testing.assert_allclose(softmax_focal_value(margins, label, alpha=given_alpha), expected)
