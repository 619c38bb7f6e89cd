"""Generalized focal loss (Li et al. 2020): ``quality_focal_loss`` and
``distribution_focal_loss``, and their modules.

Each against its float64 oracle written from the paper's formula (values; gradients from the
float64 formula); quality focal loss at its parity point (hard labels: ``sigmoid_focal_loss(gamma
=beta, alpha=None)``) and against mmdetection's ``quality_focal_loss`` (its ``(label, score)``
target) and its dense-target form; distribution focal loss against mmdetection's two
``F.cross_entropy`` calls wherever they are defined (a target of exactly ``n`` is not).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import (
    distribution_focal_oracle,
    distribution_focal_reference,
    mmdet_distribution_focal_loss,
    mmdet_quality_focal_loss,
    mmdet_quality_focal_loss_tensor_target,
    mmdet_weight_reduce_loss,
    quality_focal_oracle,
    quality_focal_reference,
)

import focalkit

pytestmark = pytest.mark.usefixtures("one_thread")

REDUCTIONS = ["none", "mean", "sum"]
BETAS = [2.0, 0.0, 0.5, 1.0, 3.0]


def _value_and_grad(fn: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.detach().clone().requires_grad_()
    out = fn(leaf)
    cotangent = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, leaf, cotangent)
    return out.detach(), grad


def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    if dtype == torch.float64:
        return {"rtol": 1e-10, "atol": 1e-12}
    return {"rtol": 2e-5, "atol": 2e-6}


# ------------------------------------------------------------------------ quality focal loss

QFL_SHAPES = {"1d": (9,), "2d": (6, 5), "3d": (2, 5, 3)}


def _quality_case(
    shape: tuple[int, ...], soft: bool, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed + len(shape))
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 3 - 1
    score = torch.rand(shape, generator=generator, dtype=torch.float64)
    if not soft:
        return x, (score < 0.3).to(torch.float64)
    score.view(-1)[::4] = 0.0  # the negatives of a detector's score map
    score.view(-1)[1::7] = 1.0
    return x, score


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("shape_name", QFL_SHAPES)
def test_quality_focal_against_the_oracle(shape_name: str, soft: bool, weighted: bool) -> None:
    shape = QFL_SHAPES[shape_name]
    x, target = _quality_case(shape, soft)
    weight = torch.linspace(0.5, 2.0, shape[-1], dtype=torch.float64) if weighted else None
    for beta, reduction in itertools.product(BETAS, REDUCTIONS):
        value, grad = _value_and_grad(
            lambda v, b=beta, r=reduction: focalkit.quality_focal_loss(
                v, target, weight, r, beta=b
            ),
            x,
        )
        _, expected_grad = _value_and_grad(
            lambda v, b=beta, r=reduction: quality_focal_reference(
                v, target, beta=b, weight=weight, reduction=r
            ),
            x,
        )
        expected = quality_focal_oracle(x, target, beta=beta, weight=weight, reduction=reduction)
        assert value.dtype == torch.float64
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-13)
        value32, grad32 = _value_and_grad(
            lambda v, b=beta, r=reduction: focalkit.quality_focal_loss(
                v, target.float(), None if weight is None else weight.float(), r, beta=b
            ),
            x.float(),
        )
        assert value32.dtype == torch.float32
        torch.testing.assert_close(value32.double(), value, **_tolerance(torch.float32))
        torch.testing.assert_close(grad32.double(), expected_grad, **_tolerance(torch.float32))


@pytest.mark.parametrize("beta", BETAS)
def test_quality_focal_with_hard_labels_is_sigmoid_focal_loss(beta: float) -> None:
    x, target = _quality_case((6, 5), soft=False, seed=1)
    weight = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    for reduction in REDUCTIONS:
        actual = _value_and_grad(
            lambda v, r=reduction: focalkit.quality_focal_loss(v, target, weight, r, beta=beta), x
        )
        expected = _value_and_grad(
            lambda v, r=reduction: focalkit.sigmoid_focal_loss(
                v, target, weight, r, gamma=beta, alpha=None
            ),
            x,
        )
        for a, e in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-13)


def _mmdet_target(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mmdetection's ``(label, score)`` (label ``c`` for background) and the same as a dense
    ``(N, C)`` score map."""
    generator = torch.Generator().manual_seed(seed)
    label = torch.randint(0, c + 1, (n,), generator=generator)
    score = torch.rand(n, generator=generator, dtype=torch.float64)
    dense = torch.zeros(n, c, dtype=torch.float64)
    rows = torch.nonzero(label < c).squeeze(1)
    dense[rows, label[rows]] = score[rows]
    return label, score, dense


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.5])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_quality_focal_is_mmdetection(beta: float, dtype: torch.dtype) -> None:
    n, c = 12, 5
    label, score, dense = _mmdet_target(n, c, seed=2)
    x, _ = _quality_case((n, c), soft=True, seed=3)
    x, score, dense = x.to(dtype), score.to(dtype), dense.to(dtype)
    sample_weight = torch.linspace(0.5, 1.5, n, dtype=dtype)
    # per sample, summed over the classes
    expected = _value_and_grad(lambda v: mmdet_quality_focal_loss(v, (label, score), beta), x)
    actual = _value_and_grad(
        lambda v: focalkit.quality_focal_loss(v, dense, reduction="none", beta=beta).sum(1), x
    )
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, **_tolerance(dtype))
    dense_form = mmdet_quality_focal_loss_tensor_target(x, dense, beta)
    torch.testing.assert_close(
        focalkit.quality_focal_loss(x, dense, reduction="none", beta=beta).sum(1, keepdim=True),
        dense_form,
        **_tolerance(dtype),
    )
    # mmdetection's per-sample weight and 'mean' over the samples: a (N, 1) weight, 'sum' / N
    mean = mmdet_weight_reduce_loss(
        mmdet_quality_focal_loss(x, (label, score), beta), sample_weight, "mean"
    )
    ours = (
        focalkit.quality_focal_loss(x, dense, sample_weight[:, None], reduction="sum", beta=beta)
        / n
    )
    torch.testing.assert_close(ours, mean, **_tolerance(dtype))
    torch.testing.assert_close(
        focalkit.quality_focal_loss(x, dense, sample_weight[:, None], divisor=n, beta=beta),
        mean,
        **_tolerance(dtype),
    )


