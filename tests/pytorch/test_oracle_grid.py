"""Every PyTorch loss against the float64 oracles over the option grid, values and gradients.

The values come from the element-by-element oracles of ``tests/oracles.py``, the gradients from
autograd through their float64 torch formulas, and at ``gamma=0`` from torch's own losses. The grid
runs over reductions, ``weight``, ``ignore_index`` (absent, present, everything ignored),
``label_smoothing``, ``alpha`` (None, a float, one per class), gamma in {0, 0.5, 1, 2, 3.7} and
one gamma per element, ``pos_weight``, every integer target dtype, float and bool binary targets,
probability targets, unbatched, 2-D to 4-D, transposed, sliced and channels-last inputs, and logits
whose magnitudes run from 1e-3 to 80 (and 1e4).

Tolerances are relative to the float64 value, so the tails count as much as the middle; where a
kernel takes ``log p`` from ``log_softmax`` (or a log of a given probability), the error that
``F.cross_entropy`` itself carries, a few ``eps`` in each ``log p``, is allowed through the focal
factor (:func:`oracles.softmax_focal_error_scale`). Below the dtype's smallest normal numbers only
an absolute floor applies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from oracles import (
    binary_focal_oracle,
    binary_focal_reference,
    nll_focal_reference,
    sigmoid_focal_oracle,
    sigmoid_focal_reference,
    softmax_focal_error_scale,
    softmax_focal_oracle,
    softmax_focal_prob_oracle,
    softmax_focal_reference,
)

import focalkit

# Every tensor here is tiny: one intra-op thread (tests/conftest.py), not a pool, runs them.
pytestmark = pytest.mark.usefixtures("one_thread")


REDUCTIONS = ["none", "mean", "sum"]
GAMMAS = [0.0, 0.5, 1.0, 2.0, 3.7]
INDEX_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
HALF_DTYPES = [torch.float16, torch.bfloat16]

# Relative tolerance per dtype: float32 and float64 at what torch's own losses achieve; half
# precision computes in float32 and rounds the result, half an ulp of the dtype and some.
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1.5e-3, torch.bfloat16: 1e-2}
# Below this, only absolute agreement is asked: intermediate products go subnormal.
FLOOR = {torch.float64: 1e-290, torch.float32: 1e-30, torch.float16: 1e-6, torch.bfloat16: 1e-30}
# How many eps of error in each ``log p`` a kernel may carry, as ``log_softmax`` does.
LOG_EPS = 4.0


def eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(torch.float32 if dtype in HALF_DTYPES else dtype).eps)


def assert_within(actual: torch.Tensor, expected: Any, bound: Any, what: str) -> None:
    """``|actual - expected| <= bound`` element by element, ``nan`` exactly where expected."""
    got = actual.detach().to(torch.float64).cpu().numpy()
    want = np.broadcast_to(np.asarray(expected, dtype=np.float64), got.shape)
    limit = np.broadcast_to(np.asarray(bound, dtype=np.float64), got.shape)
    assert got.shape == np.shape(expected), f"{what}: shape {got.shape} != {np.shape(expected)}"
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    assert (nan_got == nan_want).all(), f"{what}: nan at {np.argwhere(nan_got != nan_want)[:5]}"
    with np.errstate(invalid="ignore"):
        error = np.where(nan_want, 0.0, np.abs(got - want))
        bad = ~(error <= np.where(nan_want, 0.0, limit))
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {got.size} outside the tolerance; first at {where}: "
            f"focalkit {got[where]!r}, float64 {want[where]!r}, allowed error {limit[where]:.3g}"
        )


# ------------------------------------------------------------------------------- inputs


def spread_logits(shape: tuple[int, ...], seed: int, top: float = 80.0) -> torch.Tensor:
    """float64 logits whose magnitudes are log-uniform in [1e-3, top], with random signs."""
    generator = torch.Generator().manual_seed(seed)
    exponent = torch.rand(shape, generator=generator, dtype=torch.float64)
    magnitude = 10.0 ** (-3.0 + exponent * (math.log10(top) + 3.0))
    sign = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
    return magnitude * sign


def layout(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` with the same values in another memory layout (differentiably): ``transposed``,
    ``sliced``, ``channels_last`` (4-D) or, for any other name, ``x`` itself."""
    if name == "transposed":  # a permuted view of a (N, d1, ..., C) tensor
        return x.movedim(1, -1).contiguous().movedim(-1, 1)
    if name == "sliced":  # every second element of a tensor twice as long in the last dim
        doubled = torch.stack([x, torch.full_like(x, 7.0)], dim=-1).flatten(-2)
        return doubled[..., ::2]
    if name == "channels_last" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


SHAPES = {
    "unbatched": (5,),
    "2d": (6, 5),
    "3d": (3, 5, 4),
    "4d": (2, 5, 3, 2),
    "transposed": (3, 5, 4),
    "sliced": (2, 5, 3, 2),
    "channels_last": (2, 5, 3, 2),
}


def index_target(
    shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.int64, ignore: int | None = None
) -> torch.Tensor:
    """Class indices for logits of ``shape``; every other one ``ignore`` if given."""
    num_classes = shape[0] if len(shape) == 1 else shape[1]
    element_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, element_shape, generator=generator)
    if ignore is not None and target.numel() > 1:
        target.view(-1)[::2] = ignore
    return target.to(dtype)


