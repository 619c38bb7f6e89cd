"""Varifocal loss (Zhang et al. 2021): ``varifocal_loss`` and ``VarifocalLoss``.

Against the float64 oracle written from the paper's formula (values; gradients from the float64
formula) over shapes, weights, ``alpha`` and ``gamma``; against mmdetection's ``varifocal_loss``
with its defaults (``use_sigmoid=True, iou_weighted=True``, re-typed in ``tests/oracles.py``),
values and gradients; and against ultralytics' ``VarifocalLoss`` under the mapping the docstring
gives.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import (
    mmdet_varifocal_loss,
    ultralytics_varifocal_loss,
    varifocal_oracle,
    varifocal_reference,
)

import focalkit

pytestmark = pytest.mark.usefixtures("one_thread")

REDUCTIONS = ["none", "mean", "sum"]
SHAPES = {"1d": (9,), "2d": (6, 5), "3d": (2, 5, 3)}
SETTINGS = [
    {},  # the defaults: alpha 0.75, gamma 2
    {"alpha": 0.25, "gamma": 1.5},
    {"alpha": 1.0, "gamma": 0.0},
    {"alpha": 0.5, "gamma": 0.5},
    {"alpha": 0.0, "gamma": 3.0},
]
DEFAULTS = {"alpha": 0.75, "gamma": 2.0}


def _case(
    shape: tuple[int, ...], seed: int = 0, positives: float = 0.4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits, and IoU targets: 0 for negatives, in (0, 1] for positives (some exactly 1)."""
    generator = torch.Generator().manual_seed(seed + len(shape))
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 3 - 1
    iou = torch.rand(shape, generator=generator, dtype=torch.float64) * 0.95 + 0.05
    iou.view(-1)[::4] = 1.0
    positive = torch.rand(shape, generator=generator) < positives
    return x, torch.where(positive, iou, torch.zeros_like(iou))


def _weight(kind: str, shape: tuple[int, ...]) -> torch.Tensor | None:
    if kind == "none":
        return None
    generator = torch.Generator().manual_seed(98)
    if kind == "per_class":
        return torch.rand(shape[-1:], generator=generator, dtype=torch.float64) + 0.5
    return torch.rand(shape, generator=generator, dtype=torch.float64) + 0.25


def _value_and_grad(fn: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.detach().clone().requires_grad_()
    out = fn(leaf)
    cotangent = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, leaf, cotangent)
    return out.detach(), grad


@pytest.mark.parametrize("weight_kind", ["none", "per_class", "full"])
@pytest.mark.parametrize("shape_name", SHAPES)
def test_varifocal_against_the_oracle(shape_name: str, weight_kind: str) -> None:
    shape = SHAPES[shape_name]
    x, target = _case(shape)
    weight = _weight(weight_kind, shape)
    for setting, reduction in itertools.product(SETTINGS, REDUCTIONS):
        options = {**DEFAULTS, **setting, "reduction": reduction}
        value, grad = _value_and_grad(
            lambda v, s=setting, r=reduction: focalkit.varifocal_loss(v, target, weight, r, **s),
            x,
        )
        _, expected_grad = _value_and_grad(
            lambda v, o=options: varifocal_reference(v, target, weight=weight, **o), x
        )
        expected = varifocal_oracle(x, target, weight=weight, **options)
        assert value.dtype == torch.float64
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-13)
        value32, grad32 = _value_and_grad(
            lambda v, s=setting, r=reduction: focalkit.varifocal_loss(
                v, target.float(), None if weight is None else weight.float(), r, **s
            ),
            x.float(),
        )
        assert value32.dtype == torch.float32
        torch.testing.assert_close(value32.double(), value, rtol=2e-5, atol=2e-6)
        torch.testing.assert_close(grad32.double(), expected_grad, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("alpha", [0.6, 0.3, 0.1])
def test_float64_keeps_alpha_in_float64(alpha: float) -> None:
    # an alpha that float32 cannot hold once moved float64 results by a relative 4e-8 (the
    # negatives' factor was a tensor of the default dtype)
    x, target = _case((11, 4), seed=7)
    value, grad = _value_and_grad(
        lambda v: focalkit.varifocal_loss(v, target, reduction="none", alpha=alpha), x
    )
    expected = varifocal_oracle(x, target, alpha=alpha, reduction="none")
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-12, atol=1e-15)
    _, expected_grad = _value_and_grad(
        lambda v: varifocal_reference(v, target, alpha=alpha, reduction="none"), x
    )
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-15)