def test_quality_focal_module() -> None:
    x, target = _quality_case((6, 5), soft=True, seed=4)
    weight = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    module = focalkit.QualityFocalLoss(weight=weight, reduction="sum", beta=1.5)
    expected = focalkit.quality_focal_loss(x, target, weight, "sum", beta=1.5)
    torch.testing.assert_close(module(x, target), expected)
    assert "weight" in dict(module.named_buffers())
    text = repr(module)
    assert "beta=1.5" in text
    assert "reduction='sum'" in text
    defaults = focalkit.QualityFocalLoss()
    torch.testing.assert_close(defaults(x, target), focalkit.quality_focal_loss(x, target))
    torch.testing.assert_close(
        defaults(x, target, divisor=3.0),
        focalkit.quality_focal_loss(x, target, reduction="sum") / 3,
    )


X = torch.randn(4, 3)
Q = torch.tensor([[0.8, 0.0, 0.3]] * 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"beta": -1.0}, ValueError, r"beta must be >= 0"),
        ({"beta": "2"}, TypeError, r"beta"),
        ({"reduction": "avg"}, ValueError, r"reduction must be one of"),
        ({"target": torch.zeros(4, 2)}, ValueError, r"expected target of shape \(4, 3\)"),
        ({"target": torch.full((4, 3), -0.2)}, ValueError, r"target .*\[0, 1\]"),
        ({"target": torch.full((4, 3), 1.2)}, ValueError, r"target .*\[0, 1\]"),
    ],
    ids=repr,
)
def test_quality_focal_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    options = dict(kwargs)
    target = options.pop("target", Q)
    with pytest.raises(error, match=r"^quality_focal_loss\(\): " + match):
        focalkit.quality_focal_loss(X, target, **options)


def test_quality_focal_module_checks_its_configuration() -> None:
    with pytest.raises(ValueError, match=r"^QualityFocalLoss\(\): beta"):
        focalkit.QualityFocalLoss(beta=-1.0)
    with pytest.raises(ValueError, match=r"^QualityFocalLoss\(\): reduction"):
        focalkit.QualityFocalLoss(reduction="avg")


# ------------------------------------------------------------------- distribution focal loss

BINS = [1, 4, 16]


