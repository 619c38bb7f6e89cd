"""gamma=0 parity: each focal loss equals PyTorch's own loss, values and gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from tolerances import tolerance

import focalkit

REDUCTIONS = ["none", "mean", "sum"]
SHAPES = {"2d": (6, 4), "3d": (3, 4, 5), "4d": (2, 4, 3, 3), "5d": (2, 4, 2, 2, 3)}
OPTIONS = {
    "plain": {},
    "weight": {"weight": True},
    "ignore_index": {"ignore_index": 1},
    "label_smoothing": {"label_smoothing": 0.2},
    "all": {"weight": True, "ignore_index": 1, "label_smoothing": 0.15},
}


def _grad(fn, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    input = input.detach().clone().requires_grad_(True)
    out = fn(input)
    # A fixed random cotangent checks the whole Jacobian row space, not only the sum.
    cotangent = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, input, cotangent)
    return out.detach(), grad


def _case(shape, options, dtype, probability_target, seed=0):
    generator = torch.Generator().manual_seed(seed)
    input = torch.randn(shape, generator=generator, dtype=torch.float64).mul(3).to(dtype)
    num_classes = shape[1]
    target_shape = (shape[0], *shape[2:])
    if probability_target:
        target = torch.rand(shape, generator=generator, dtype=torch.float64).softmax(1).to(dtype)
    else:
        target = torch.randint(0, num_classes, target_shape, generator=generator)
        if "ignore_index" in options:
            target[..., 0] = options["ignore_index"]  # some of every row ignored
    kwargs = dict(options)
    if kwargs.pop("weight", False):
        kwargs["weight"] = torch.rand(num_classes, generator=generator, dtype=dtype) + 0.5
    if probability_target:
        kwargs.pop("ignore_index", None)
    return input, target, kwargs


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("probability_target", [False, True], ids=["index", "probability"])
@pytest.mark.parametrize(
    ("shape_name", "option_name", "reduction"),
    list(itertools.product(SHAPES, OPTIONS, REDUCTIONS)),
)
def test_softmax_gamma0_equals_cross_entropy(
    shape_name, option_name, reduction, probability_target, dtype
):
    input, target, kwargs = _case(
        SHAPES[shape_name], OPTIONS[option_name], dtype, probability_target
    )
    expected, expected_grad = _grad(
        lambda x: F.cross_entropy(x, target, reduction=reduction, **kwargs), input
    )
    actual, actual_grad = _grad(
        lambda x: focalkit.softmax_focal_loss(
            x, target, reduction=reduction, gamma=0.0, alpha=None, **kwargs
        ),
        input,
    )
    rtol = 1e-10 if dtype == torch.float64 else 1e-6
    atol = 1e-12 if dtype == torch.float64 else 1e-6
    assert actual.dtype == expected.dtype
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
    torch.testing.assert_close(actual_grad, expected_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_softmax_gamma0_unbatched_equals_cross_entropy(reduction):
    input = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    for target in (torch.tensor(2), torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)):
        expected = F.cross_entropy(input, target, reduction=reduction)
        actual = focalkit.softmax_focal_loss(input, target, reduction=reduction, gamma=0)
        assert actual.shape == expected.shape
        torch.testing.assert_close(actual, expected, **tolerance(torch.float64))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(
    ("shape_name", "option_name", "reduction"),
    list(itertools.product(SHAPES, ["plain", "weight", "ignore_index"], REDUCTIONS)),
)
def test_nll_gamma0_equals_nll_loss(shape_name, option_name, reduction, dtype):
    logits, target, kwargs = _case(SHAPES[shape_name], OPTIONS[option_name], dtype, False)
    log_probs = logits.log_softmax(1)
    expected, expected_grad = _grad(
        lambda x: F.nll_loss(x, target, reduction=reduction, **kwargs), log_probs
    )
    actual, actual_grad = _grad(
        lambda x: focalkit.nll_focal_loss(x, target, reduction=reduction, gamma=0, **kwargs),
        log_probs,
    )
    torch.testing.assert_close(
        actual,
        expected,
        rtol=1e-10 if dtype == torch.float64 else 1e-6,
        atol=1e-12 if dtype == torch.float64 else 1e-6,
    )
    torch.testing.assert_close(
        actual_grad,
        expected_grad,
        rtol=1e-10 if dtype == torch.float64 else 1e-6,
        atol=1e-12 if dtype == torch.float64 else 1e-6,
    )


def _binary_case(dtype, soft, seed=0):
    generator = torch.Generator().manual_seed(seed)
    input = torch.randn(5, 3, 4, generator=generator, dtype=torch.float64).mul(3)
    target = torch.rand(5, 3, 4, generator=generator, dtype=torch.float64)
    if not soft:
        target = target.round()
    weight = torch.rand(3, 4, generator=generator, dtype=torch.float64) + 0.5
    pos_weight = torch.rand(4, generator=generator, dtype=torch.float64) * 3
    return input.to(dtype), target.to(dtype), weight.to(dtype), pos_weight.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("use_weight", [False, True], ids=["", "weight"])
@pytest.mark.parametrize("use_pos_weight", [False, True], ids=["", "pos_weight"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sigmoid_gamma0_equals_bce_with_logits(reduction, use_pos_weight, use_weight, soft, dtype):
    input, target, weight, pos_weight = _binary_case(dtype, soft)
    kwargs = {
        "weight": weight if use_weight else None,
        "pos_weight": pos_weight if use_pos_weight else None,
    }
    expected, expected_grad = _grad(
        lambda x: F.binary_cross_entropy_with_logits(x, target, reduction=reduction, **kwargs),
        input,
    )
    actual, actual_grad = _grad(
        lambda x: focalkit.sigmoid_focal_loss(
            x, target, reduction=reduction, gamma=0, alpha=None, **kwargs
        ),
        input,
    )
    rtol, atol = (1e-10, 1e-12) if dtype == torch.float64 else (1e-6, 1e-6)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
    torch.testing.assert_close(actual_grad, expected_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("use_weight", [False, True], ids=["", "weight"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_gamma0_equals_binary_cross_entropy(reduction, use_weight, soft, dtype):
    logits, target, weight, _ = _binary_case(dtype, soft)
    probs = logits.sigmoid()
    probs[0, 0, :2] = torch.tensor([0.0, 1.0])  # the -100 clamp of the logs
    kwargs = {"weight": weight if use_weight else None}
    expected, expected_grad = _grad(
        lambda p: F.binary_cross_entropy(p, target, reduction=reduction, **kwargs), probs
    )
    actual, actual_grad = _grad(
        lambda p: focalkit.binary_focal_loss(
            p, target, reduction=reduction, gamma=0, alpha=None, **kwargs
        ),
        probs,
    )
    rtol, atol = (1e-10, 1e-12) if dtype == torch.float64 else (1e-6, 1e-6)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
    torch.testing.assert_close(actual_grad, expected_grad, rtol=rtol, atol=atol)


def test_binary_on_sigmoid_equals_sigmoid_focal_loss():
    logits, target, weight, _ = _binary_case(torch.float64, soft=True)
    for gamma, alpha in [(2.0, 0.25), (0.5, None), (5.0, 0.9)]:
        torch.testing.assert_close(
            focalkit.binary_focal_loss(logits.sigmoid(), target, weight, gamma=gamma, alpha=alpha),
            focalkit.sigmoid_focal_loss(logits, target, weight, gamma=gamma, alpha=alpha),
            **tolerance(torch.float64),
        )


def test_nll_of_log_softmax_equals_softmax_focal_loss():
    logits, target, kwargs = _case(
        (6, 5), {"weight": True, "ignore_index": 1}, torch.float64, False
    )
    for gamma, alpha in [(2.0, None), (0.5, 0.3), (1.0, [0.1, 0.2, 0.3, 0.2, 0.2])]:
        torch.testing.assert_close(
            focalkit.nll_focal_loss(
                logits.log_softmax(1), target, gamma=gamma, alpha=alpha, **kwargs
            ),
            focalkit.softmax_focal_loss(logits, target, gamma=gamma, alpha=alpha, **kwargs),
            **tolerance(torch.float64),
        )