def test_varifocal_by_hand() -> None:
    # logit 0, p = 1/2: a positive of IoU q costs q log 2, a negative alpha 2^-gamma log 2
    x = torch.zeros(3, dtype=torch.float64)
    target = torch.tensor([0.6, 1.0, 0.0], dtype=torch.float64)
    out = focalkit.varifocal_loss(x, target, reduction="none", alpha=0.75, gamma=2.0)
    log2 = math.log(2.0)
    np.testing.assert_allclose(out.numpy(), [0.6 * log2, log2, 0.75 * 0.25 * log2], rtol=1e-14)
    # a positive's loss depends on neither alpha nor gamma
    other = focalkit.varifocal_loss(x, target, reduction="none", alpha=0.1, gamma=5.0)
    torch.testing.assert_close(other[:2], out[:2])


@pytest.mark.parametrize("weight_kind", ["none", "per_class", "full"])
@pytest.mark.parametrize("setting", SETTINGS, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_varifocal_is_mmdetection(
    setting: dict[str, float], weight_kind: str, dtype: torch.dtype
) -> None:
    x, target = _case((16, 8), seed=1)
    x, target = x.to(dtype), target.to(dtype)
    weight = _weight(weight_kind, (16, 8))
    weight = None if weight is None else weight.to(dtype)
    options = {**DEFAULTS, **setting}
    for reduction in REDUCTIONS:
        expected = _value_and_grad(
            lambda v, r=reduction: mmdet_varifocal_loss(v, target, weight, reduction=r, **options),
            x,
        )
        actual = _value_and_grad(
            lambda v, r=reduction: focalkit.varifocal_loss(v, target, weight, r, **setting), x
        )
        tolerance = (
            {"rtol": 1e-10, "atol": 1e-12}
            if dtype == torch.float64
            else {"rtol": 2e-5, "atol": 2e-6}
        )
        for a, e in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, e, **tolerance)
    # mmdetection's avg_factor is divisor=
    factor = 5.0
    torch.testing.assert_close(
        focalkit.varifocal_loss(x, target, weight, divisor=factor, **setting),
        mmdet_varifocal_loss(x, target, weight, avg_factor=factor, **options),
        rtol=1e-6 if dtype == torch.float32 else 1e-7,
        atol=0.0,
    )


@pytest.mark.parametrize(("alpha", "gamma"), [(0.75, 2.0), (0.25, 1.0)])
def test_varifocal_is_ultralytics_under_the_documented_mapping(alpha: float, gamma: float) -> None:
    # ultralytics' VarifocalLoss()(pred_score, gt_score, label, alpha, gamma): gt_score the IoU
    # target, label its positives; the mean over the classes, summed over the anchors. It takes
    # its BCE in float32 (pred_score.float()), so the comparison is in float32.
    x, target = _case((12, 6), seed=2)
    x, target = x.float(), target.float()
    label = (target > 0).float()
    expected = _value_and_grad(
        lambda v: ultralytics_varifocal_loss(v, target, label, alpha, gamma), x
    )
    actual = _value_and_grad(
        lambda v: (
            focalkit.varifocal_loss(v, target, reduction="none", alpha=alpha, gamma=gamma)
            .mean(1)
            .sum()
        ),
        x,
    )
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=2e-6, atol=1e-6)
    doc = focalkit.varifocal_loss.__doc__
    assert doc is not None
    assert "ultralytics" in doc


def test_varifocal_targets_of_other_dtypes() -> None:
    x, _ = _case((6, 5), seed=3)
    hard = torch.rand(6, 5, generator=torch.Generator().manual_seed(4)) < 0.3
    expected = focalkit.varifocal_loss(x, hard.to(torch.float64), reduction="none")
    for kind in (torch.float32, torch.int64, torch.bool):
        actual = focalkit.varifocal_loss(x, hard.to(kind), reduction="none")
        torch.testing.assert_close(actual, expected)


def test_varifocal_module() -> None:
    x, target = _case((6, 5), seed=5)
    weight = _weight("per_class", (6, 5))
    module = focalkit.VarifocalLoss(weight=weight, reduction="sum", alpha=0.5, gamma=1.5)
    expected = focalkit.varifocal_loss(x, target, weight, "sum", alpha=0.5, gamma=1.5)
    torch.testing.assert_close(module(x, target), expected)
    assert "weight" in dict(module.named_buffers())
    text = repr(module)
    for setting in ("alpha=0.5", "gamma=1.5", "reduction='sum'"):
        assert setting in text
    defaults = focalkit.VarifocalLoss()
    torch.testing.assert_close(defaults(x, target), focalkit.varifocal_loss(x, target))
    torch.testing.assert_close(
        defaults(x, target, divisor=3.0), focalkit.varifocal_loss(x, target, reduction="sum") / 3
    )