def _distribution_case(
    n: int, samples: int = 9, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits over the bins 0..n, and targets in [0, n]: the ends, integers and fractions."""
    generator = torch.Generator().manual_seed(seed + n)
    x = torch.randn(samples, n + 1, generator=generator, dtype=torch.float64) * 2
    target = torch.rand(samples, generator=generator, dtype=torch.float64) * n
    target[:4] = torch.tensor([0.0, float(n), float(n // 2), n - 1e-3], dtype=torch.float64)
    return x, target


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
@pytest.mark.parametrize("n", BINS)
def test_distribution_focal_against_the_oracle(n: int, weighted: bool) -> None:
    x, target = _distribution_case(n)
    weight = torch.linspace(0.5, 2.0, 9, dtype=torch.float64) if weighted else None
    for reduction in REDUCTIONS:
        value, grad = _value_and_grad(
            lambda v, r=reduction: focalkit.distribution_focal_loss(v, target, weight, r), x
        )
        _, expected_grad = _value_and_grad(
            lambda v, r=reduction: distribution_focal_reference(
                v, target, weight=weight, reduction=r
            ),
            x,
        )
        expected = distribution_focal_oracle(x, target, weight=weight, reduction=reduction)
        assert value.dtype == torch.float64
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-13)
        value32, grad32 = _value_and_grad(
            lambda v, r=reduction: focalkit.distribution_focal_loss(
                v, target.float(), None if weight is None else weight.float(), r
            ),
            x.float(),
        )
        assert value32.dtype == torch.float32
        torch.testing.assert_close(value32.double(), value, rtol=2e-5, atol=2e-6)
        torch.testing.assert_close(grad32.double(), expected_grad, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("n", BINS)
def test_distribution_focal_is_mmdetection_below_n(n: int, dtype: torch.dtype) -> None:
    x, target = _distribution_case(n, seed=1)
    target[1] = n - 0.01  # mmdetection needs a target below n
    x, target = x.to(dtype), target.to(dtype)
    weight = torch.linspace(0.5, 2.0, 9, dtype=dtype)
    for reduction, w in itertools.product(REDUCTIONS, (None, weight)):
        expected = _value_and_grad(
            lambda v, r=reduction, w=w: mmdet_weight_reduce_loss(
                mmdet_distribution_focal_loss(v, target), w, r
            ),
            x,
        )
        actual = _value_and_grad(
            lambda v, r=reduction, w=w: focalkit.distribution_focal_loss(v, target, w, r), x
        )
        for a, e in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, e, **_tolerance(dtype))


def test_distribution_focal_at_the_last_bin() -> None:
    # y = n: all the weight on bin n, CE(x, n); mmdetection would ask for bin n + 1
    n = 4
    x, _ = _distribution_case(n, seed=2)
    target = torch.full((9,), float(n), dtype=torch.float64)
    expected = _value_and_grad(
        lambda v: F.cross_entropy(v, torch.full((9,), n), reduction="none"), x
    )
    actual = _value_and_grad(
        lambda v: focalkit.distribution_focal_loss(v, target, reduction="none"), x
    )
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-14)
    with pytest.raises(IndexError):
        mmdet_distribution_focal_loss(x, target)


def test_distribution_focal_at_integer_targets_is_cross_entropy() -> None:
    n = 16
    x, _ = _distribution_case(n, samples=n + 1, seed=3)
    bins = torch.arange(n + 1)
    actual = focalkit.distribution_focal_loss(x, bins.to(torch.float64), reduction="none")
    torch.testing.assert_close(actual, F.cross_entropy(x, bins, reduction="none"))


def test_distribution_focal_module() -> None:
    x, target = _distribution_case(4, seed=4)
    module = focalkit.DistributionFocalLoss(reduction="sum")
    weight = torch.linspace(0.5, 2.0, 9, dtype=torch.float64)
    torch.testing.assert_close(
        module(x, target, weight), focalkit.distribution_focal_loss(x, target, weight, "sum")
    )
    assert "reduction='sum'" in repr(module)
    defaults = focalkit.DistributionFocalLoss()
    torch.testing.assert_close(defaults(x, target), focalkit.distribution_focal_loss(x, target))


@pytest.mark.parametrize(
    ("target", "kwargs", "error", "match"),
    [
        (torch.tensor([0.5, -0.1, 1.0]), {}, ValueError, r"target.*\[0, 4\]"),
        (torch.tensor([0.5, 4.5, 1.0]), {}, ValueError, r"target.*\[0, 4\]"),
        (torch.tensor([0.5, 1.0]), {}, ValueError, r"expected target of shape \(3,\)"),
        (torch.tensor([[0.5], [1.0], [2.0]]), {}, ValueError, r"expected target of shape \(3,\)"),
        (torch.tensor([0.5, 1.0, 2.0]), {"reduction": "avg"}, ValueError, r"reduction"),
        (torch.tensor([0.5, 1.0, 2.0]), {"weight": torch.ones(2)}, ValueError, r"weight"),
    ],
    ids=repr,
)
def test_distribution_focal_bad_arguments(
    target: torch.Tensor, kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=r"^distribution_focal_loss\(\): " + match):
        focalkit.distribution_focal_loss(torch.randn(3, 5), target, **kwargs)


def test_distribution_focal_nan_target_gives_nan_or_a_clear_error() -> None:
    # a NaN target is neither inside nor outside [0, n]: NaN out, or an error naming target,
    # never an index error from floor(NaN) nor a silent number
    x = torch.randn(3, 5)
    target = torch.tensor([0.5, float("nan"), 2.0])
    try:
        out = focalkit.distribution_focal_loss(x, target, reduction="none")
    except ValueError as error:
        message = str(error)
        if not message.startswith("distribution_focal_loss(): target"):
            raise
        return
    assert out[1].isnan()
    assert not out[[0, 2]].isnan().any()


# ------------------------------------------------------------------------ randomized tests


@st.composite
def _gfl_case(draw: st.DrawFn) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    top = draw(st.sampled_from([1.0, 10.0, 30.0, 80.0]))
    n = draw(st.integers(1, 8))
    samples = draw(st.integers(1, 6))
    shape = (samples, n + 1)
    exponent = torch.rand(shape, generator=generator, dtype=torch.float64)
    sign = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
    x = sign * 10.0 ** (-3.0 + exponent * (np.log10(top) + 3.0))
    if draw(st.integers(0, 4)) == 0:
        x.view(-1)[0] = draw(st.sampled_from([1e4, -1e4]))
    distance = torch.rand(samples, generator=generator, dtype=torch.float64) * n
    if draw(st.booleans()):
        distance = distance.round()
    score = torch.rand(shape, generator=generator, dtype=torch.float64)
    score = torch.where(torch.rand(shape, generator=generator) < 0.5, score, score.round())
    return {
        "x": x,
        "distance": distance,
        "score": score,
        "beta": draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])),
        "reduction": draw(st.sampled_from(REDUCTIONS)),
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
        "weighted": draw(st.booleans()),
    }


@settings(max_examples=50, deadline=None, derandomize=True)
@given(_gfl_case())
def test_generalized_focal_randomized(case: dict[str, Any]) -> None:
    dtype, reduction = case["dtype"], case["reduction"]
    eps = torch.finfo(dtype).eps
    x = case["x"].to(dtype)
    samples = x.shape[0]
    count = x.numel() if reduction == "sum" else 1
    # quality focal loss, per-class weights
    weight = torch.linspace(0.5, 2.0, x.shape[1], dtype=dtype) if case["weighted"] else None
    score = case["score"].to(dtype)
    out = focalkit.quality_focal_loss(x, score, weight, reduction, beta=case["beta"])
    assert out.dtype == dtype
    expected = quality_focal_oracle(
        x.double(),
        score.double(),
        beta=case["beta"],
        weight=None if weight is None else weight.double(),
        reduction=reduction,
    )
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=64 * eps, atol=32 * eps * count)
    # distribution focal loss, per-sample weights; float32 log_softmax at |x| = 1e4 is off by
    # eps |x| in each log p
    sample_weight = torch.linspace(0.5, 2.0, samples, dtype=dtype) if case["weighted"] else None
    distance = case["distance"].to(dtype)
    out = focalkit.distribution_focal_loss(x, distance, sample_weight, reduction)
    assert out.dtype == dtype
    expected = distribution_focal_oracle(
        x.double(),
        distance.double(),
        weight=None if sample_weight is None else sample_weight.double(),
        reduction=reduction,
    )
    atol = 32 * eps * (1.0 + float(x.abs().max())) * (samples if reduction == "sum" else 1)
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=64 * eps, atol=atol)
