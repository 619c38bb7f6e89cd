"""Gradients: gradcheck and gradgradcheck in float64, and finiteness at the edges."""

from __future__ import annotations

import pytest
import torch
from oracles import sigmoid_focal_reference
from torch.autograd import gradcheck, gradgradcheck

import focalkit

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]


def _logits(*shape, seed=0, scale=4.0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).requires_grad_()


def _check(fn, input):
    assert gradcheck(fn, (input,), eps=1e-6, atol=1e-7, rtol=1e-5)
    assert gradgradcheck(fn, (input,), eps=1e-6, atol=1e-6, rtol=1e-4)


SOFTMAX_OPTIONS = {
    "plain": {},
    "weight+alpha": {"weight": [0.5, 2.0, 1.0, 1.5], "alpha": [0.25, 0.5, 0.75, 1.0]},
    "ignore+smoothing": {"ignore_index": 2, "label_smoothing": 0.1, "alpha": 0.3},
}


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("option_name", SOFTMAX_OPTIONS)
def test_softmax_gradcheck(gamma, option_name):
    target = torch.tensor([[0, 3, 2], [1, 2, 3]])
    kwargs = SOFTMAX_OPTIONS[option_name]
    _check(
        lambda x: focalkit.softmax_focal_loss(x, target, gamma=gamma, **kwargs),
        _logits(2, 4, 3),
    )