# ------------------------------------------------------------------------- the checks


def _batched(x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dim() == 1:
        return x.unsqueeze(0), target.unsqueeze(0)
    return x, target


def _mean_divisor(x: torch.Tensor, target: torch.Tensor, weight: Any, ignore_index: int) -> float:
    x, target = _batched(x, target)
    if target.is_floating_point():
        return float(target[:, 0].numel())
    index = target.to(torch.int64)
    kept = index != ignore_index
    w = torch.ones(x.shape[1]) if weight is None else torch.as_tensor(weight, dtype=torch.float64)
    return float(w.to(torch.float64)[torch.where(kept, index, 0)][kept].sum())


def check_softmax(
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    reduction: str,
    gamma: float | torch.Tensor,
    alpha: Any = None,
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    loss: Callable[..., torch.Tensor] | None = None,
    memory: str = "contiguous",
) -> None:
    """``softmax_focal_loss`` (or ``loss``, same arguments) against the oracle and the formula,
    the input laid out in ``memory`` (see :func:`layout`)."""
    dtype = x.dtype
    leaf = x.detach().clone().requires_grad_()
    view = layout(leaf, memory)
    call = loss or focalkit.softmax_focal_loss
    out = call(
        view,
        target,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        gamma=gamma,
        alpha=alpha,
    )
    assert out.dtype == dtype
    x64 = x.detach().to(torch.float64)
    options: dict[str, Any] = {"gamma": gamma, "alpha": alpha, "weight": weight}
    options["label_smoothing"] = label_smoothing
    bx, bt = _batched(x64, target)
    element_shape = (bx.shape[0], *bx.shape[2:])
    bgamma = gamma.reshape(element_shape) if isinstance(gamma, torch.Tensor) else gamma
    batched_options = {**options, "gamma": bgamma}
    if target.is_floating_point():
        expected = softmax_focal_prob_oracle(bx, bt, reduction=reduction, **batched_options)
    else:
        expected = softmax_focal_oracle(
            bx, bt, reduction=reduction, ignore_index=ignore_index, **batched_options
        )
    if x.dim() == 1 and reduction == "none":
        expected = expected[0]
    scale = softmax_focal_error_scale(
        x64, target, reduction=reduction, ignore_index=ignore_index, **options
    ).numpy()
    rtol, floor = RTOL[dtype], FLOOR[dtype]
    bound = rtol * np.abs(expected) + LOG_EPS * eps(dtype) * scale + floor
    assert_within(out, expected, bound, "softmax value")

    upstream = torch.ones_like(out)
    out.backward(upstream)
    reference_leaf = x64.clone().requires_grad_()
    reference = softmax_focal_reference(
        reference_leaf, target, reduction=reduction, ignore_index=ignore_index, **options
    )
    reference.backward(upstream.to(torch.float64))
    assert reference_leaf.grad is not None
    assert leaf.grad is not None
    expected_grad = reference_leaf.grad.numpy()
    per_element = softmax_focal_error_scale(
        x64, target, reduction="none", ignore_index=ignore_index, **options
    )
    if reduction == "mean":
        divisor = _mean_divisor(x64, target, weight, ignore_index)
        per_element = per_element / divisor if divisor else torch.zeros_like(per_element)
    grad_scale = per_element.unsqueeze(0 if x.dim() == 1 else 1).expand_as(x64).numpy()
    grad_bound = rtol * np.abs(expected_grad) + 4 * LOG_EPS * eps(dtype) * grad_scale + floor
    assert leaf.grad.dtype == dtype
    assert_within(leaf.grad, expected_grad, grad_bound, "softmax gradient")


# -------------------------------------------------------------------- softmax, the grid

SOFTMAX_OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "weight": {"weight": [0.5, 2.0, 1.0, 0.25, 3.0]},
    "ignore_index": {"ignore_index": 1},
    "label_smoothing": {"label_smoothing": 0.2},
    "alpha_float": {"alpha": 0.25},
    "alpha_per_class": {"alpha": [0.1, 0.4, 1.0, 2.0, 0.3]},
    "alpha_tensor": {"alpha": torch.tensor([0.3, 0.2, 0.5, 1.5, 0.0])},
    "everything": {
        "weight": torch.tensor([0.5, 2.0, 1.0, 0.25, 3.0]),
        "ignore_index": 3,
        "label_smoothing": 0.15,
        "alpha": [0.1, 0.4, 1.0, 2.0, 0.3],
    },
}


def _element_gamma(shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(17)
    return torch.rand(shape, generator=generator, dtype=torch.float64) * 4.0


@pytest.mark.parametrize("gamma", [*GAMMAS, "per_element"])
@pytest.mark.parametrize("option", SOFTMAX_OPTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_softmax_option_grid(option: str, gamma: float | str, dtype: torch.dtype) -> None:
    options = dict(SOFTMAX_OPTIONS[option])
    shape = (4, 5, 3)
    x = spread_logits(shape, seed=len(option) + 7 * len(str(gamma)))
    ignore = options.get("ignore_index")
    target = index_target(shape, seed=5, ignore=ignore)
    g = _element_gamma((4, 3)) if gamma == "per_element" else float(gamma)
    for reduction in REDUCTIONS:
        check_softmax(x.to(dtype), target, reduction=reduction, gamma=g, **options)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, "per_element"])
