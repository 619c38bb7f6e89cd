"""Relative precision over the whole logit range, values and gradients, against float64.

Confident predictions have losses and gradients of 1e-9, 1e-27 and less; an absolute tolerance
would pass a kernel that returns 0 for all of them. Every bound here is relative to the float64
value (from the formulas of ``tests/oracles.py``, evaluated on the same float32 numbers), with an
absolute floor only below float32's smallest normal numbers, where the true value is not
representable anyway.

- ``sigmoid_focal_loss``'s kernel holds a few ulps everywhere. Its autograd definition (used by
  ``torch.func``, double backward and ``torch.compile`` with differentiable settings) works in
  log space, as :math:`(1 - p_t)^\\gamma = e^{\\gamma \\log(1 - p_t)}`: the exponent carries an
  absolute error of an ulp of :math:`\\gamma \\log(1 - p_t)`, which the bound allows.
- Soft labels put a zero of the gradient inside the range (where ``p`` meets the label); there
  the bound is relative to the size of the terms that cancel, as for any formula.
- The softmax, NLL, binary and fused losses take ``log p`` from ``log_softmax`` or a given
  probability, as ``F.cross_entropy`` does, and are held to the accuracy that loss has itself.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import sigmoid_focal_reference, softmax_focal_error_scale, softmax_focal_reference

import focalkit
from focalkit.torch import _kernels

EPS = torch.finfo(torch.float32).eps
FLOOR = 1e-37  # below float32's smallest normal number (1.2e-38) results are subnormal
GAMMAS = [0.0, 0.5, 1.0, 2.0, 3.0]


def logit_range(count: int = 41) -> torch.Tensor:
    """float32 logits of both signs, magnitudes log-spaced over [1e-3, 80]."""
    magnitude = torch.logspace(-3, math.log10(80.0), count)
    return torch.cat([magnitude, -magnitude])


def assert_relative(actual: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor, what: str):
    """``|actual - expected| <= bound`` element by element, in float64."""
    got, want = actual.detach().double().flatten(), expected.detach().flatten()
    limit = bound.expand_as(expected).flatten()
    bad = ~((got - want).abs() <= limit)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.numel()} outside the bound; first at {i}: "
            f"got {got[i].item()!r}, float64 {want[i].item()!r}, allowed {limit[i].item():.3g}"
        )


def _float32(value):
    return value.float() if isinstance(value, torch.Tensor) else value


def sigmoid_case(x, y, gamma, options, path):
    """focalkit's value and gradient on float32 ``x``; the float64 formula's on the same numbers."""
    options32 = {key: _float32(value) for key, value in options.items()}
    leaf = x.clone().requires_grad_()
    with _kernels.use_kernels(path != "definition"):
        if path == "no grad":
            with torch.no_grad():
                value = focalkit.sigmoid_focal_loss(
                    leaf, y, reduction="none", gamma=_float32(gamma), **options32
                )
            grad = None
        else:
            value = focalkit.sigmoid_focal_loss(
                leaf, y, reduction="none", gamma=_float32(gamma), **options32
            )
            (grad,) = torch.autograd.grad(value.sum(), leaf)
    reference_leaf = x.double().requires_grad_()
    alpha = options.get("alpha")
    reference = sigmoid_focal_reference(
        reference_leaf,
        y.double(),
        gamma=gamma,
        alpha=alpha,
        weight=options.get("weight"),
        pos_weight=options.get("pos_weight"),
        reduction="none",
    )
    (reference_grad,) = torch.autograd.grad(reference.sum(), reference_leaf)
    return value, grad, reference.detach(), reference_grad


def rtol_of(path, gamma, x, y):
    """A few ulps; for the log-space definition, also an ulp of ``gamma log(1 - p_t)``."""
    if path != "definition":
        return 8 * EPS
    x64, y64 = x.double(), y.double()
    log_m = (y64 * torch.sigmoid(-x64) + (1 - y64) * torch.sigmoid(x64)).log()
    g = torch.as_tensor(gamma, dtype=torch.float64)
    return 8 * EPS * (1 + g * log_m.abs())


OPTIONS = {
    "plain": lambda x: {"alpha": None},
    "alpha weight pos_weight": lambda x: {
        "alpha": 0.25,
        "weight": torch.linspace(0.5, 2.0, x.numel(), dtype=torch.float64),
        "pos_weight": torch.tensor(3.0, dtype=torch.float64),
    },
    "alpha tensor": lambda x: {"alpha": torch.linspace(0.1, 0.9, x.numel(), dtype=torch.float64)},
    # alpha_t = 1 - alpha or alpha, tiny: (1 - alpha) + (2 alpha - 1) y would cancel
    "alpha near 0 and 1": lambda x: {
        "alpha": torch.tensor([1e-7, 1 - 2**-20] * (x.numel() // 2)).double()
    },
    "alpha near 1": lambda x: {"alpha": 1 - 1e-9},
}


@pytest.mark.parametrize("path", ["kernel", "definition", "no grad"])
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_hard_labels_keep_relative_precision(gamma, option, path):
    x = logit_range().repeat(2)
    y = torch.cat([torch.ones(x.numel() // 2), torch.zeros(x.numel() // 2)])
    options = OPTIONS[option](x)
    value, grad, expected, expected_grad = sigmoid_case(x, y, gamma, options, path)
    rtol = rtol_of(path, gamma, x, y)
    assert_relative(value, expected, rtol * expected.abs() + FLOOR, f"{path} value")
    if grad is not None:
        assert_relative(grad, expected_grad, rtol * expected_grad.abs() + FLOOR, f"{path} grad")


def test_sigmoid_tensor_gamma_keeps_relative_precision():
    x = logit_range().repeat(2)
    y = torch.cat([torch.ones(x.numel() // 2), torch.zeros(x.numel() // 2)])
    gamma = torch.linspace(0.0, 3.0, x.numel()).double()  # float32 values, as focalkit sees them
    value, grad, expected, expected_grad = sigmoid_case(x, y, gamma, {"alpha": 0.25}, "kernel")
    assert_relative(value, expected, 8 * EPS * expected.abs() + FLOOR, "value")
    assert_relative(grad, expected_grad, 8 * EPS * expected_grad.abs() + FLOOR, "grad")


def soft_gradient_scale(x, y, gamma, options):
    """The size of the terms whose sum is the gradient, in float64:
    ``|alpha_t w| m^(gamma-1) (m ((1 - y) p + pw y q) + gamma |m'| b)``, ``m = 1 - p_t``."""
    x64, y64 = x.double(), y.double()
    p, q = torch.sigmoid(x64), torch.sigmoid(-x64)
    pw = options.get("pos_weight", 1.0)
    w = options.get("weight", 1.0)
    alpha = options.get("alpha")
    alpha_t = 1.0 if alpha is None else alpha * y64 + (1 - alpha) * (1 - y64)
    m = y64 * q + (1 - y64) * p
    b = -(pw * y64 * F.logsigmoid(x64) + (1 - y64) * F.logsigmoid(-x64))
    spread = (p * q * (1 - 2 * y64)).abs()
    g = torch.as_tensor(gamma, dtype=torch.float64)
    return (alpha_t * w) * m ** (g - 1) * (m * ((1 - y64) * p + pw * y64 * q) + g * spread * b)


@pytest.mark.parametrize("path", ["kernel", "definition"])
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_soft_labels_keep_relative_precision(gamma, option, path):
    x = logit_range(25).repeat(4)
    y = torch.tensor([0.001, 0.3, 0.7, 0.999]).repeat_interleave(x.numel() // 4)
    options = OPTIONS[option](x)
    value, grad, expected, expected_grad = sigmoid_case(x, y, gamma, options, path)
    rtol = rtol_of(path, gamma, x, y)
    assert_relative(value, expected, rtol * expected.abs() + FLOOR, f"{path} value")
    scale = soft_gradient_scale(x, y, gamma, options)
    assert_relative(grad, expected_grad, rtol * scale + FLOOR, f"{path} grad")


def test_sigmoid_confident_examples_of_the_report():
    # gamma = 0: F.binary_cross_entropy_with_logits is exact here, and focalkit must agree.
    x, y = torch.tensor([20.0, 10.0]), torch.tensor([1.0, 1.0])
    got = focalkit.sigmoid_focal_loss(x, y, gamma=0, alpha=None, reduction="none")
    expected = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    torch.testing.assert_close(got, expected, rtol=4 * EPS, atol=0)
    # gamma = 2 at x = 20: (1 - p)^2 (-log p) = q^3 to first order, q = sigmoid(-20)
    leaf = torch.tensor([20.0], requires_grad=True)
    value = focalkit.sigmoid_focal_loss(leaf, torch.tensor([1.0]), alpha=None, reduction="sum")
    (grad,) = torch.autograd.grad(value, leaf)
    q = 1.0 / (1.0 + math.exp(20.0))
    torch.testing.assert_close(value, torch.tensor(q**3), rtol=1e-5, atol=0)
    # d/dx [q^2 (-log p)] = -2 p q^2 (-log p) - q^3
    expected_grad = -2 * (1 - q) * q**2 * math.log1p(math.exp(-20.0)) - q**3
    torch.testing.assert_close(grad, torch.tensor([expected_grad]), rtol=1e-5, atol=0)


def test_sigmoid_gamma0_agrees_with_torch_where_torch_is_exact_and_beats_it_elsewhere():
    x = logit_range().repeat(2)
    y = torch.cat([torch.ones(x.numel() // 2), torch.zeros(x.numel() // 2)])
    got = focalkit.sigmoid_focal_loss(x, y, gamma=0, alpha=None, reduction="none")
    torch_loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    expected = sigmoid_focal_reference(
        x.double(), y.double(), gamma=0, alpha=None, reduction="none"
    )
    torch_error = (torch_loss.double() - expected).abs() / expected
    error = (got.double() - expected).abs() / expected
    exact = torch_error <= 4 * EPS
    assert exact.any()
    assert not exact.all()  # (1 - y) x - log p cancels for y = 0, x << 0
    assert (error <= 4 * EPS).all()
    torch.testing.assert_close(got[exact], torch_loss[exact], rtol=8 * EPS, atol=0)


@settings(max_examples=40, deadline=None)
@given(
    exponents=st.lists(st.floats(-3.0, math.log10(80.0)), min_size=1, max_size=8),
    signs=st.lists(st.booleans(), min_size=8, max_size=8),
    labels=st.lists(st.sampled_from([0.0, 1.0, 0.25, 0.9]), min_size=8, max_size=8),
    gamma=st.sampled_from([*GAMMAS, 1.5, 4.0]),
    alpha=st.sampled_from([None, 0.25, 0.8]),
    pos_weight=st.sampled_from([None, 0.5, 4.0]),
    path=st.sampled_from(["kernel", "definition"]),
)
def test_sigmoid_random_logits_keep_relative_precision(
    exponents, signs, labels, gamma, alpha, pos_weight, path
):
    n = len(exponents)
    x = torch.tensor([10.0**e * (1 if s else -1) for e, s in zip(exponents, signs, strict=False)])
    y = torch.tensor(labels[:n])
    options = {"alpha": alpha}
    if pos_weight is not None:
        options["pos_weight"] = torch.tensor(pos_weight, dtype=torch.float64)
    value, grad, expected, expected_grad = sigmoid_case(x, y, gamma, options, path)
    rtol = rtol_of(path, gamma, x, y)
    assert_relative(value, expected, rtol * expected.abs() + FLOOR, "value")
    scale = soft_gradient_scale(x, y, gamma, options)
    assert_relative(grad, expected_grad, rtol * scale + FLOOR, "grad")


# ------------------------------------------------------------- the losses on log p and p


def softmax_rows():
    """Rows ``[m, 0, -m]`` and ``[m, m, -m]`` over the range of ``m``: confident and torn."""
    magnitudes = logit_range(21)[:21].tolist()
    rows = [[m, 0.0, -m] for m in magnitudes] + [[m, m, -m] for m in magnitudes]
    return torch.tensor(rows)


@pytest.mark.parametrize("path", ["kernel", "definition", "fused"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_keeps_the_accuracy_of_cross_entropy(gamma, path):
    # log_softmax carries a few eps of absolute error in each log p (log p of a confident class
    # rounds to 0 in F.cross_entropy too, and p - 1 keeps only the digits of log p); the bound
    # carries 4 eps of it through the focal factor, and F.cross_entropy is held to the same
    # bound at gamma = 0.
    x = softmax_rows()
    for target in (torch.zeros(len(x), dtype=torch.long), torch.full((len(x),), 2)):
        leaf = x.clone().requires_grad_()
        with _kernels.use_kernels(path != "definition"):
            if path == "fused":
                eye = torch.eye(3, requires_grad=True)
                value = focalkit.linear_softmax_focal_loss(
                    leaf, eye, target, reduction="none", gamma=gamma, chunk_size=7
                )
            else:
                value = focalkit.softmax_focal_loss(leaf, target, reduction="none", gamma=gamma)
        (grad,) = torch.autograd.grad(value.sum(), leaf)
        reference_leaf = x.double().requires_grad_()
        expected = softmax_focal_reference(reference_leaf, target, gamma=gamma, reduction="none")
        (expected_grad,) = torch.autograd.grad(expected.sum(), reference_leaf)
        scale = softmax_focal_error_scale(x.double(), target, gamma=gamma, reduction="none")
        bound = 8 * EPS * expected.detach().abs() + 4 * EPS * scale + FLOOR
        assert_relative(value, expected, bound, f"{path} value")
        # The gradient moves by up to (1 + gamma)^2 (1 - p)^gamma per unit of error in log p.
        sensitivity = (1 + gamma) ** 2 * scale[:, None]
        grad_bound = 8 * EPS * expected_grad.abs() + 4 * EPS * sensitivity + FLOOR
        assert_relative(grad, expected_grad, grad_bound, f"{path} grad")
        if gamma == 0:
            leaf = x.clone().requires_grad_()
            ce = F.cross_entropy(leaf, target, reduction="none")
            (ce_grad,) = torch.autograd.grad(ce.sum(), leaf)
            assert_relative(ce, expected, bound, "cross_entropy value")
            assert_relative(ce_grad, expected_grad, grad_bound, "cross_entropy grad")


@pytest.mark.parametrize("gamma", GAMMAS)
def test_nll_and_binary_keep_relative_precision(gamma):
    # Given log-probabilities or probabilities, nothing is lost beyond the input's rounding.
    log_p = -torch.logspace(-7, math.log10(80.0), 40)
    rows = torch.stack([log_p, torch.log(-torch.expm1(log_p))], 1)  # (N, 2), both columns exact
    target = torch.zeros(len(rows), dtype=torch.long)
    leaf = rows.clone().requires_grad_()
    value = focalkit.nll_focal_loss(leaf, target, reduction="none", gamma=gamma)
    (grad,) = torch.autograd.grad(value.sum(), leaf)
    s = rows[:, 0].double()
    one_minus_p = -torch.expm1(s)
    expected = -(one_minus_p**gamma) * s
    expected_grad = one_minus_p**gamma * (gamma * s.exp() * s / one_minus_p - 1)
    assert_relative(value, expected, 8 * EPS * expected.abs() + FLOOR, "nll value")
    assert_relative(grad[:, 0], expected_grad, 8 * EPS * expected_grad.abs() + FLOOR, "nll grad")

    probs = torch.cat([torch.logspace(-30, -1, 20), 1 - torch.logspace(-7, -1, 20)])
    for label in (0.0, 1.0):
        y = torch.full_like(probs, label)
        got = focalkit.binary_focal_loss(probs, y, gamma=gamma, alpha=None, reduction="none")
        p64, y64 = probs.double(), y.double()
        m = y64 * (1 - p64) + (1 - y64) * p64
        bce = -(y64 * p64.log() + (1 - y64) * torch.log1p(-p64))
        assert_relative(got, m**gamma * bce, 8 * EPS * (m**gamma * bce) + FLOOR, "binary value")
        if gamma == 0:
            torch_loss = F.binary_cross_entropy(probs, y, reduction="none")
            assert_relative(torch_loss, bce, 8 * EPS * bce + FLOOR, "binary_cross_entropy")
