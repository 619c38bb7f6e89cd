"""PolyLoss (Leng et al. 2022) on sigmoid probabilities: ``poly_sigmoid_focal_loss`` and
``PolySigmoidFocalLoss``.

Against the float64 oracle written from the formula ``w alpha_t [(1 - p_t)^gamma BCE +
epsilon (1 - p_t)^(gamma + 1)]`` (values; gradients from the float64 formula) over shapes, hard
and soft labels, weights, alpha, gamma and epsilon; at its parity point (``epsilon=0`` is
``sigmoid_focal_loss``, and with ``gamma=0, alpha=None`` binary cross-entropy); bad arguments and
the module. Extreme logits, NaN, half precision, compile and gradcheck are in
``test_family_common.py``.
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
from oracles import poly_sigmoid_oracle, poly_sigmoid_reference

import focalkit

pytestmark = pytest.mark.usefixtures("one_thread")

REDUCTIONS = ["none", "mean", "sum"]
SETTINGS = [(0.0, 1.0), (0.5, -1.0), (2.0, 2.5), (1.0, 0.0)]  # (gamma, epsilon)


def _value_and_grad(fn: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.detach().clone().requires_grad_()
    out = fn(leaf)
    cotangent = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, leaf, cotangent)
    return out.detach(), grad


# ------------------------------------------------------------------- poly sigmoid: the oracle

SIGMOID_SHAPES = {"1d": (7,), "2d": (5, 4), "3d": (2, 4, 3)}


def _sigmoid_case(
    shape: tuple[int, ...], soft: bool, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed + len(shape))
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 4
    target = torch.rand(shape, generator=generator, dtype=torch.float64)
    return x, target if soft else target.round()


@pytest.mark.parametrize("alpha", [0.25, None, 0.8])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("shape_name", SIGMOID_SHAPES)
def test_poly_sigmoid_against_the_oracle(
    shape_name: str, soft: bool, weighted: bool, alpha: float | None
) -> None:
    shape = SIGMOID_SHAPES[shape_name]
    x, target = _sigmoid_case(shape, soft)
    weight = torch.linspace(0.5, 2.0, shape[-1], dtype=torch.float64) if weighted else None
    for (gamma, epsilon), reduction in itertools.product(SETTINGS, REDUCTIONS):
        options = {
            "gamma": gamma,
            "epsilon": epsilon,
            "alpha": alpha,
            "weight": weight,
            "reduction": reduction,
        }
        value, grad = _value_and_grad(
            lambda v, o=options: focalkit.poly_sigmoid_focal_loss(v, target, **o), x
        )
        _, expected_grad = _value_and_grad(
            lambda v, o=options: poly_sigmoid_reference(v, target, **o), x
        )
        expected = poly_sigmoid_oracle(x, target, **options)
        assert value.dtype == torch.float64
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-13)
        # float32, against the same formula
        value32, grad32 = _value_and_grad(
            lambda v, o=options: focalkit.poly_sigmoid_focal_loss(v, target.float(), **o),
            x.float(),
        )
        assert value32.dtype == torch.float32
        torch.testing.assert_close(value32.double(), value, rtol=2e-5, atol=2e-6)
        torch.testing.assert_close(grad32.double(), expected_grad, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("alpha", [0.25, None])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_poly_sigmoid_at_epsilon_0_is_sigmoid_focal_loss(
    soft: bool, gamma: float, alpha: float | None
) -> None:
    x, target = _sigmoid_case((5, 4), soft, seed=9)
    weight = torch.linspace(0.5, 2.0, 4, dtype=torch.float64)
    for reduction in REDUCTIONS:
        options = {"gamma": gamma, "alpha": alpha, "reduction": reduction}
        actual = _value_and_grad(
            lambda v, o=options: focalkit.poly_sigmoid_focal_loss(
                v, target, weight, epsilon=0.0, **o
            ),
            x,
        )
        expected = _value_and_grad(
            lambda v, o=options: focalkit.sigmoid_focal_loss(v, target, weight, **o), x
        )
        for a, e in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-14)
    # gamma 0, no alpha, no epsilon: binary cross-entropy
    torch.testing.assert_close(
        focalkit.poly_sigmoid_focal_loss(x, target, weight, epsilon=0.0, gamma=0.0, alpha=None),
        F.binary_cross_entropy_with_logits(x, target, weight),
    )


def test_poly_sigmoid_defaults_and_divisor() -> None:
    x, target = _sigmoid_case((5, 4), soft=False, seed=10)
    expected = poly_sigmoid_oracle(x, target, epsilon=1.0, gamma=2.0, alpha=0.25)
    np.testing.assert_allclose(focalkit.poly_sigmoid_focal_loss(x, target).item(), expected)
    total = focalkit.poly_sigmoid_focal_loss(x, target, reduction="sum")
    torch.testing.assert_close(focalkit.poly_sigmoid_focal_loss(x, target, divisor=4.0), total / 4)


def test_poly_sigmoid_integer_and_bool_targets() -> None:
    x, target = _sigmoid_case((5, 4), soft=False, seed=11)
    expected = focalkit.poly_sigmoid_focal_loss(x, target, reduction="none", epsilon=-1.0)
    for kind in (torch.int64, torch.int32, torch.uint8, torch.bool):
        actual = focalkit.poly_sigmoid_focal_loss(
            x, target.to(kind), reduction="none", epsilon=-1.0
        )
        torch.testing.assert_close(actual, expected)


# ------------------------------------------------------------------------------ the modules


def test_poly_sigmoid_focal_loss_module() -> None:
    x, target = _sigmoid_case((5, 4), soft=True, seed=13)
    weight = torch.linspace(0.5, 2.0, 4, dtype=torch.float64)
    module = focalkit.PolySigmoidFocalLoss(weight, "none", epsilon=3.0, gamma=0.5, alpha=0.6)
    expected = focalkit.poly_sigmoid_focal_loss(
        x, target, weight, "none", epsilon=3.0, gamma=0.5, alpha=0.6
    )
    torch.testing.assert_close(module(x, target), expected)
    text = repr(module)
    for setting in ("epsilon=3.0", "gamma=0.5", "alpha=0.6", "reduction='none'"):
        assert setting in text
    assert "weight" in dict(module.named_buffers())
    assert focalkit.PolySigmoidFocalLoss().epsilon == 1.0


# ------------------------------------------------------------------------------- bad input

X = torch.randn(4, 3)
Y = torch.tensor([[1.0, 0.0, 1.0]] * 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"gamma": -1.0}, ValueError, r"gamma must be >= 0"),
        ({"reduction": "batchmean"}, ValueError, r"reduction must be one of"),
        ({"epsilon": "x"}, TypeError, r"epsilon must be a (finite )?real number"),
        ({"epsilon": float("nan")}, ValueError, r"epsilon"),
        ({"alpha": 1.5}, ValueError, r"alpha must be in \[0, 1\]"),
        ({"target": torch.ones(4, 2)}, ValueError, r"expected target of shape \(4, 3\)"),
        ({"target": torch.full((4, 3), 1.5)}, ValueError, r"target .*\[0, 1\]"),
    ],
    ids=repr,
)
def test_poly_sigmoid_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    options = dict(kwargs)
    target = options.pop("target", Y)
    with pytest.raises(error, match=r"^poly_sigmoid_focal_loss\(\): " + match):
        focalkit.poly_sigmoid_focal_loss(X, target, **options)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (
            lambda: focalkit.PolySigmoidFocalLoss(gamma=-1.0),
            ValueError,
            r"^PolySigmoidFocalLoss\(\): gamma",
        ),
        (
            lambda: focalkit.PolySigmoidFocalLoss(epsilon=None),
            TypeError,
            r"^PolySigmoidFocalLoss\(\): epsilon",
        ),
        (
            lambda: focalkit.PolySigmoidFocalLoss(alpha=2.0),
            ValueError,
            r"^PolySigmoidFocalLoss\(\): alpha",
        ),
    ],
)
def test_modules_check_their_configuration_at_construction(
    build: Any, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        build()


# ------------------------------------------------------------------------ randomized tests


@st.composite
def _poly_sigmoid_case(draw: st.DrawFn) -> dict[str, Any]:
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
    weight = None
    if draw(st.booleans()):
        weight = torch.rand(shape[-1:], generator=generator, dtype=torch.float64) * 2
    return {
        "x": x,
        "target": target,
        "weight": weight,
        "options": {
            "gamma": draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.5])),
            "epsilon": draw(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, 5.0])),
            "alpha": draw(st.sampled_from([None, 0.25, 0.5, 1.0])),
            "reduction": draw(st.sampled_from(REDUCTIONS)),
        },
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
    }


@settings(max_examples=50, deadline=None, derandomize=True)
@given(_poly_sigmoid_case())
def test_poly_sigmoid_randomized(case: dict[str, Any]) -> None:
    dtype, options = case["dtype"], case["options"]
    x = case["x"].to(dtype)
    weight = None if case["weight"] is None else case["weight"].to(dtype)
    target = case["target"]
    if target.is_floating_point():
        target = target.to(dtype)
    leaf = x.clone().requires_grad_()
    out = focalkit.poly_sigmoid_focal_loss(leaf, target, weight, **options)
    assert out.dtype == dtype
    y64 = target.to(torch.float64)
    w64 = None if weight is None else weight.double()
    expected = poly_sigmoid_oracle(x.double(), y64, weight=w64, **options)
    # relative in the tails; each element carries a few eps of its terms, epsilon's included
    eps = torch.finfo(dtype).eps
    scale = (1.0 if w64 is None else float(w64.max())) * (1.0 + abs(options["epsilon"]))
    atol = 16 * eps * scale * (x.numel() if options["reduction"] == "sum" else 1)
    np.testing.assert_allclose(out.detach().double().numpy(), expected, rtol=64 * eps, atol=atol)
    out.backward(torch.ones_like(out))
    assert leaf.grad is not None
    assert torch.isfinite(leaf.grad).all()
    reference_leaf = x.double().requires_grad_()
    reference = poly_sigmoid_reference(reference_leaf, y64, weight=w64, **options)
    reference.backward(torch.ones_like(reference))
    assert reference_leaf.grad is not None
    torch.testing.assert_close(
        leaf.grad.double(), reference_leaf.grad, rtol=64 * eps, atol=16 * eps * scale
    )