@pytest.mark.parametrize("option", ["plain", "weight", "label_smoothing", "alpha_per_class"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_softmax_probability_targets(option: str, gamma: float | str, dtype: torch.dtype) -> None:
    shape = (4, 5, 3)
    x = spread_logits(shape, seed=8)
    generator = torch.Generator().manual_seed(9)
    target = torch.softmax(torch.randn(shape, generator=generator) * 3, dim=1).to(dtype)
    target[0, :, 0] = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])  # a hard row, zeros included
    g = _element_gamma((4, 3)) if gamma == "per_element" else float(gamma)
    for reduction in REDUCTIONS:
        check_softmax(x.to(dtype), target, reduction=reduction, gamma=g, **SOFTMAX_OPTIONS[option])


@pytest.mark.parametrize("target_dtype", INDEX_DTYPES, ids=str)
@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_softmax_layouts_and_target_dtypes(
    name: str, target_dtype: torch.dtype, dtype: torch.dtype
) -> None:
    shape = SHAPES[name]
    x = spread_logits(shape, seed=len(name)).to(dtype)
    for ignore_index, reduction in ((None, "mean"), (2, "none"), (4, "sum")):
        target = index_target(shape, seed=3, dtype=target_dtype, ignore=ignore_index)
        options = dict(SOFTMAX_OPTIONS["everything"])
        options["ignore_index"] = -100 if ignore_index is None else ignore_index
        check_softmax(x, target, reduction=reduction, gamma=2.0, memory=name, **options)