@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_probability_target_gradcheck(gamma):
    target = torch.tensor([[0.1, 0.6, 0.3, 0.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    _check(
        lambda x: focalkit.softmax_focal_loss(
            x, target, weight=[1.0, 2.0, 0.5, 1.0], label_smoothing=0.05, gamma=gamma
        ),
        _logits(2, 4),
    )


@pytest.mark.parametrize("gamma", GAMMAS)
def test_nll_gradcheck(gamma):
    target = torch.tensor([0, 3, 2, 2])
    log_probs = _logits(4, 4).detach().log_softmax(1).requires_grad_()
    _check(
        lambda s: focalkit.nll_focal_loss(
            s, target, weight=[1.0, 2.0, 0.5, 1.0], alpha=[0.2, 0.4, 0.6, 0.8], gamma=gamma
        ),
        log_probs,
    )


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_sigmoid_gradcheck(gamma, soft):
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(3, 4, generator=generator, dtype=torch.float64)
    target = target if soft else target.round()
    _check(
        lambda x: focalkit.sigmoid_focal_loss(
            x,
            target,
            weight=torch.full((4,), 0.7, dtype=torch.float64),
            pos_weight=[1.0, 2.0, 3.0, 0.5],
            gamma=gamma,
            alpha=0.25,
        ),
        _logits(3, 4),
    )


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_binary_gradcheck(gamma, soft):
    generator = torch.Generator().manual_seed(2)
    target = torch.rand(3, 4, generator=generator, dtype=torch.float64)
    target = target if soft else target.round()
    probs = _logits(3, 4, scale=2.0).detach().sigmoid().requires_grad_()
    _check(
        lambda p: focalkit.binary_focal_loss(p, target, weight=[1.0, 0.5, 2.0, 1.0], gamma=gamma),
        probs,
    )


def _grad_and_hessian_diag(fn, input):
    input = input.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(fn(input), input, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), input)
    return grad, second


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("gamma", [0.25, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("scale", [30.0, 100.0, 1e4])
def test_softmax_extreme_logits_finite_gradients(scale, gamma, dtype):
    # Confident right (p_t rounds to 1), confident wrong, and ties, at huge logits.
    logits = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [1.0, 1.0, -1.0]], dtype=dtype)
    target = torch.tensor([0, 0, 1])
    for t in (target, torch.nn.functional.one_hot(target, 3).to(dtype)):
        grad, second = _grad_and_hessian_diag(
            lambda x, t=t: focalkit.softmax_focal_loss(x * scale, t, gamma=gamma), logits
        )
        assert torch.isfinite(grad).all()
        assert torch.isfinite(second).all()
    # Where p_t rounds to 1 the gradient is that of float64 math (which does not round there).
    grad, _ = _grad_and_hessian_diag(
        lambda x: focalkit.softmax_focal_loss(x * scale, target, gamma=gamma, reduction="none")[0],
        logits,
    )
    reference, _ = _grad_and_hessian_diag(
        lambda x: focalkit.softmax_focal_loss(x * scale, target, gamma=gamma, reduction="none")[0],
        logits.double(),
    )
    torch.testing.assert_close(grad, reference.to(dtype), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("gamma", [0.25, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("logit", [30.0, 100.0, 1e4, -1e4])
def test_sigmoid_extreme_logits_finite_gradients(logit, gamma, dtype):
    input = torch.tensor([logit, -logit, logit, -logit], dtype=dtype)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=dtype)  # right, right, wrong, wrong
    grad, second = _grad_and_hessian_diag(
        lambda x: focalkit.sigmoid_focal_loss(x, target, gamma=gamma, pos_weight=[2.0] * 4), input
    )
    assert torch.isfinite(grad).all()
    assert torch.isfinite(second).all()
    reference, _ = _grad_and_hessian_diag(
        lambda x: focalkit.sigmoid_focal_loss(
            x, target.double(), gamma=gamma, pos_weight=[2.0] * 4
        ),
        input.double(),
    )
    torch.testing.assert_close(grad, reference.to(dtype), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("gamma", [0.25, 0.5, 1.0, 2.0])
def test_nll_and_binary_at_certainty_have_zero_gradient(gamma):
    # p_t = 1 exactly: naive autograd of (1 - p)^gamma * log p gives 0 * inf = NaN for gamma < 1.
    log_probs = torch.tensor([[0.0, -torch.inf], [-0.5, -0.9]], dtype=torch.float64)
    log_probs.requires_grad_()
    focalkit.nll_focal_loss(
        log_probs, torch.tensor([0, 1]), gamma=gamma, reduction="sum"
    ).backward()
    assert torch.isfinite(log_probs.grad).all()
    assert log_probs.grad[0, 0] == 0

    probs = torch.tensor([1.0, 0.0, 0.3], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    focalkit.binary_focal_loss(probs, target, gamma=gamma, reduction="sum").backward()
    assert torch.isfinite(probs.grad).all()
    assert probs.grad[0] == 0
    assert probs.grad[1] == 0


def test_naive_autograd_is_nan_where_focalkit_is_finite():
    # The failure the hand-derived backward exists for, shown on the seeds' formula.
    p = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    (-((1 - p) ** 0.5) * p.log()).sum().backward()
    assert torch.isnan(p.grad).all()


def test_nll_gradient_at_minus_infinity_is_minus_one():
    # f(s) = -(1 - e^s)^gamma s has f'(-inf) = -1, like nll_loss's.
    log_probs = torch.tensor([[-torch.inf, 0.0]], dtype=torch.float64, requires_grad=True)
    focalkit.nll_focal_loss(log_probs, torch.tensor([0]), gamma=0.5).backward()
    assert log_probs.grad.tolist() == [[-1.0, 0.0]]


# ------------------------------------------------------ gradients with respect to the target


def _sigmoid_options(gamma):
    return {
        "weight": torch.tensor([0.7, 1.0, 1.5, 2.0], dtype=torch.float64),
        "pos_weight": torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=torch.float64),
        "gamma": gamma,
        "alpha": 0.25,
    }


@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_gradcheck_with_respect_to_soft_targets(gamma):
    generator = torch.Generator().manual_seed(3)
    target = torch.rand(3, 4, generator=generator, dtype=torch.float64) * 0.9 + 0.05
    options = _sigmoid_options(gamma)

    def loss(x, y):
        return focalkit.sigmoid_focal_loss(x, y, **options)

    inputs = (_logits(3, 4), target.requires_grad_())
    assert gradcheck(loss, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
    assert gradgradcheck(loss, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_gradient_with_respect_to_hard_targets_matches_the_formula(gamma):
    # At y in {0, 1} a central difference would leave [0, 1]: compare with autograd of the plain
    # float64 formula and with one-sided second-order differences, first and second derivatives.
    x = _logits(3, 4, seed=4, scale=3.0).detach()
    target = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    target = target.to(torch.float64)
    options = _sigmoid_options(gamma)

    def loss(y, fn=focalkit.sigmoid_focal_loss):
        return fn(x, y, reduction="sum", **options)

    y = target.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss(y), y, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), y)
    reference_y = target.clone().requires_grad_()
    reference = loss(reference_y, fn=sigmoid_focal_reference)
    (expected,) = torch.autograd.grad(reference, reference_y, create_graph=True)
    (expected_second,) = torch.autograd.grad(expected.sum(), reference_y)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(second, expected_second, rtol=1e-9, atol=1e-12)
    # (-3 f(y) + 4 f(y + h) - f(y + 2 h)) / (2 h), stepping into [0, 1]
    flat = target.reshape(-1)
    step = torch.where(flat == 0, 1e-5, -1e-5)
    differences = torch.empty_like(flat)
    with torch.no_grad():
        for i in range(flat.numel()):
            values = []
            for k in range(3):
                moved = flat.clone()
                moved[i] += k * step[i]
                values.append(float(loss(moved.view_as(target))))
            differences[i] = (-3 * values[0] + 4 * values[1] - values[2]) / (2 * step[i])
    torch.testing.assert_close(grad.detach().reshape(-1), differences, rtol=1e-4, atol=1e-8)


def test_sigmoid_target_gradient_example():
    x = torch.tensor([-1.5, 2.0])
    y = torch.tensor([0.0, 1.0], requires_grad=True)
    focalkit.sigmoid_focal_loss(x, y, gamma=2.0, alpha=None, reduction="sum").backward()
    # d/dy [(1 - p_t)^2 BCE]: (1 - p_t) = y q + (1 - y) p, BCE = -(y log p + (1 - y) log q)
    p = torch.sigmoid(x.double())
    q = 1 - p
    m = y.detach().double() * q + (1 - y.detach().double()) * p
    bce = -(y.detach().double() * p.log() + (1 - y.detach().double()) * q.log())
    expected = 2 * m * (q - p) * bce + m**2 * (q.log() - p.log())
    torch.testing.assert_close(y.grad, expected.float(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(y.grad, torch.tensor([0.0966, -0.0515]), rtol=0, atol=1e-4)
