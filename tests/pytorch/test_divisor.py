"""``divisor=``: with ``reduction='mean'`` every loss is its ``'sum'`` over ``divisor``.

The oracle is the float64 reference of ``tests/oracles.py`` with ``reduction='sum'``, divided by
hand; gradients come from autograd through that reference. The options run over class weights,
``ignore_index``, label smoothing, probability targets, per-class and scalar alpha, gammas below
and above 1, N-D inputs, half precision, kernels on and off, and tensor divisors of every real
dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import (
    binary_focal_reference,
    nll_focal_reference,
    sigmoid_focal_reference,
    softmax_focal_reference,
)

import focalkit
from focalkit.torch import _kernels

pytestmark = pytest.mark.usefixtures("one_thread")

C = 5


def _logits(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * 3).requires_grad_()


def _class_target(shape: tuple[int, ...], seed: int, ignore: bool) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed + 1)
    target = torch.randint(0, C, shape, generator=generator)
    if ignore:
        target[..., 0] = -100
    return target


# (name, build(seed) -> (focalkit loss(x, divisor, reduction), reference 'sum'(x), input))
Case = tuple[Callable[[torch.Tensor, Any, str], torch.Tensor], Callable[..., torch.Tensor]]
WEIGHT = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.25], dtype=torch.float64)
ALPHA = [0.1, 0.2, 0.3, 0.25, 0.15]


def softmax_case(
    shape: tuple[int, ...], ignore: bool, weight: bool, smoothing: float, alpha: Any, gamma: float
) -> Case:
    target = _class_target((shape[0], *shape[2:]), 0, ignore)
    options = {
        "weight": WEIGHT if weight else None,
        "ignore_index": -100,
        "label_smoothing": smoothing,
        "alpha": alpha,
    }

    def loss(x: torch.Tensor, divisor: Any, reduction: str) -> torch.Tensor:
        return focalkit.softmax_focal_loss(
            x, target, reduction=reduction, gamma=gamma, divisor=divisor, **options
        )

    def reference(x: torch.Tensor) -> torch.Tensor:
        return softmax_focal_reference(x, target, gamma=gamma, reduction="sum", **options)

    return loss, reference


CASES: dict[str, Callable[[], tuple[Case, tuple[int, ...]]]] = {
    "softmax": lambda: (softmax_case((6, C), False, False, 0.0, None, 2.0), (6, C)),
    "softmax-weight-ignore": lambda: (softmax_case((6, C), True, True, 0.0, ALPHA, 0.5), (6, C)),
    "softmax-smoothing-nd": lambda: (
        softmax_case((3, C, 2, 2), True, True, 0.2, 0.25, 3.0),
        (3, C, 2, 2),
    ),
}


def _probability_case() -> tuple[Case, tuple[int, ...]]:
    target = torch.softmax(torch.randn(4, C, 3, dtype=torch.float64), 1)

    def loss(x: torch.Tensor, divisor: Any, reduction: str) -> torch.Tensor:
        return focalkit.softmax_focal_loss(
            x, target, reduction=reduction, gamma=1.5, alpha=ALPHA, divisor=divisor
        )

    def reference(x: torch.Tensor) -> torch.Tensor:
        return softmax_focal_reference(x, target, gamma=1.5, alpha=ALPHA, reduction="sum")

    return (loss, reference), (4, C, 3)


def _nll_case() -> tuple[Case, tuple[int, ...]]:
    target = _class_target((7,), 3, True)

    def loss(x: torch.Tensor, divisor: Any, reduction: str) -> torch.Tensor:
        return focalkit.nll_focal_loss(
            x.log_softmax(1), target, WEIGHT, reduction=reduction, gamma=0.5, divisor=divisor
        )

    def reference(x: torch.Tensor) -> torch.Tensor:
        return nll_focal_reference(
            x.log_softmax(1), target, gamma=0.5, weight=WEIGHT, reduction="sum"
        )

    return (loss, reference), (7, C)


def _sigmoid_case() -> tuple[Case, tuple[int, ...]]:
    target = (torch.rand(4, 3, 2, generator=torch.Generator().manual_seed(5)) > 0.6).double()
    pos_weight = torch.tensor([1.0, 3.0], dtype=torch.float64)

    def loss(x: torch.Tensor, divisor: Any, reduction: str) -> torch.Tensor:
        return focalkit.sigmoid_focal_loss(
            x, target, reduction=reduction, pos_weight=pos_weight, gamma=2.0, divisor=divisor
        )

    def reference(x: torch.Tensor) -> torch.Tensor:
        return sigmoid_focal_reference(x, target, gamma=2.0, pos_weight=pos_weight, reduction="sum")

    return (loss, reference), (4, 3, 2)


def _binary_case() -> tuple[Case, tuple[int, ...]]:
    target = torch.rand(9, generator=torch.Generator().manual_seed(6), dtype=torch.float64)

    def loss(x: torch.Tensor, divisor: Any, reduction: str) -> torch.Tensor:
        return focalkit.binary_focal_loss(
            torch.sigmoid(x), target, reduction=reduction, gamma=0.5, divisor=divisor
        )

    def reference(x: torch.Tensor) -> torch.Tensor:
        return binary_focal_reference(torch.sigmoid(x), target, gamma=0.5, reduction="sum")

    return (loss, reference), (9,)


def _fused_case() -> tuple[Case, tuple[int, ...]]:
    generator = torch.Generator().manual_seed(7)
    classifier = torch.randn(C, 4, generator=generator, dtype=torch.float64)
    target = _class_target((8,), 8, True)

    def loss(x: torch.Tensor, divisor: Any, reduction: str) -> torch.Tensor:
        return focalkit.linear_softmax_focal_loss(
            x,
            classifier,
            target,
            weight=WEIGHT,
            reduction=reduction,
            label_smoothing=0.1,
            gamma=2.0,
            chunk_size=3,
            divisor=divisor,
        )

    def reference(x: torch.Tensor) -> torch.Tensor:
        return softmax_focal_reference(
            F.linear(x, classifier),
            target,
            gamma=2.0,
            weight=WEIGHT,
            label_smoothing=0.1,
            reduction="sum",
        )

    return (loss, reference), (8, 4)


CASES.update(
    {
        "softmax-probabilities": _probability_case,
        "nll": _nll_case,
        "sigmoid": _sigmoid_case,
        "binary": _binary_case,
        "fused": _fused_case,
    }
)


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "definitions"])
@pytest.mark.parametrize(
    "divisor",
    [7.0, 3, torch.tensor(2.5, dtype=torch.float64), torch.tensor(11), torch.tensor(0.75)],
    ids=["float", "int", "tensor64", "tensor-int", "tensor32"],
)
@pytest.mark.parametrize("case", sorted(CASES))
def test_mean_with_divisor_is_sum_over_divisor(case: str, divisor: Any, kernels: bool) -> None:
    (loss, reference), shape = CASES[case]()
    x = _logits(shape, 11)
    with _kernels.use_kernels(kernels):
        value = loss(x, divisor, "mean")
    (grad,) = torch.autograd.grad(value, x)
    x_ref = x.detach().clone().requires_grad_()
    expected = reference(x_ref) / float(divisor)
    (expected_grad,) = torch.autograd.grad(expected, x_ref)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)
    # and it is not the plain 'mean' (whose divisor differs in every case here)
    assert not torch.allclose(value, loss(x, None, "mean"))


@settings(max_examples=40, deadline=None)
@given(
    divisor=st.floats(1e-6, 1e9),
    scale=st.floats(0.01, 30.0),
    gamma=st.sampled_from([0.0, 0.5, 2.0]),
    n=st.integers(1, 9),
)
def test_divisor_over_values_and_scales(divisor: float, scale: float, gamma: float, n: int) -> None:
    """Randomized: any positive divisor, logit scale and batch size, softmax and sigmoid."""
    x = torch.randn(n, C, dtype=torch.float64, generator=torch.Generator().manual_seed(n)) * scale
    target = torch.arange(n) % C
    value = focalkit.softmax_focal_loss(x, target, gamma=gamma, divisor=divisor)
    expected = softmax_focal_reference(x, target, gamma=gamma, reduction="sum") / divisor
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=0.0)
    y = (target % 2).double().unsqueeze(1).expand(n, C)
    as_tensor = torch.tensor(divisor, dtype=torch.float64)
    value = focalkit.sigmoid_focal_loss(x, y, gamma=gamma, divisor=as_tensor)
    expected = sigmoid_focal_reference(x, y, gamma=gamma, reduction="sum") / divisor
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=0.0)


def test_half_precision_divides_before_rounding(half_dtype: torch.dtype) -> None:
    """The 'sum' of this half batch overflows float16 (about 8 * 10000); the quotient must not."""
    x = torch.tensor([[0.0, 8.0]], dtype=half_dtype).expand(10000, 2)
    target = torch.zeros(10000, dtype=torch.long)
    value = focalkit.softmax_focal_loss(x, target, divisor=10000.0)
    assert value.dtype == half_dtype
    log_p = -torch.log1p(torch.exp(torch.tensor(8.0, dtype=torch.float64)))
    expected = -((1 - log_p.exp()) ** 2) * log_p  # one element's loss: the mean over equal ones
    torch.testing.assert_close(value.double(), expected, rtol=1e-2, atol=0.0)
    total = focalkit.softmax_focal_loss(x, target, reduction="sum")
    assert torch.isinf(total) or half_dtype == torch.bfloat16  # why dividing first matters


def test_modules_forward_divisor() -> None:
    x = _logits((6, C), 2)
    target = _class_target((6,), 2, True)
    module = focalkit.FocalLoss(weight=WEIGHT, gamma=1.0)
    expected = focalkit.softmax_focal_loss(x, target, WEIGHT, reduction="sum", gamma=1.0) / 4
    torch.testing.assert_close(module(x, target, divisor=4), expected)
    y = (x.detach() > 0).double()
    sig = focalkit.SigmoidFocalLoss(alpha=None)
    expected = focalkit.sigmoid_focal_loss(x, y, reduction="sum", alpha=None) / 3
    torch.testing.assert_close(sig(x, y, divisor=3.0), expected)
    nll = focalkit.NLLFocalLoss(gamma=2.0)
    expected = focalkit.nll_focal_loss(x.log_softmax(1), target, reduction="sum") / 5
    torch.testing.assert_close(nll(x.log_softmax(1), target, divisor=torch.tensor(5.0)), expected)
    binary = focalkit.BinaryFocalLoss()
    p = torch.sigmoid(x)
    expected = focalkit.binary_focal_loss(p, y, reduction="sum") / 2
    torch.testing.assert_close(binary(p, y, divisor=2), expected)
    head = torch.randn(C, 3, dtype=torch.float64)
    hidden = torch.randn(6, 3, dtype=torch.float64)
    linear = focalkit.LinearFocalLoss(gamma=2.0)
    expected = focalkit.linear_softmax_focal_loss(hidden, head, target, reduction="sum") / 9
    torch.testing.assert_close(linear(hidden, head, target, divisor=9), expected)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_tensor_divisor_traces_without_a_graph_break(dynamic: bool) -> None:
    """A 0-dim tensor divisor is never read on the host, so it compiles into one graph."""
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda x, t, d: focalkit.softmax_focal_loss(x, t, divisor=d),
        fullgraph=True,
        dynamic=dynamic,
    )
    for n, d in ((8, 3.0), (6, 5.0)):
        x = torch.randn(n, C)
        target = torch.randint(0, C, (n,))
        expected = focalkit.softmax_focal_loss(x, target, reduction="sum") / d
        torch.testing.assert_close(compiled(x, target, torch.tensor(d)), expected)


@pytest.mark.parametrize(
    ("divisor", "reduction", "error", "match"),
    [
        (2.0, "sum", ValueError, "divisor is only used with reduction='mean'"),
        (2.0, "none", ValueError, "divisor is only used with reduction='mean'"),
        (torch.tensor(2.0), "sum", ValueError, "divisor is only used with reduction='mean'"),
        (0.0, "mean", ValueError, "divisor must be a positive finite number, got 0.0"),
        (-3, "mean", ValueError, "divisor must be a positive finite number, got -3"),
        (float("inf"), "mean", ValueError, "divisor must be a positive finite number"),
        (float("nan"), "mean", ValueError, "divisor must be a positive finite number"),
        (True, "mean", TypeError, "divisor must be a positive number or a 0-dim tensor"),
        ("4", "mean", TypeError, "divisor must be a positive number or a 0-dim tensor"),
        (torch.tensor([2.0]), "mean", ValueError, r"0-dim tensor, got a tensor of shape \(1,\)"),
        (torch.tensor(True), "mean", ValueError, "dtype torch.bool"),
    ],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda d, r: focalkit.softmax_focal_loss(
            torch.zeros(2, 3), torch.tensor([0, 1]), reduction=r, divisor=d
        ),
        lambda d, r: focalkit.nll_focal_loss(
            torch.zeros(2, 3), torch.tensor([0, 1]), reduction=r, divisor=d
        ),
        lambda d, r: focalkit.sigmoid_focal_loss(
            torch.zeros(2), torch.ones(2), reduction=r, divisor=d
        ),
        lambda d, r: focalkit.binary_focal_loss(
            torch.full((2,), 0.5), torch.ones(2), reduction=r, divisor=d
        ),
        lambda d, r: focalkit.linear_softmax_focal_loss(
            torch.zeros(2, 4), torch.zeros(3, 4), torch.tensor([0, 1]), reduction=r, divisor=d
        ),
        lambda d, r: focalkit.FocalLoss(reduction=r)(
            torch.zeros(2, 3), torch.tensor([0, 1]), divisor=d
        ),
    ],
    ids=["softmax", "nll", "sigmoid", "binary", "fused", "module"],
)
def test_bad_divisor(
    call: Callable[[Any, str], torch.Tensor], divisor: Any, reduction: str, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        call(divisor, reduction)


def test_nan_divisor_tensor_gives_nan() -> None:
    """A tensor is not read on the host: a NaN in it comes out as NaN, not as a number."""
    value = focalkit.softmax_focal_loss(
        torch.zeros(2, 3), torch.tensor([0, 1]), divisor=torch.tensor(float("nan"))
    )
    assert torch.isnan(value)