@pytest.mark.parametrize("target_dtype", INDEX_DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_softmax_every_target_ignored(target_dtype: torch.dtype, reduction: str) -> None:
    x = spread_logits((4, 5), seed=1).float()
    target = torch.full((4,), 3, dtype=target_dtype)
    for options in ({}, {"label_smoothing": 0.1, "weight": [1.0, 2.0, 3.0, 4.0, 5.0]}):
        check_softmax(x, target, reduction=reduction, gamma=2.0, ignore_index=3, **options)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_softmax_zero_weight_on_every_kept_target(reduction: str, label_smoothing: float) -> None:
    # F.cross_entropy: the 'mean' of a zero total weight is nan, with zero gradients, label
    # smoothing or not (the smoothing terms of the other classes have weight)
    x = spread_logits((4, 3), seed=2).float()
    target = torch.tensor([0, 1, 0, 1])
    weight = [0.0, 1.0, 2.0]
    for gamma in (0.0, 2.0):
        options = {"weight": weight, "ignore_index": 1, "label_smoothing": label_smoothing}
        check_softmax(x, target, reduction=reduction, gamma=gamma, **options)
    expected = F.cross_entropy(
        x,
        target,
        torch.tensor(weight),
        ignore_index=1,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    actual = focalkit.softmax_focal_loss(x, target, reduction=reduction, gamma=0.0, **options)
    torch.testing.assert_close(actual, expected, equal_nan=True)


def test_uint8_targets_are_classes_not_ignore_index() -> None:
    # -100 is 156 as a uint8: class 156 must still count
    x = spread_logits((4, 200), seed=4, top=10.0).float()
    target = torch.tensor([3, 156, 10, 199], dtype=torch.uint8)
    for reduction in REDUCTIONS:
        check_softmax(x, target, reduction=reduction, gamma=0.0)
        check_softmax(x, target, reduction=reduction, gamma=2.0, alpha=0.5)
    expected = F.cross_entropy(x, target.long())
    torch.testing.assert_close(focalkit.softmax_focal_loss(x, target, gamma=0.0), expected)


# -------------------------------------------------------------------- softmax, gamma = 0


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize(
    "option", ["plain", "weight", "ignore_index", "label_smoothing", "everything"]
)
def test_softmax_gamma0_is_cross_entropy(name: str, option: str, reduction: str) -> None:
    shape = SHAPES[name]
    options = dict(SOFTMAX_OPTIONS[option])
    options.pop("alpha", None)
    x = spread_logits(shape, seed=11, top=30.0).float()
    target = index_target(shape, seed=6, ignore=options.get("ignore_index"))
    weight = options.pop("weight", None)
    weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
    leaf, twin = x.clone().requires_grad_(), x.clone().requires_grad_()
    actual = focalkit.softmax_focal_loss(
        layout(leaf, name), target, weight, reduction=reduction, gamma=0.0, **options
    )
    expected = F.cross_entropy(layout(twin, name), target, weight, reduction=reduction, **options)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    actual.backward(torch.ones_like(actual))
    expected.backward(torch.ones_like(expected))
    torch.testing.assert_close(leaf.grad, twin.grad, rtol=1e-5, atol=1e-7)


# -------------------------------------------------------------------------------- NLL


def check_nll(
    log_probs: torch.Tensor,
    target: torch.Tensor,
    *,
    reduction: str,
    gamma: float,
    alpha: Any = None,
    weight: Any = None,
    ignore_index: int = -100,
    memory: str = "contiguous",
) -> None:
    """``nll_focal_loss`` against the float64 formula, values and gradients."""
    dtype = log_probs.dtype
    leaf = log_probs.detach().clone().requires_grad_()
    out = focalkit.nll_focal_loss(
        layout(leaf, memory), target, weight, ignore_index, reduction, gamma=gamma, alpha=alpha
    )
    assert out.dtype == dtype
    options = {"gamma": gamma, "alpha": alpha, "weight": weight, "ignore_index": ignore_index}
    reference_leaf = log_probs.detach().to(torch.float64).requires_grad_()
    reference = nll_focal_reference(reference_leaf, target, reduction=reduction, **options)
    rtol, floor = RTOL[dtype], FLOOR[dtype]
    assert_within(out, reference.detach(), rtol * reference.detach().abs() + floor, "nll value")
    out.backward(torch.ones_like(out))
    reference.backward(torch.ones_like(reference))
    assert leaf.grad is not None
    assert reference_leaf.grad is not None
    expected_grad = reference_leaf.grad
    bound = rtol * expected_grad.abs() + floor
    assert_within(leaf.grad, expected_grad, bound, "nll gradient")


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize(
    "option", ["plain", "weight", "ignore_index", "alpha_float", "alpha_per_class", "everything"]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_nll_option_grid(option: str, gamma: float, dtype: torch.dtype) -> None:
    options = dict(SOFTMAX_OPTIONS[option])
    options.pop("label_smoothing", None)
    shape = (4, 5, 3)
    log_probs = spread_logits(shape, seed=13).log_softmax(1)
    target = index_target(shape, seed=7, ignore=options.get("ignore_index"))
    for reduction in REDUCTIONS:
        check_nll(log_probs.to(dtype), target, reduction=reduction, gamma=gamma, **options)
    # in float64, the value is the softmax oracle's on the logits behind the log-probabilities
    out = focalkit.nll_focal_loss(log_probs, target, reduction="none", gamma=gamma, **options)
    expected = softmax_focal_oracle(log_probs, target, reduction="none", gamma=gamma, **options)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("target_dtype", INDEX_DTYPES, ids=str)
@pytest.mark.parametrize("name", SHAPES)
def test_nll_layouts_and_target_dtypes(name: str, target_dtype: torch.dtype) -> None:
    shape = SHAPES[name]
    log_probs = spread_logits(shape, seed=5).log_softmax(-1 if len(shape) == 1 else 1).float()
    for ignore_index, reduction in ((None, "mean"), (2, "sum")):
        target = index_target(shape, seed=3, dtype=target_dtype, ignore=ignore_index)
        index = -100 if ignore_index is None else ignore_index
        check_nll(
            log_probs,
            target,
            reduction=reduction,
            gamma=0.5,
            weight=[0.5, 2.0, 1.0, 0.25, 3.0],
            ignore_index=index,
            alpha=0.25,
            memory=name,
        )
        actual = focalkit.nll_focal_loss(log_probs, target, None, index, reduction, gamma=0.0)
        expected = F.nll_loss(
            *_batched(log_probs, target.long()), ignore_index=index, reduction=reduction
        )
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ sigmoid and binary


def check_elementwise(
    name: str,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    reduction: str,
    gamma: float | torch.Tensor,
    alpha: Any,
    weight: Any = None,
    pos_weight: Any = None,
    loss: Callable[..., torch.Tensor] | None = None,
    memory: str = "contiguous",
) -> None:
    """``sigmoid_focal_loss`` (logits) or ``binary_focal_loss`` (probabilities) against the
    oracle's value and the float64 formula's gradient."""
    dtype = x.dtype
    leaf = x.detach().clone().requires_grad_()
    view = layout(leaf, memory)
    x64 = x.detach().to(torch.float64)
    options: dict[str, Any] = {"gamma": gamma, "alpha": alpha, "weight": weight}
    if name == "sigmoid":
        call = loss or focalkit.sigmoid_focal_loss
        out = call(view, target, weight, reduction, pos_weight, gamma=gamma, alpha=alpha)
        expected = sigmoid_focal_oracle(
            x64, target, reduction=reduction, pos_weight=pos_weight, **options
        )
        reference_fn: Callable[..., torch.Tensor] = sigmoid_focal_reference
        options["pos_weight"] = pos_weight
    else:
        call = loss or focalkit.binary_focal_loss
        out = call(view, target, weight, reduction, gamma=gamma, alpha=alpha)
        expected = binary_focal_oracle(x64, target, reduction=reduction, **options)
        reference_fn = binary_focal_reference
    assert out.dtype == dtype
    rtol, floor = RTOL[dtype], FLOOR[dtype]
    # the error a kernel may carry in each log: none from logits, a few eps from probabilities
    y = target.to(torch.float64).expand_as(x64)
    w = torch.ones(()) if weight is None else torch.as_tensor(weight, dtype=torch.float64)
    a = 1.0 if alpha is None else torch.as_tensor(alpha, dtype=torch.float64)
    alpha_t = a * y + (1 - a) * (1 - y) if alpha is not None else torch.ones_like(y)
    if name == "sigmoid":
        one_minus_pt = y * torch.sigmoid(-x64) + (1 - y) * torch.sigmoid(x64)
    else:
        one_minus_pt = y * (1 - x64) + (1 - y) * x64
    g = torch.as_tensor(gamma, dtype=torch.float64)
    scale = (alpha_t.abs() * w.abs() * one_minus_pt**g).expand_as(x64)
    if pos_weight is not None:
        scale = scale * torch.as_tensor(pos_weight, dtype=torch.float64).clamp_min(1.0)
    value_log_eps = 0.0 if name == "sigmoid" else LOG_EPS
    reduced = {"none": scale, "sum": scale.sum(), "mean": scale.mean()}[reduction].numpy()
    bound = rtol * np.abs(expected) + value_log_eps * eps(dtype) * reduced + floor
    assert_within(out, expected, bound, f"{name} value")

    out.backward(torch.ones_like(out))
    reference_leaf = x64.clone().requires_grad_()
    reference = reference_fn(reference_leaf, target, reduction=reduction, **options)
    reference.backward(torch.ones_like(reference))
    assert leaf.grad is not None
    assert reference_leaf.grad is not None
    expected_grad = reference_leaf.grad.numpy().copy()
    per_element = scale / (scale.numel() if reduction == "mean" else 1)
    if name == "binary":  # d log p / dp = 1 / p: the same relative error, over p (1 - p)
        per_element = per_element / (x64 * (1 - x64))
    grad_bound = rtol * np.abs(expected_grad) + 4 * LOG_EPS * eps(dtype) * per_element.numpy()
    if name == "binary":
        # F.binary_cross_entropy's gradient divides by max(p (1 - p), 1e-12): not the formula's
        # (and any finite gradient will do where p is 0 or 1)
        clamped = (x64 * (1 - x64) < 1e-12).expand_as(x64).numpy()
        grad_bound[clamped], expected_grad[clamped] = np.inf, 0.0
    assert leaf.grad.dtype == dtype
    assert_within(leaf.grad, expected_grad, grad_bound + floor, f"{name} gradient")


ELEMENTWISE_OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {"alpha": None},
    "alpha_float": {"alpha": 0.25},
    "alpha_per_class": {"alpha": torch.tensor([0.1, 0.9, 0.5, 0.0])},
    "weight": {"alpha": None, "weight": torch.tensor([0.5, 2.0, 1.0, 0.0])},
    "pos_weight": {"alpha": 0.75, "pos_weight": torch.tensor([3.0, 0.5, 1.0, 10.0])},
    "everything": {
        "alpha": 0.4,
        "weight": torch.tensor([[0.5], [1.0], [2.0]]),
        "pos_weight": torch.tensor([3.0, 0.5, 1.0, 10.0]),
    },
}


def _binary_targets(shape: tuple[int, ...], kind: str, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if kind == "soft":
        return torch.rand(shape, generator=generator)
    hard = torch.rand(shape, generator=generator) > 0.5
    return {"bool": hard, "int64": hard.long(), "uint8": hard.to(torch.uint8)}.get(
        kind, hard.float()
    )


@pytest.mark.parametrize("gamma", [*GAMMAS, "per_element"])
@pytest.mark.parametrize("option", ELEMENTWISE_OPTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_sigmoid_option_grid(option: str, gamma: float | str, dtype: torch.dtype) -> None:
    shape = (3, 4)
    x = spread_logits(shape, seed=23).to(dtype)
    g = _element_gamma(shape) if gamma == "per_element" else float(gamma)
    for kind, reduction in (("float", "none"), ("soft", "none"), ("float", "mean")):
        target = _binary_targets(shape, kind, seed=4).to(dtype)
        check_elementwise(
            "sigmoid", x, target, reduction=reduction, gamma=g, **ELEMENTWISE_OPTIONS[option]
        )


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("option", ["plain", "alpha_float", "alpha_per_class", "weight"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_binary_option_grid(option: str, gamma: float, dtype: torch.dtype) -> None:
    shape = (3, 4)
    probs = torch.sigmoid(spread_logits(shape, seed=29, top=12.0)).to(dtype)
    for kind, reduction in (("float", "none"), ("soft", "none"), ("soft", "sum")):
        target = _binary_targets(shape, kind, seed=4).to(dtype)
        check_elementwise(
            "binary", probs, target, reduction=reduction, gamma=gamma, **ELEMENTWISE_OPTIONS[option]
        )


@pytest.mark.parametrize("kind", ["float", "bool", "int64", "uint8"])
@pytest.mark.parametrize("name", ["unbatched", "4d", "transposed", "sliced", "channels_last"])
def test_elementwise_layouts_and_target_dtypes(name: str, kind: str) -> None:
    shape = SHAPES[name]
    x = spread_logits(shape, seed=3).float()
    target = layout(_binary_targets(shape, kind, seed=8), name)
    for reduction in REDUCTIONS:
        check_elementwise(
            "sigmoid", x, target, reduction=reduction, gamma=2.0, alpha=0.25, memory=name
        )
        check_elementwise(
            "binary", x.sigmoid(), target, reduction=reduction, gamma=0.5, alpha=None, memory=name
        )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", ["plain", "weight", "pos_weight"])
def test_elementwise_gamma0_is_torch_bce(option: str, reduction: str) -> None:
    options = {k: v for k, v in ELEMENTWISE_OPTIONS[option].items() if k != "alpha"}
    x = spread_logits((3, 4), seed=31, top=15.0).float()
    target = _binary_targets((3, 4), "soft", seed=2)
    for name, torch_loss, input in (
        ("sigmoid", F.binary_cross_entropy_with_logits, x),
        ("binary", F.binary_cross_entropy, torch.sigmoid(x)),
    ):
        if name == "binary":
            options.pop("pos_weight", None)
        leaf, twin = input.clone().requires_grad_(), input.clone().requires_grad_()
        loss = focalkit.sigmoid_focal_loss if name == "sigmoid" else focalkit.binary_focal_loss
        actual = loss(leaf, target, reduction=reduction, gamma=0.0, alpha=None, **options)
        expected = torch_loss(twin, target, reduction=reduction, **options)
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-7)
        actual.backward(torch.ones_like(actual))
        expected.backward(torch.ones_like(expected))
        torch.testing.assert_close(leaf.grad, twin.grad, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- the tails

TAIL_LOGITS = [1e-3, 0.1, 1.0, 5.0, 10.0, 17.0, 20.0, 30.0, 40.0, 60.0, 80.0, 1e4]


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_sigmoid_tails(gamma: float, dtype: torch.dtype) -> None:
    # every logit of either sign against either label: confident right and confident wrong
    magnitudes = torch.tensor(TAIL_LOGITS, dtype=torch.float64)
    x = torch.cat([magnitudes, -magnitudes]).repeat(2).to(dtype)
    y = torch.cat([torch.ones(2 * len(TAIL_LOGITS)), torch.zeros(2 * len(TAIL_LOGITS))]).to(dtype)
    for alpha in (None, 0.25):
        check_elementwise("sigmoid", x, y, reduction="none", gamma=gamma, alpha=alpha)


@pytest.mark.parametrize("alpha", [1e-3, 1e-6, 1e-12, 1 - 1e-6])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_elementwise_alpha_near_0_and_1(alpha: float, dtype: torch.dtype) -> None:
    # alpha_t = alpha for positives and 1 - alpha for negatives, each to its own precision
    x = torch.tensor([0.8131, -0.8131, 3.0, -3.0], dtype=dtype)
    y = torch.tensor([1.0, 0.0, 0.25, 1.0], dtype=dtype)
    for gamma in (0.0, 2.0):
        check_elementwise("sigmoid", x, y, reduction="none", gamma=gamma, alpha=alpha)
        check_elementwise("binary", x.sigmoid(), y, reduction="none", gamma=gamma, alpha=alpha)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_softmax_and_nll_tails(gamma: float, dtype: torch.dtype) -> None:
    rows = [[m, 0.0, -m] for m in TAIL_LOGITS] + [[m, m, -m] for m in TAIL_LOGITS]
    x = torch.tensor(rows, dtype=torch.float64).to(dtype)
    for target in (torch.zeros(len(rows), dtype=torch.long), torch.full((len(rows),), 2)):
        check_softmax(x, target, reduction="none", gamma=gamma, alpha=[0.3, 0.5, 0.2])
        check_softmax(x, target, reduction="sum", gamma=gamma, label_smoothing=0.1)
        log_probs = torch.tensor(rows, dtype=torch.float64).log_softmax(1)
        # log p of the confident class is -log1p(e^-m): it rounds to 0 beyond the dtype
        check_nll(log_probs.to(dtype), target, reduction="none", gamma=gamma)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_binary_tails(gamma: float, dtype: torch.dtype) -> None:
    magnitudes = torch.tensor(TAIL_LOGITS[:-1], dtype=torch.float64)
    probs = torch.sigmoid(torch.cat([magnitudes, -magnitudes])).to(dtype)
    probs = probs[(probs > 0) & (probs < 1)]
    for label in (0.0, 1.0):
        check_elementwise(
            "binary",
            probs,
            torch.full_like(probs, label),
            reduction="none",
            gamma=gamma,
            alpha=None,
        )


# ----------------------------------------------------------- gradients w.r.t. the target


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_sigmoid_gradient_with_respect_to_the_target(gamma: float, kind: str) -> None:
    x = torch.tensor([-1.5, 2.0, 0.3, -4.0], dtype=torch.float64)
    y = torch.tensor(
        [0.0, 1.0, 1.0, 0.0] if kind == "hard" else [0.2, 0.9, 0.5, 0.1], dtype=torch.float64
    )
    target = y.clone().requires_grad_()
    focalkit.sigmoid_focal_loss(x, target, reduction="sum", gamma=gamma, alpha=0.25).backward()
    twin = y.clone().requires_grad_()
    sigmoid_focal_reference(x, twin, reduction="sum", gamma=gamma, alpha=0.25).backward()
    torch.testing.assert_close(target.grad, twin.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_gradients_with_respect_to_settings_and_probability_targets(gamma: float) -> None:
    # autograd through focalkit w.r.t. weight, alpha and probability targets is
    # autograd through the float64 formulas
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(3, 4, generator=generator, dtype=torch.float64) * 3
    probs = torch.softmax(torch.randn(3, 4, generator=generator, dtype=torch.float64), 1)
    index = torch.tensor([0, 3, 1])
    settings = {
        "weight": torch.rand(4, generator=generator, dtype=torch.float64) + 0.5,
        "alpha": torch.rand(4, generator=generator, dtype=torch.float64),
    }

    def grads(loss: Callable[..., torch.Tensor], *args: torch.Tensor, **kw: Any) -> list[Any]:
        leaves = {name: value.clone().requires_grad_() for name, value in kw.items()}
        loss(*args, **leaves).backward()
        return [leaf.grad for leaf in leaves.values()]

    for target in (index, probs):
        for smoothing in (0.0, 0.2):

            def ours(target: torch.Tensor, smoothing: float = smoothing, **kw: Any) -> torch.Tensor:
                return focalkit.softmax_focal_loss(
                    x,
                    target,
                    kw["weight"],
                    label_smoothing=smoothing,
                    gamma=gamma,
                    alpha=kw["alpha"],
                )

            def reference(
                target: torch.Tensor, smoothing: float = smoothing, **kw: Any
            ) -> torch.Tensor:
                return softmax_focal_reference(
                    x, target, gamma=gamma, label_smoothing=smoothing, **kw
                )

            kw = dict(settings, target=target) if target.is_floating_point() else settings
            extra = () if target.is_floating_point() else (target,)
            for got, want in zip(
                grads(ours, *extra, **kw), grads(reference, *extra, **kw), strict=True
            ):
                torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    got = grads(
        lambda **kw: focalkit.nll_focal_loss(
            x.log_softmax(1), index, kw["weight"], gamma=gamma, alpha=kw["alpha"]
        ),
        **settings,
    )
    want = grads(
        lambda **kw: nll_focal_reference(x.log_softmax(1), index, gamma=gamma, **kw), **settings
    )
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    y = torch.rand(3, 4, generator=generator, dtype=torch.float64)
    # (F.binary_cross_entropy_with_logits differentiates neither weight nor pos_weight)
    weight, pos_weight = settings["weight"], settings["weight"] * 2
    got = grads(
        lambda **kw: focalkit.sigmoid_focal_loss(
            x, y, weight, "mean", pos_weight, gamma=gamma, alpha=kw["alpha"]
        ),
        alpha=settings["alpha"],
    )
    want = grads(
        lambda **kw: sigmoid_focal_reference(
            x, y, gamma=gamma, weight=weight, pos_weight=pos_weight, **kw
        ),
        alpha=settings["alpha"],
    )
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------ half precision


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=["float16", "bfloat16"])
def test_half_precision_against_float64(dtype: torch.dtype, reduction: str) -> None:
    x = spread_logits((4, 5, 3), seed=41, top=8.0).to(dtype)
    target = index_target((4, 5, 3), seed=1, ignore=2)
    check_softmax(
        x,
        target,
        reduction=reduction,
        gamma=2.0,
        ignore_index=2,
        alpha=0.5,
        weight=[1.0, 2.0, 0.5, 1.0, 3.0],
    )
    check_softmax(x, target, reduction=reduction, gamma=0.5, ignore_index=2, label_smoothing=0.1)
    check_nll(
        x.double().log_softmax(1).to(dtype), target, reduction=reduction, gamma=2.0, ignore_index=2
    )
    check_elementwise(
        "sigmoid",
        x,
        _binary_targets(x.shape, "soft", seed=3).to(dtype),
        reduction=reduction,
        gamma=2.0,
        alpha=0.25,
    )
    check_elementwise(
        "binary",
        torch.sigmoid(x),
        _binary_targets(x.shape, "float", seed=3).to(dtype),
        reduction=reduction,
        gamma=1.0,
        alpha=None,
    )


# ------------------------------------------------------------------------ the fused loss


@pytest.mark.parametrize(
    ("reduction", "target_dtype"),
    [("none", torch.uint8), ("mean", torch.int32), ("sum", torch.int64)],
    ids=["none-uint8", "mean-int32", "sum-int64"],
)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 3.7])
@pytest.mark.parametrize("option", ["plain", "weight", "label_smoothing", "everything"])
def test_fused_linear_against_the_oracle(
    option: str, gamma: float, reduction: str, target_dtype: torch.dtype
) -> None:
    generator = torch.Generator().manual_seed(int(gamma * 10) + len(option))
    hidden = torch.randn(7, 4, generator=generator, dtype=torch.float64) * 2
    head = torch.randn(5, 4, generator=generator, dtype=torch.float64) * 3
    bias = torch.randn(5, generator=generator, dtype=torch.float64)
    options = dict(SOFTMAX_OPTIONS[option])
    target = index_target((7, 5), seed=2, dtype=target_dtype, ignore=options.get("ignore_index"))
    ignore_index = options.pop("ignore_index", -100)
    for dtype in (torch.float32, torch.float64):
        leaves = [t.to(dtype).requires_grad_() for t in (hidden, head, bias)]
        out = focalkit.linear_softmax_focal_loss(
            leaves[0],
            leaves[1],
            target,
            bias=leaves[2],
            ignore_index=ignore_index,
            reduction=reduction,
            gamma=gamma,
            chunk_size=3,
            **options,
        )
        assert out.dtype == dtype
        out.backward(torch.ones_like(out))
        twins = [t.detach().to(dtype).double().requires_grad_() for t in leaves]
        logits = F.linear(twins[0], twins[1], twins[2])
        expected = softmax_focal_oracle(
            logits.detach(),
            target,
            gamma=gamma,
            ignore_index=ignore_index,
            reduction=reduction,
            **options,
        )
        # float32 products carry eps times the sizes of their terms into the logits
        rtol, atol = (1e-10, 1e-12) if dtype == torch.float64 else (2e-5, 2e-5)
        np.testing.assert_allclose(out.detach().double().numpy(), expected, rtol=rtol, atol=atol)
        reference = softmax_focal_reference(
            logits, target, gamma=gamma, ignore_index=ignore_index, reduction=reduction, **options
        )
        reference.backward(torch.ones_like(reference))
        for leaf, twin in zip(leaves, twins, strict=True):
            assert leaf.grad is not None
            assert twin.grad is not None
            torch.testing.assert_close(leaf.grad.double(), twin.grad, rtol=rtol, atol=atol)


# -------------------------------------------------------------------------- the modules


def test_modules_against_the_oracles() -> None:
    x = spread_logits((4, 5, 3), seed=43, top=20.0).float()
    target = index_target((4, 5, 3), seed=5, ignore=1)
    weight = torch.tensor([0.5, 2.0, 1.0, 0.25, 3.0])
    module = focalkit.FocalLoss(weight, 1, "sum", 0.1, gamma=2.0, alpha=[0.1, 0.4, 1.0, 2.0, 0.3])

    def through_module(
        input: torch.Tensor, target: torch.Tensor, *_: Any, **__: Any
    ) -> torch.Tensor:
        return module(input, target)

    check_softmax(
        x,
        target,
        reduction="sum",
        gamma=2.0,
        weight=weight,
        ignore_index=1,
        label_smoothing=0.1,
        alpha=[0.1, 0.4, 1.0, 2.0, 0.3],
        loss=through_module,
    )
    nll = focalkit.NLLFocalLoss(weight, 1, "mean", gamma=0.5, alpha=0.3)
    log_probs = x.double().log_softmax(1).float()
    expected = softmax_focal_oracle(
        log_probs, target, gamma=0.5, alpha=0.3, weight=weight, ignore_index=1
    )
    np.testing.assert_allclose(nll(log_probs, target).item(), expected, rtol=1e-5)
    y = _binary_targets((4, 5, 3), "soft", seed=6)
    sigmoid = focalkit.SigmoidFocalLoss(
        reduction="none",
        pos_weight=torch.tensor([[2.0], [1.0], [0.5], [3.0], [0.1]]),
        gamma=3.7,
        alpha=0.6,
    )

    def through_sigmoid(
        input: torch.Tensor, target: torch.Tensor, *_: Any, **__: Any
    ) -> torch.Tensor:
        return sigmoid(input, target)

    check_elementwise(
        "sigmoid",
        x,
        y,
        reduction="none",
        gamma=3.7,
        alpha=0.6,
        pos_weight=torch.tensor([[2.0], [1.0], [0.5], [3.0], [0.1]]),
        loss=through_sigmoid,
    )
    binary = focalkit.BinaryFocalLoss(weight.reshape(5, 1), "mean", gamma=1.0, alpha=None)

    def through_binary(
        input: torch.Tensor, target: torch.Tensor, *_: Any, **__: Any
    ) -> torch.Tensor:
        return binary(input, target)

    check_elementwise(
        "binary",
        torch.sigmoid(x),
        y,
        reduction="mean",
        gamma=1.0,
        alpha=None,
        weight=weight.reshape(5, 1),
        loss=through_binary,
    )
    linear = focalkit.LinearFocalLoss(weight, 1, "mean", gamma=2.0, alpha=0.5, chunk_size=2)
    hidden, head = torch.randn(6, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    fused_target = index_target((6, 5), seed=9, ignore=1)
    expected = softmax_focal_oracle(
        F.linear(hidden, head), fused_target, gamma=2.0, alpha=0.5, weight=weight, ignore_index=1
    )
    np.testing.assert_allclose(linear(hidden, head, fused_target).item(), expected, rtol=1e-10)


# ----------------------------------------------------------------- alpha's accepted types


@pytest.mark.parametrize("alpha", [False, True, [1.0, None, 2.0], [True, 0.5, 0.5]], ids=repr)
def test_alpha_booleans_and_none_entries_are_type_errors(alpha: Any) -> None:
    x = torch.randn(4, 3)
    target = torch.tensor([0, 1, 2, 1])
    calls: list[Callable[[], object]] = [
        lambda: focalkit.softmax_focal_loss(x, target, alpha=alpha),
        lambda: focalkit.nll_focal_loss(x.log_softmax(1), target, alpha=alpha),
        lambda: focalkit.sigmoid_focal_loss(x, torch.rand(4, 3), alpha=alpha),
        lambda: focalkit.binary_focal_loss(x.sigmoid(), torch.rand(4, 3), alpha=alpha),
        lambda: focalkit.linear_softmax_focal_loss(x, torch.randn(3, 3), target, alpha=alpha),
        lambda: focalkit.FocalLoss(alpha=alpha),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="alpha"):
            call()
