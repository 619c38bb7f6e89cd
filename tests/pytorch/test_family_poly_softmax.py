"""PolyLoss (Leng et al. 2022) on softmax probabilities: ``poly_softmax_focal_loss`` and
``PolyFocalLoss``.

Against the float64 oracles written from the formula (values, and the float64 torch formula's
gradients), over every option, N-D inputs, class-index and probability targets; at their parity
points: ``epsilon=0`` is the focal loss, ``gamma=0`` with class indices is
``F.cross_entropy + epsilon (1 - p_t)`` built from torch's own loss, and with probability targets
it is optax's ``poly_loss_cross_entropy`` (run in JAX); then randomized cases, bad arguments and
the modules. Extreme logits, NaN, half precision, compile and gradcheck for every member of the
family are in ``test_family_common.py``.
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
    poly_softmax_oracle,
    poly_softmax_reference,
)

import focalkit

pytestmark = pytest.mark.usefixtures("one_thread")

REDUCTIONS = ["none", "mean", "sum"]
SHAPES = {"unbatched": (4,), "2d": (6, 4), "3d": (3, 4, 5), "4d": (2, 4, 3, 2)}
OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "weight": {"weight": [0.5, 2.0, 1.0, 1.5]},
    "ignore_index": {"ignore_index": 1},
    "label_smoothing": {"label_smoothing": 0.2},
    "alpha": {"alpha": [0.1, 0.4, 0.3, 0.2]},
    "alpha_float": {"alpha": 0.3},
    "all": {
        "weight": [0.5, 2.0, 1.0, 1.5],
        "ignore_index": 1,
        "label_smoothing": 0.15,
        "alpha": [0.1, 0.4, 0.3, 0.2],
    },
}
SETTINGS = [(0.0, 1.0), (0.5, -1.0), (2.0, 2.5), (1.0, 0.0)]  # (gamma, epsilon)


def _case(
    shape: tuple[int, ...], options: dict[str, Any], probabilities: bool, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """float64 logits spread wide, a target of the kind asked for, and the options (an ignored
    target in every third element)."""
    generator = torch.Generator().manual_seed(seed + len(shape))
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 4
    class_dim = 0 if len(shape) == 1 else 1
    kwargs = dict(options)
    if probabilities:
        kwargs.pop("ignore_index", None)
        target = torch.rand(shape, generator=generator, dtype=torch.float64).softmax(class_dim)
        return x, target, kwargs
    element_shape = shape[:class_dim] + shape[class_dim + 1 :]
    target = torch.randint(0, shape[class_dim], element_shape, generator=generator)
    if "ignore_index" in kwargs and target.dim() > 0:
        target.view(-1)[::3] = kwargs["ignore_index"]
    return x, target, kwargs


def _batched(x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (x[None], target[None]) if x.dim() == 1 else (x, target)


def _value_and_grad(fn: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.detach().clone().requires_grad_()
    out = fn(leaf)
    cotangent = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, leaf, cotangent)
    return out.detach(), grad


# ------------------------------------------------------------- poly softmax: the oracle grid


@pytest.mark.parametrize("probabilities", [False, True], ids=["index", "probability"])
@pytest.mark.parametrize(("shape_name", "option_name"), list(itertools.product(SHAPES, OPTIONS)))
def test_poly_softmax_against_the_oracle(
    shape_name: str, option_name: str, probabilities: bool
) -> None:
    x, target, kwargs = _case(SHAPES[shape_name], OPTIONS[option_name], probabilities)
    for (gamma, epsilon), reduction in itertools.product(SETTINGS, REDUCTIONS):
        options = {"gamma": gamma, "epsilon": epsilon, "reduction": reduction, **kwargs}

        def loss(v: torch.Tensor, options: dict[str, Any] = options) -> torch.Tensor:
            return focalkit.poly_softmax_focal_loss(v, target, **options)

        def reference(v: torch.Tensor, options: dict[str, Any] = options) -> torch.Tensor:
            return poly_softmax_reference(v, target, **options)

        value, grad = _value_and_grad(loss, x)
        expected_value, expected_grad = _value_and_grad(reference, x)
        bx, bt = _batched(x, target)
        oracle = poly_softmax_oracle(bx, bt, **options)
        if x.dim() == 1 and reduction == "none":
            oracle = oracle[0]
        assert value.dtype == torch.float64
        assert value.shape == expected_value.shape
        np.testing.assert_allclose(value.numpy(), oracle, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("probabilities", [False, True], ids=["index", "probability"])
@pytest.mark.parametrize("option_name", ["plain", "all"])
def test_poly_softmax_float32_against_the_oracle(option_name: str, probabilities: bool) -> None:
    x, target, kwargs = _case((8, 4, 3), OPTIONS[option_name], probabilities, seed=1)
    x32 = x.float()
    target32 = target.float() if probabilities else target
    for (gamma, epsilon), reduction in itertools.product(SETTINGS, REDUCTIONS):
        options = {"gamma": gamma, "epsilon": epsilon, "reduction": reduction, **kwargs}
        value, grad = _value_and_grad(
            lambda v, o=options: focalkit.poly_softmax_focal_loss(v, target32, **o), x32
        )
        expected_value, expected_grad = _value_and_grad(
            lambda v, o=options: poly_softmax_reference(v, target, **o), x32.double()
        )
        assert value.dtype == torch.float32
        torch.testing.assert_close(value.double(), expected_value, rtol=2e-5, atol=2e-6)
        torch.testing.assert_close(grad.double(), expected_grad, rtol=2e-5, atol=2e-6)


# --------------------------------------------------------------- poly softmax: parity points


@pytest.mark.parametrize("probabilities", [False, True], ids=["index", "probability"])
@pytest.mark.parametrize("option_name", OPTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_poly_softmax_at_epsilon_0_is_softmax_focal_loss(
    gamma: float, option_name: str, probabilities: bool
) -> None:
    x, target, kwargs = _case((3, 4, 5), OPTIONS[option_name], probabilities, seed=2)
    for reduction in REDUCTIONS:
        actual = _value_and_grad(
            lambda v, r=reduction: focalkit.poly_softmax_focal_loss(
                v, target, reduction=r, epsilon=0.0, gamma=gamma, **kwargs
            ),
            x,
        )
        expected = _value_and_grad(
            lambda v, r=reduction: focalkit.softmax_focal_loss(
                v, target, reduction=r, gamma=gamma, **kwargs
            ),
            x,
        )
        for a, e in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-14)


def _cross_entropy_plus_poly(
    x: torch.Tensor, target: torch.Tensor, epsilon: float, reduction: str, **kwargs: Any
) -> torch.Tensor:
    """Poly-1 cross-entropy from torch's own loss: ``F.cross_entropy`` plus
    ``epsilon * sum_c q_c w_c (1 - p_c)``, ``q`` the (smoothed) one-hot target, with
    ``F.cross_entropy``'s ``'mean'`` divisor (the kept targets' summed weight)."""
    ce = F.cross_entropy(x, target, reduction=reduction, **kwargs)
    num_classes = x.shape[1]
    ignore_index = kwargs.get("ignore_index", -100)
    kept = target != ignore_index
    safe = torch.where(kept, target, torch.zeros_like(target))
    q = F.one_hot(safe, num_classes).movedim(-1, 1).to(x.dtype)
    smoothing = kwargs.get("label_smoothing", 0.0)
    q = q * (1 - smoothing) + smoothing / num_classes
    weight = kwargs.get("weight")
    w = torch.ones(num_classes, dtype=x.dtype) if weight is None else weight
    w_view = w.reshape(1, -1, *([1] * (x.dim() - 2)))
    poly = (q * w_view * (1 - x.softmax(1))).sum(1) * kept
    if reduction == "none":
        return ce + epsilon * poly
    if reduction == "sum":
        return ce + epsilon * poly.sum()
    return ce + epsilon * poly.sum() / (w[safe] * kept).sum()


@pytest.mark.parametrize("epsilon", [1.0, -1.0, 2.0])
@pytest.mark.parametrize(
    ("shape_name", "option_name", "reduction"),
    list(
        itertools.product(
            ["2d", "3d", "4d"],
            ["plain", "weight", "ignore_index", "label_smoothing", "all"],
            REDUCTIONS,
        )
    ),
)
def test_poly_softmax_at_gamma_0_is_cross_entropy_plus_epsilon_one_minus_pt(
    shape_name: str, option_name: str, reduction: str, epsilon: float
) -> None:
    x, target, kwargs = _case(SHAPES[shape_name], OPTIONS[option_name], False, seed=3)
    kwargs.pop("alpha", None)  # F.cross_entropy has none
    if "weight" in kwargs:
        kwargs["weight"] = torch.tensor(kwargs["weight"], dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        options = {
            k: (v.to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()
        }
        actual = _value_and_grad(
            lambda v, o=options: focalkit.poly_softmax_focal_loss(
                v, target, reduction=reduction, epsilon=epsilon, gamma=0.0, **o
            ),
            x.to(dtype),
        )
        expected = _value_and_grad(
            lambda v, o=options: _cross_entropy_plus_poly(v, target, epsilon, reduction, **o),
            x.to(dtype),
        )
        tolerance = (
            {"rtol": 1e-10, "atol": 1e-12}
            if dtype == torch.float64
            else {"rtol": 1e-5, "atol": 1e-6}
        )
        for a, e in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, e, **tolerance)


def test_poly_softmax_probabilities_at_gamma_0_is_optax_poly_loss_cross_entropy() -> None:
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    # optax in float32 (JAX's default), one compiled function for every epsilon; focalkit in
    # float64 on the same float32 numbers, so the difference is optax's rounding
    x, target, _ = _case((4, 5, 3), {}, probabilities=True, seed=4)
    x, target = x.float().double(), target.float().double()
    logits = jax.numpy.asarray(x.movedim(1, -1).float().numpy())  # classes along the last axis
    labels = jax.numpy.asarray(target.movedim(1, -1).float().numpy())

    def optax_loss(logits: Any, labels: Any, epsilon: Any) -> Any:
        return optax.losses.poly_loss_cross_entropy(logits, labels, epsilon=epsilon)

    values = jax.jit(optax_loss)
    grads = jax.jit(jax.grad(lambda *args: optax_loss(*args).sum()))
    for epsilon in (2.0, 1.0, -1.0, 0.0):
        expected = np.asarray(values(logits, labels, epsilon), dtype=np.float64)
        expected_grad = np.moveaxis(np.asarray(grads(logits, labels, epsilon)), -1, 1)
        leaf = x.clone().requires_grad_()
        actual = focalkit.poly_softmax_focal_loss(leaf, target, reduction="none", epsilon=epsilon)
        actual.sum().backward()
        assert leaf.grad is not None
        np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=2e-6, atol=2e-6)
        np.testing.assert_allclose(leaf.grad.numpy(), expected_grad, rtol=2e-5, atol=2e-6)
        # 'mean' is the mean of optax's values over the elements
        mean = focalkit.poly_softmax_focal_loss(x, target, epsilon=epsilon)
        np.testing.assert_allclose(mean.item(), expected.mean(), rtol=2e-6)


def test_poly_softmax_defaults() -> None:
    # epsilon 1 and gamma 0: Poly-1 cross-entropy by default
    x, target, _ = _case((6, 4), {}, probabilities=False, seed=5)
    p_t = x.softmax(1).gather(1, target[:, None]).squeeze(1)
    expected = F.cross_entropy(x, target) + (1 - p_t).mean()
    torch.testing.assert_close(focalkit.poly_softmax_focal_loss(x, target), expected)


def test_poly_softmax_per_element_gamma() -> None:
    x, target, kwargs = _case((3, 4, 5), OPTIONS["all"], probabilities=False, seed=6)
    generator = torch.Generator().manual_seed(7)
    gamma = torch.rand(3, 5, generator=generator, dtype=torch.float64) * 3
    actual = focalkit.poly_softmax_focal_loss(
        x, target, reduction="none", epsilon=-1.0, gamma=gamma, **kwargs
    )
    for index in np.ndindex(3, 5):  # one element at a time, each with its gamma
        n, d = index
        expected = poly_softmax_oracle(
            x[n : n + 1, :, d],
            target[n : n + 1, d],
            epsilon=-1.0,
            gamma=float(gamma[n, d]),
            reduction="none",
            **kwargs,
        )
        np.testing.assert_allclose(actual[n, d].item(), expected[0], rtol=1e-10, atol=1e-13)


def test_poly_softmax_divisor() -> None:
    x, target, kwargs = _case((6, 4), OPTIONS["all"], probabilities=False, seed=8)
    total = focalkit.poly_softmax_focal_loss(x, target, reduction="sum", **kwargs)
    for divisor in (3.0, torch.tensor(7.5, dtype=torch.float64)):
        actual = focalkit.poly_softmax_focal_loss(x, target, divisor=divisor, **kwargs)
        torch.testing.assert_close(actual, total / divisor)


# ------------------------------------------------------------------------------ the modules


def test_poly_focal_loss_module() -> None:
    x, target, _ = _case((3, 4, 5), {}, probabilities=False, seed=12)
    weight, alpha = [0.5, 2.0, 1.0, 1.5], [0.1, 0.4, 0.3, 0.2]
    module = focalkit.PolyFocalLoss(weight, 2, "sum", 0.1, epsilon=-1.0, gamma=1.5, alpha=alpha)
    expected = focalkit.poly_softmax_focal_loss(
        x, target, weight, 2, "sum", 0.1, epsilon=-1.0, gamma=1.5, alpha=alpha
    )
    torch.testing.assert_close(module(x, target), expected)
    text = repr(module)
    for setting in (
        "epsilon=-1.0",
        "gamma=1.5",
        "reduction='sum'",
        "ignore_index=2",
        "label_smoothing=0.1",
    ):
        assert setting in text
    buffers = dict(module.named_buffers())
    assert set(buffers) >= {"weight", "alpha"}
    doubled = module.double()
    assert doubled.weight.dtype == torch.float64
    mean = focalkit.PolyFocalLoss(weight, epsilon=2.0)
    torch.testing.assert_close(
        mean(x, target, divisor=5.0),
        focalkit.poly_softmax_focal_loss(x, target, weight, reduction="sum", epsilon=2.0) / 5.0,
    )


# ------------------------------------------------------------------------------- bad input

X = torch.randn(4, 3)
T = torch.tensor([0, 1, 2, 1])
Y = torch.tensor([[1.0, 0.0, 1.0]] * 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"gamma": -0.5}, ValueError, r"gamma must be >= 0, got -0.5"),
        ({"reduction": "avg"}, ValueError, r"reduction must be one of 'none', 'mean', 'sum'"),
        ({"epsilon": "1"}, TypeError, r"epsilon must be a (finite )?real number"),
        ({"epsilon": float("nan")}, ValueError, r"epsilon"),
        ({"epsilon": float("inf")}, ValueError, r"epsilon"),
        ({"epsilon": True}, TypeError, r"epsilon must be a (finite )?real number"),
        ({"alpha": [0.5, 0.5]}, ValueError, r"alpha must have one value per class \(3 classes\)"),
        ({"weight": [1.0, 2.0]}, ValueError, r"weight must have one value per class \(3 classes\)"),
        ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must be in \[0, 1\]"),
        (
            {"target": torch.tensor([0, 1, 3, 1])},
            ValueError,
            r"target class indices must be in \[0, 3\)",
        ),
        (
            {"target": torch.tensor([0, 1, 2])},
            ValueError,
            r"expected target of shape \(4,\) for input of shape \(4, 3\), got \(3,\)",
        ),
    ],
    ids=repr,
)
def test_poly_softmax_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    options = dict(kwargs)
    target = options.pop("target", T)
    with pytest.raises(error, match=r"^poly_softmax_focal_loss\(\): " + match):
        focalkit.poly_softmax_focal_loss(X, target, **options)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: focalkit.PolyFocalLoss(gamma=-1.0), ValueError, r"^PolyFocalLoss\(\): gamma"),
        (lambda: focalkit.PolyFocalLoss(epsilon="2"), TypeError, r"^PolyFocalLoss\(\): epsilon"),
        (
            lambda: focalkit.PolyFocalLoss(reduction="avg"),
            ValueError,
            r"^PolyFocalLoss\(\): reduction",
        ),
        (
            lambda: focalkit.PolyFocalLoss(alpha=[-0.5, 1.0]),
            ValueError,
            r"^PolyFocalLoss\(\): alpha",
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
def _poly_case(draw: st.DrawFn) -> dict[str, Any]:
    num_classes = draw(st.integers(2, 5))
    rank = draw(st.sampled_from(["unbatched", "2d", "3d", "4d"]))
    extra = {"unbatched": (), "2d": (), "3d": (draw(st.integers(1, 3)),), "4d": (2, 2)}[rank]
    batch = draw(st.integers(1, 4))
    shape = (num_classes,) if rank == "unbatched" else (batch, num_classes, *extra)
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    top = draw(st.sampled_from([1.0, 10.0, 30.0, 80.0]))
    exponent = torch.rand(shape, generator=generator, dtype=torch.float64)
    sign = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
    x = sign * 10.0 ** (-3.0 + exponent * (np.log10(top) + 3.0))
    if draw(st.integers(0, 5)) == 0:
        x.view(-1)[0] = draw(st.sampled_from([1e4, -1e4]))
    case: dict[str, Any] = {
        "x": x,
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
        "gamma": draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.5])),
        "epsilon": draw(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, 5.0])),
        "reduction": draw(st.sampled_from(REDUCTIONS)),
        "label_smoothing": draw(st.sampled_from([0.0, 0.0, 0.1, 0.3])),
    }
    per_class = st.lists(
        st.sampled_from([0.0, 0.25, 1.0, 2.0]), min_size=num_classes, max_size=num_classes
    )
    if draw(st.booleans()):
        case["weight"] = draw(per_class.filter(lambda w: sum(w) > 0))
    alpha = draw(st.sampled_from(["none", "float", "per_class"]))
    if alpha == "float":
        case["alpha"] = draw(st.sampled_from([0.25, 1.0]))
    elif alpha == "per_class":
        case["alpha"] = draw(per_class)
    class_dim = 0 if rank == "unbatched" else 1
    if draw(st.booleans()):
        case["target"] = torch.rand(shape, generator=generator, dtype=torch.float64).softmax(
            class_dim
        )
    else:
        element_shape = shape[:class_dim] + shape[class_dim + 1 :]
        target = torch.randint(0, num_classes, element_shape, generator=generator)
        if draw(st.booleans()) and target.dim() > 0:
            target.view(-1)[0] = -100
        case["target"] = target.to(
            draw(st.sampled_from([torch.int64, torch.int32, torch.uint8]))
            if target.min() >= 0
            else torch.int64
        )
    return case


@settings(max_examples=60, deadline=None, derandomize=True)
@given(_poly_case())
def test_poly_softmax_randomized(case: dict[str, Any]) -> None:
    dtype = case["dtype"]
    x = case["x"].to(dtype)
    target = case["target"]
    if target.is_floating_point():
        target = target.to(dtype)
    options = {
        k: case[k] for k in ("weight", "alpha", "label_smoothing", "gamma", "epsilon") if k in case
    }
    reduction = case["reduction"]
    leaf = x.clone().requires_grad_()
    out = focalkit.poly_softmax_focal_loss(leaf, target, reduction=reduction, **options)
    assert out.dtype == dtype
    x64 = x.double()
    target64 = target.double() if target.is_floating_point() else target.long()
    bx, bt = _batched(x64, target64)
    expected = poly_softmax_oracle(bx, bt, reduction=reduction, **options)
    if x.dim() == 1 and reduction == "none":
        expected = expected[0]
    # float32: log_softmax's error is a few eps of each |log p| plus one; carried through the
    # coefficients, that is a few eps times the loss plus eps times the summed coefficients
    eps = torch.finfo(dtype).eps
    coefficients = _coefficient_scale(bx, bt, reduction, options)
    bound = 64 * eps * (np.abs(expected) + coefficients * (1.0 + abs(options["epsilon"])))
    if dtype == torch.float64:
        bound = bound + 1e-300
    actual = out.detach().double().numpy()
    undefined = np.isnan(expected)  # 'mean' over no weight: nan, as F.cross_entropy
    np.testing.assert_array_equal(np.isnan(actual), undefined)
    if undefined.any():
        return
    np.testing.assert_array_less(np.abs(actual - expected), bound + 1e-30)
    out.backward(torch.ones_like(out))
    assert leaf.grad is not None
    assert torch.isfinite(leaf.grad).all()
    reference_leaf = x64.clone().requires_grad_()
    reference = poly_softmax_reference(reference_leaf, target64, reduction=reduction, **options)
    reference.backward(torch.ones_like(reference))
    assert reference_leaf.grad is not None
    grad_bound = (
        64
        * eps
        * (reference_leaf.grad.abs() + coefficients.max() * (1.0 + abs(options["epsilon"])))
    )
    assert (leaf.grad.double() - reference_leaf.grad).abs().le(grad_bound + 1e-300).all()


def _coefficient_scale(
    x: torch.Tensor, target: torch.Tensor, reduction: str, options: dict[str, Any]
) -> Any:
    """``sum_c q_c |alpha_c w_c|`` per element, reduced like the loss: how far an error of 1 in
    every ``log p_c`` (or in every ``1 - p_c``) can move it."""
    num_classes = x.shape[1]
    a = torch.ones(num_classes, dtype=torch.float64)
    for name in ("alpha", "weight"):
        if options.get(name) is not None:
            a = a * torch.as_tensor(options[name], dtype=torch.float64).abs()
    if target.is_floating_point():
        per_element = (target * a.reshape(1, -1, *([1] * (x.dim() - 2)))).sum(1) + a.sum()
        divisor = float(per_element.numel())
    else:
        kept = target != -100
        safe = torch.where(kept, target, torch.zeros_like(target))
        per_element = (a[safe] + a.sum()) * kept
        w = options.get("weight")
        w_t = (
            torch.ones_like(per_element)
            if w is None
            else torch.as_tensor(w, dtype=torch.float64)[safe]
        )
        divisor = float((w_t * kept).sum())
    if reduction == "none":
        return per_element.numpy()
    total = float(per_element.sum())
    if reduction == "sum":
        return np.asarray(total)
    return np.asarray(total / divisor if divisor else np.inf)
