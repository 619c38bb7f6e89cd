"""Asymmetric loss (Ridnik et al. 2021): ``asymmetric_loss`` and ``AsymmetricLoss``.

Against the float64 oracle written from the paper's formula (values; gradients from the float64
formula) over settings, shapes, hard and soft labels and weights; at its parity points
(``gamma_pos = gamma_neg = clip = 0`` is ``F.binary_cross_entropy_with_logits``; one gamma and no
clip is ``sigmoid_focal_loss(alpha=None)`` for hard labels); against timm's
``AsymmetricLossMultiLabel`` as published (``tests/oracles.py``) for hard labels where its ``eps``
clamp does not bite, and where timm differs: the clamp, the mixed power for soft labels, float16.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import asymmetric_oracle, asymmetric_reference, timm_asymmetric_loss_multilabel

import focalkit

pytestmark = pytest.mark.usefixtures("one_thread")

REDUCTIONS = ["none", "mean", "sum"]
SHAPES = {"1d": (7,), "2d": (5, 6), "3d": (2, 4, 3)}
SETTINGS = [
    {},  # the defaults: gamma_pos 0, gamma_neg 4, clip 0.05
    {"gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.05},
    {"gamma_pos": 0.0, "gamma_neg": 0.0, "clip": 0.0},
    {"gamma_pos": 2.0, "gamma_neg": 2.0, "clip": 0.0},
    {"gamma_pos": 0.5, "gamma_neg": 3.0, "clip": 0.2},
    {"gamma_pos": 1.0, "gamma_neg": 0.0, "clip": 0.1},
    {"gamma_pos": 0.0, "gamma_neg": 0.5, "clip": 0.9},
]
DEFAULTS = {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05}


def _case(
    shape: tuple[int, ...], soft: bool, seed: int = 0, scale: float = 3.0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed + len(shape))
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * scale - 1.0
    target = torch.rand(shape, generator=generator, dtype=torch.float64)
    return x, target if soft else (target < 0.3).to(torch.float64)


def _weight(kind: str, shape: tuple[int, ...]) -> torch.Tensor | None:
    if kind == "none":
        return None
    if kind == "per_class":
        return torch.linspace(0.5, 2.0, shape[-1], dtype=torch.float64)
    generator = torch.Generator().manual_seed(99)
    return torch.rand(shape, generator=generator, dtype=torch.float64) + 0.25


def _value_and_grad(fn: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.detach().clone().requires_grad_()
    out = fn(leaf)
    cotangent = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, leaf, cotangent)
    return out.detach(), grad


# --------------------------------------------------------------------------- the oracle grid


@pytest.mark.parametrize("weight_kind", ["none", "per_class", "full"])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("shape_name", SHAPES)
def test_asymmetric_against_the_oracle(shape_name: str, soft: bool, weight_kind: str) -> None:
    shape = SHAPES[shape_name]
    x, target = _case(shape, soft)
    weight = _weight(weight_kind, shape)
    for setting, reduction in itertools.product(SETTINGS, REDUCTIONS):
        options = {**setting, "reduction": reduction}
        value, grad = _value_and_grad(
            lambda v, o=options: focalkit.asymmetric_loss(v, target, weight, **o), x
        )
        _, expected_grad = _value_and_grad(
            lambda v, o=options: asymmetric_reference(
                v, target, weight=weight, **{**DEFAULTS, **o}
            ),
            x,
        )
        expected = asymmetric_oracle(x, target, weight=weight, **{**DEFAULTS, **options})
        assert value.dtype == torch.float64
        assert value.shape == (shape if reduction == "none" else ())
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-13)
        value32, grad32 = _value_and_grad(
            lambda v, o=options: focalkit.asymmetric_loss(
                v, target.float(), None if weight is None else weight.float(), **o
            ),
            x.float(),
        )
        assert value32.dtype == torch.float32
        torch.testing.assert_close(value32.double(), value, rtol=2e-5, atol=2e-6)
        torch.testing.assert_close(grad32.double(), expected_grad, rtol=2e-5, atol=2e-6)


# ---------------------------------------------------------------------------- parity points


@pytest.mark.parametrize("weight_kind", ["none", "per_class", "full"])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_no_focusing_no_clip_is_binary_cross_entropy(soft: bool, weight_kind: str) -> None:
    x, target = _case((5, 6), soft, seed=1)
    x[0, :2] = torch.tensor([60.0, -60.0])
    weight = _weight(weight_kind, (5, 6))
    for reduction, dtype in itertools.product(REDUCTIONS, (torch.float64, torch.float32)):
        w = None if weight is None else weight.to(dtype)
        y = target.to(dtype)
        actual = _value_and_grad(
            lambda v, r=reduction, w=w, y=y: focalkit.asymmetric_loss(
                v, y, w, r, gamma_pos=0.0, gamma_neg=0.0, clip=0.0
            ),
            x.to(dtype),
        )
        expected = _value_and_grad(
            lambda v, r=reduction, w=w, y=y: F.binary_cross_entropy_with_logits(
                v, y, w, reduction=r
            ),
            x.to(dtype),
        )
        tolerance = (
            {"rtol": 1e-10, "atol": 1e-12}
            if dtype == torch.float64
            else {"rtol": 1e-5, "atol": 1e-6}
        )
        for a, e in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, e, **tolerance)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.0])
def test_one_gamma_no_clip_hard_labels_is_sigmoid_focal_loss(gamma: float) -> None:
    x, target = _case((5, 6), soft=False, seed=2)
    weight = _weight("per_class", (5, 6))
    for reduction in REDUCTIONS:
        actual = _value_and_grad(
            lambda v, r=reduction: focalkit.asymmetric_loss(
                v, target, weight, r, gamma_pos=gamma, gamma_neg=gamma, clip=0.0
            ),
            x,
        )
        expected = _value_and_grad(
            lambda v, r=reduction: focalkit.sigmoid_focal_loss(
                v, target, weight, r, gamma=gamma, alpha=None
            ),
            x,
        )
        for a, e in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("clip", [0.05, 0.2, 0.5])
def test_negative_term_and_its_gradient_are_exactly_zero_where_p_is_at_most_clip(
    clip: float,
) -> None:
    edge = math.log(clip / (1 - clip))  # sigmoid(edge) = clip
    x = torch.tensor([edge - 10.0, edge - 1.0, edge - 1e-3, -1e4], dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        leaf = x.to(dtype).detach().clone().requires_grad_()
        out = focalkit.asymmetric_loss(
            leaf, torch.zeros(4, dtype=dtype), reduction="none", gamma_neg=2.0, clip=clip
        )
        out.sum().backward()
        assert leaf.grad is not None
        assert torch.equal(out.detach(), torch.zeros(4, dtype=dtype))
        assert torch.equal(leaf.grad, torch.zeros(4, dtype=dtype))
    # just above clip it is not 0, and it grows with p
    above = torch.tensor([edge + 0.5, edge + 2.0], dtype=torch.float64)
    out = focalkit.asymmetric_loss(above, torch.zeros(2), reduction="none", clip=clip)
    assert (out > 0).all()
    assert out[1] > out[0]


def test_soft_labels_are_linear_in_the_target() -> None:
    x, target = _case((5, 6), soft=True, seed=3)
    for setting in SETTINGS:
        soft = focalkit.asymmetric_loss(x, target, reduction="none", **setting)
        positive = focalkit.asymmetric_loss(x, torch.ones_like(x), reduction="none", **setting)
        negative = focalkit.asymmetric_loss(x, torch.zeros_like(x), reduction="none", **setting)
        torch.testing.assert_close(soft, target * positive + (1 - target) * negative)


# --------------------------------------------------------------------------------- timm


@pytest.mark.parametrize(
    "setting",
    [
        {"gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.05},  # timm's defaults
        {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05},  # the paper's recommendation
        {"gamma_pos": 0.0, "gamma_neg": 2.0, "clip": 0.2},
        {"gamma_pos": 2.0, "gamma_neg": 2.0, "clip": 0.0},
        {"gamma_pos": 0.0, "gamma_neg": 0.0, "clip": 0.0},
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_hard_labels_are_timm_where_its_clamp_does_not_bite(
    setting: dict[str, float], dtype: torch.dtype
) -> None:
    # |x| <= 12: p and 1 - p + clip stay far above timm's eps = 1e-8
    x, target = _case((8, 10), soft=False, seed=4, scale=4.0)
    x = x.clamp(-12.0, 12.0).to(dtype)
    target = target.to(dtype)
    timm_args = (setting["gamma_neg"], setting["gamma_pos"], setting["clip"])
    expected = _value_and_grad(lambda v: timm_asymmetric_loss_multilabel(v, target, *timm_args), x)
    actual = _value_and_grad(
        lambda v: focalkit.asymmetric_loss(v, target, reduction="sum", **setting), x
    )
    tolerance = (
        {"rtol": 1e-10, "atol": 1e-12}
        if dtype == torch.float64
        else {
            "rtol": 2e-5,
            "atol": 2e-5,
        }
    )
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, **tolerance)


def test_where_timm_clamps_at_eps_the_loss_keeps_its_slope() -> None:
    # a positive at logit -30: p = 9.4e-14 < eps = 1e-8. timm's loss is stuck at -log(1e-8) with
    # no gradient; the asymmetric loss is -log sigmoid(-30) ~ 30 with slope ~ -1.
    x = torch.tensor([[-30.0, 2.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    timm = timm_asymmetric_loss_multilabel(x, target, 4.0, 0.0, 0.05)
    (timm_grad,) = torch.autograd.grad(timm, x)
    ours = focalkit.asymmetric_loss(x, target, reduction="none")
    (ours_grad,) = torch.autograd.grad(ours.sum(), x)
    negative = float(asymmetric_oracle([2.0], [0.0], reduction="sum"))
    assert timm.item() == pytest.approx(-math.log(1e-8) + negative, rel=1e-6)
    assert timm_grad[0, 0] == 0.0
    np.testing.assert_allclose(
        ours.detach().numpy(), asymmetric_oracle(x.detach(), target, reduction="none"), rtol=1e-12
    )
    assert ours[0, 0].item() == pytest.approx(30.0, rel=1e-12)
    assert ours_grad[0, 0].item() == pytest.approx(-1.0, rel=1e-12)


def test_soft_labels_differ_from_timms_mixed_power() -> None:
    # timm raises 1 - p_t to gamma_pos y + gamma_neg (1 - y): for y strictly between 0 and 1
    # that is neither of the paper's two terms; the asymmetric loss mixes the two terms.
    x = torch.tensor([[0.5, 1.5, -0.5]], dtype=torch.float64)
    target = torch.tensor([[0.3, 0.7, 0.5]], dtype=torch.float64)
    setting = {"gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.05}
    timm = timm_asymmetric_loss_multilabel(x, target, 4.0, 1.0, 0.05)
    ours = focalkit.asymmetric_loss(x, target, reduction="sum", **setting)
    np.testing.assert_allclose(
        ours.item(), asymmetric_oracle(x, target, reduction="sum", **setting), rtol=1e-12
    )
    assert abs(ours.item() - timm.item()) > 0.05


def test_float16_is_finite_where_timm_gives_inf_and_nan() -> None:
    x = torch.tensor([[-30.0, 30.0, 0.5, -4.0]], dtype=torch.float16)
    target = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float16)
    timm_leaf = x.clone().requires_grad_()
    timm = timm_asymmetric_loss_multilabel(timm_leaf, target, 4.0, 0.0, 0.0)
    timm.backward()
    assert timm_leaf.grad is not None
    assert not torch.isfinite(timm) or not torch.isfinite(timm_leaf.grad).all()
    leaf = x.clone().requires_grad_()
    ours = focalkit.asymmetric_loss(leaf, target, reduction="sum", clip=0.0)
    ours.backward()
    assert ours.dtype == torch.float16
    assert leaf.grad is not None
    assert torch.isfinite(ours)
    assert torch.isfinite(leaf.grad).all()
    expected = asymmetric_oracle(x.double(), target.double(), clip=0.0, reduction="sum")
    np.testing.assert_allclose(ours.double().item(), expected, rtol=2e-3)


def test_functional_transforms() -> None:
    # timm multiplies its loss in place; the asymmetric loss works under torch.func as well
    x, target = _case((4, 5), soft=True, seed=5)

    def loss(v: torch.Tensor) -> torch.Tensor:
        return focalkit.asymmetric_loss(v, target, reduction="sum", gamma_pos=1.0)

    leaf = x.clone().requires_grad_()
    loss(leaf).backward()
    torch.testing.assert_close(torch.func.grad(loss)(x), leaf.grad)
    rows = torch.func.vmap(
        lambda v, y: focalkit.asymmetric_loss(v, y, reduction="sum", gamma_pos=1.0)
    )(x, target)
    expected = focalkit.asymmetric_loss(x, target, reduction="none", gamma_pos=1.0).sum(1)
    torch.testing.assert_close(rows, expected)


# ----------------------------------------------------------------------- module and errors


def test_asymmetric_loss_module() -> None:
    x, target = _case((5, 6), soft=True, seed=6)
    weight = _weight("per_class", (5, 6))
    module = focalkit.AsymmetricLoss(weight, "sum", gamma_pos=1.0, gamma_neg=3.0, clip=0.1)
    expected = focalkit.asymmetric_loss(
        x, target, weight, "sum", gamma_pos=1.0, gamma_neg=3.0, clip=0.1
    )
    torch.testing.assert_close(module(x, target), expected)
    assert "weight" in dict(module.named_buffers())
    text = repr(module)
    for setting in ("gamma_pos=1.0", "gamma_neg=3.0", "clip=0.1", "reduction='sum'"):
        assert setting in text
    defaults = focalkit.AsymmetricLoss()
    torch.testing.assert_close(defaults(x, target), focalkit.asymmetric_loss(x, target))
    torch.testing.assert_close(
        defaults(x, target, divisor=4.0),
        focalkit.asymmetric_loss(x, target, reduction="sum") / 4.0,
    )


X = torch.randn(4, 3)
Y = torch.tensor([[1.0, 0.0, 1.0]] * 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"gamma_pos": -0.5}, ValueError, r"gamma_pos must be >= 0, got -0.5"),
        ({"gamma_neg": -1.0}, ValueError, r"gamma_neg must be >= 0, got -1.0"),
        ({"clip": -0.1}, ValueError, r"clip"),
        ({"clip": 1.0}, ValueError, r"clip"),
        ({"clip": 1.5}, ValueError, r"clip"),
        ({"clip": float("nan")}, ValueError, r"clip"),
        ({"gamma_neg": "4"}, TypeError, r"gamma_neg must be a real number"),
        ({"reduction": "batchmean"}, ValueError, r"reduction must be one of 'none', 'mean'"),
        ({"target": torch.ones(4, 2)}, ValueError, r"expected target of shape \(4, 3\)"),
        ({"target": torch.full((4, 3), 1.5)}, ValueError, r"target .*\[0, 1\]"),
        ({"weight": torch.ones(2)}, (ValueError, RuntimeError), r"weight"),
    ],
    ids=repr,
)
def test_asymmetric_bad_arguments(kwargs: dict[str, Any], error: Any, match: str) -> None:
    options = dict(kwargs)
    target = options.pop("target", Y)
    with pytest.raises(error, match=r"^asymmetric_loss\(\): " + match):
        focalkit.asymmetric_loss(X, target, **options)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"gamma_pos": -1.0}, ValueError),
        ({"gamma_neg": -1.0}, ValueError),
        ({"clip": 1.0}, ValueError),
        ({"clip": -0.5}, ValueError),
        ({"reduction": "avg"}, ValueError),
    ],
    ids=repr,
)
def test_asymmetric_module_checks_its_configuration(kwargs: dict[str, Any], error: type) -> None:
    name = next(iter(kwargs))
    with pytest.raises(error, match=rf"^AsymmetricLoss\(\): {name}"):
        focalkit.AsymmetricLoss(**kwargs)


# ------------------------------------------------------------------------ randomized tests


@st.composite
def _asymmetric_case(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.sampled_from([(5,), (3, 4), (2, 3, 2)]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    top = draw(st.sampled_from([1.0, 10.0, 30.0, 80.0]))
    exponent = torch.rand(shape, generator=generator, dtype=torch.float64)
    sign = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
    x = sign * 10.0 ** (-3.0 + exponent * (np.log10(top) + 3.0))
    if draw(st.integers(0, 4)) == 0:
        x.view(-1)[0] = draw(st.sampled_from([1e4, -1e4]))
    kind = draw(st.sampled_from(["float hard", "float soft", "int", "bool"]))
    labels = torch.rand(shape, generator=generator, dtype=torch.float64)
    target: torch.Tensor = labels if kind == "float soft" else (labels < 0.4).to(torch.float64)
    if kind == "int":
        target = target.to(draw(st.sampled_from([torch.int64, torch.int32, torch.uint8])))
    elif kind == "bool":
        target = target.bool()
    options = {
        "gamma_pos": draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])),
        "gamma_neg": draw(st.sampled_from([0.0, 1.0, 2.0, 4.0, 6.0])),
        "clip": draw(st.sampled_from([0.0, 0.01, 0.05, 0.3])),
        "reduction": draw(st.sampled_from(REDUCTIONS)),
    }
    weight = None
    if draw(st.booleans()):
        weight = torch.rand(shape[-1:], generator=generator, dtype=torch.float64) * 2
    return {
        "x": x,
        "target": target,
        "weight": weight,
        "options": options,
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
    }


@settings(max_examples=60, deadline=None, derandomize=True)
@given(_asymmetric_case())
def test_asymmetric_randomized(case: dict[str, Any]) -> None:
    dtype, options = case["dtype"], case["options"]
    x = case["x"].to(dtype)
    weight = None if case["weight"] is None else case["weight"].to(dtype)
    target = case["target"]
    if target.is_floating_point():
        target = target.to(dtype)
    leaf = x.clone().requires_grad_()
    out = focalkit.asymmetric_loss(leaf, target, weight, **options)
    assert out.dtype == dtype
    y64 = target.to(torch.float64)
    w64 = None if weight is None else weight.double()
    expected = asymmetric_oracle(x.double(), y64, weight=w64, **options)
    # relative in the tails; each element's loss carries a few eps of its log terms
    eps = torch.finfo(dtype).eps
    scale = 1.0 if w64 is None else float(w64.max())
    atol = 16 * eps * scale * (x.numel() if options["reduction"] == "sum" else 1)
    np.testing.assert_allclose(out.detach().double().numpy(), expected, rtol=64 * eps, atol=atol)
    out.backward(torch.ones_like(out))
    assert leaf.grad is not None
    assert torch.isfinite(leaf.grad).all()
    reference_leaf = x.double().requires_grad_()
    reference = asymmetric_reference(reference_leaf, y64, weight=w64, **options)
    reference.backward(torch.ones_like(reference))
    assert reference_leaf.grad is not None
    torch.testing.assert_close(
        leaf.grad.double(), reference_leaf.grad, rtol=64 * eps, atol=16 * eps * scale
    )