X = torch.randn(4, 3)
Q = torch.tensor([[0.8, 0.0, 0.0]] * 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"gamma": -1.0}, ValueError, r"gamma must be >= 0"),
        ({"alpha": -0.5}, ValueError, r"alpha"),
        ({"alpha": "0.75"}, TypeError, r"alpha"),
        ({"reduction": "avg"}, ValueError, r"reduction must be one of"),
        ({"target": torch.zeros(4, 2)}, ValueError, r"expected target of shape \(4, 3\)"),
        ({"target": torch.full((4, 3), -0.2)}, ValueError, r"target .*\[0, 1\]"),
        ({"target": torch.full((4, 3), 1.2)}, ValueError, r"target .*\[0, 1\]"),
    ],
    ids=repr,
)
def test_varifocal_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    options = dict(kwargs)
    target = options.pop("target", Q)
    with pytest.raises(error, match=r"^varifocal_loss\(\): " + match):
        focalkit.varifocal_loss(X, target, **options)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"gamma": -1.0}, ValueError),
        ({"alpha": -1.0}, ValueError),
        ({"reduction": "x"}, ValueError),
    ],
    ids=repr,
)
def test_varifocal_module_checks_its_configuration(kwargs: dict[str, Any], error: type) -> None:
    name = next(iter(kwargs))
    with pytest.raises(error, match=rf"^VarifocalLoss\(\): {name}"):
        focalkit.VarifocalLoss(**kwargs)


@st.composite
def _varifocal_case(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.sampled_from([(7,), (3, 4), (2, 3, 2)]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    top = draw(st.sampled_from([1.0, 10.0, 30.0, 80.0]))
    exponent = torch.rand(shape, generator=generator, dtype=torch.float64)
    sign = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
    x = sign * 10.0 ** (-3.0 + exponent * (np.log10(top) + 3.0))
    if draw(st.integers(0, 4)) == 0:
        x.view(-1)[0] = draw(st.sampled_from([1e4, -1e4]))
    iou = torch.rand(shape, generator=generator, dtype=torch.float64)
    target = torch.where(torch.rand(shape, generator=generator) < 0.4, iou, torch.zeros_like(iou))
    weight = None
    if draw(st.booleans()):
        weight = torch.rand(shape, generator=generator, dtype=torch.float64) * 2
    return {
        "x": x,
        "target": target,
        "weight": weight,
        "setting": {
            "alpha": draw(st.sampled_from([0.0, 0.25, 0.75, 1.0])),
            "gamma": draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0])),
        },
        "reduction": draw(st.sampled_from(REDUCTIONS)),
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
    }


@settings(max_examples=50, deadline=None, derandomize=True)
@given(_varifocal_case())
def test_varifocal_randomized(case: dict[str, Any]) -> None:
    dtype, setting, reduction = case["dtype"], case["setting"], case["reduction"]
    x = case["x"].to(dtype)
    target = case["target"].to(dtype)
    weight = None if case["weight"] is None else case["weight"].to(dtype)
    leaf = x.clone().requires_grad_()
    out = focalkit.varifocal_loss(leaf, target, weight, reduction, **setting)
    assert out.dtype == dtype
    w64 = None if weight is None else weight.double()
    expected = varifocal_oracle(
        x.double(), target.double(), weight=w64, reduction=reduction, **setting
    )
    eps = torch.finfo(dtype).eps
    atol = 16 * eps * 2.0 * (x.numel() if reduction == "sum" else 1)
    np.testing.assert_allclose(out.detach().double().numpy(), expected, rtol=64 * eps, atol=atol)
    out.backward(torch.ones_like(out))
    assert leaf.grad is not None
    reference_leaf = x.double().requires_grad_()
    reference = varifocal_reference(
        reference_leaf, target.double(), weight=w64, reduction=reduction, **setting
    )
    reference.backward(torch.ones_like(reference))
    assert reference_leaf.grad is not None
    torch.testing.assert_close(
        leaf.grad.double(), reference_leaf.grad, rtol=64 * eps, atol=32 * eps
    )
