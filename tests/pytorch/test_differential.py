"""Randomized differential tests: every PyTorch loss against the float64 oracles.

Hypothesis draws the shape and memory layout, the input dtype, the target's kind and dtype, every
option (reduction, weight, ignore_index, label smoothing, alpha, gamma, pos_weight) and logits
whose magnitudes run from 1e-3 to 80, with an occasional 1e4; each case is checked, value and
gradient, by the checks of ``test_oracle_grid.py`` (relative tolerances against the float64
oracles, the error of ``log_softmax`` allowed through the focal factor).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import softmax_focal_oracle, softmax_focal_reference
from test_oracle_grid import (
    HALF_DTYPES,
    INDEX_DTYPES,
    REDUCTIONS,
    check_elementwise,
    check_nll,
    check_softmax,
)

import focalkit

# Every tensor here is tiny: one intra-op thread (tests/conftest.py), not a pool, runs them.
pytestmark = pytest.mark.usefixtures("one_thread")


SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
FLOAT_DTYPES = [torch.float32, torch.float64]
MEMORY = ["contiguous", "transposed", "sliced", "channels_last"]


@st.composite
def logits(draw: st.DrawFn, shape: tuple[int, ...]) -> torch.Tensor:
    """float64 logits of ``shape``: magnitudes log-uniform in [1e-3, top], random signs, and now
    and then a huge one (1e4)."""
    seed = draw(st.integers(0, 2**31 - 1))
    top = draw(st.sampled_from([1.0, 10.0, 30.0, 80.0]))
    generator = torch.Generator().manual_seed(seed)
    exponent = torch.rand(shape, generator=generator, dtype=torch.float64)
    magnitude = 10.0 ** (-3.0 + exponent * (math.log10(top) + 3.0))
    sign = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
    x = magnitude * sign
    if draw(st.booleans()) and draw(st.booleans()):
        x.view(-1)[torch.randint(0, x.numel(), (1,), generator=generator)] = 1e4 * sign.view(-1)[0]
    return x


def _shape(draw: st.DrawFn, num_classes: int) -> tuple[int, ...]:
    rank = draw(st.sampled_from(["unbatched", "2d", "3d", "4d"]))
    if rank == "unbatched":
        return (num_classes,)
    batch = draw(st.integers(1, 4))
    extra = {"2d": 0, "3d": 1, "4d": 2}[rank]
    return (batch, num_classes, *draw(st.tuples(*[st.integers(1, 3)] * extra)))


def _per_class(draw: st.DrawFn, num_classes: int, low: float = 0.0) -> Any:
    values = draw(
        st.lists(
            st.sampled_from([low, 0.25, 0.5, 1.0, 2.0, 3.5]),
            min_size=num_classes,
            max_size=num_classes,
        )
    )
    return torch.tensor(values) if draw(st.booleans()) else values


def _gamma(draw: st.DrawFn, element_shape: tuple[int, ...], per_element: bool) -> Any:
    if per_element and draw(st.booleans()):
        seed = draw(st.integers(0, 1000))
        return torch.rand(element_shape, generator=torch.Generator().manual_seed(seed)) * 4.0
    return draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.7]) | st.floats(0.0, 5.0))


def _memory(draw: st.DrawFn, shape: tuple[int, ...]) -> str:
    return draw(
        st.sampled_from(MEMORY if len(shape) == 4 else MEMORY[:3] if len(shape) > 1 else MEMORY[:1])
    )


@st.composite
def softmax_cases(draw: st.DrawFn, probabilities: bool) -> dict[str, Any]:
    num_classes = draw(st.integers(2, 6))
    shape = _shape(draw, num_classes)
    element_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    case: dict[str, Any] = {
        "x": draw(logits(shape)).to(draw(st.sampled_from(FLOAT_DTYPES))),
        "reduction": draw(st.sampled_from(REDUCTIONS)),
        "memory": _memory(draw, shape),
        "gamma": _gamma(draw, element_shape, per_element=True),
        "weight": None if draw(st.booleans()) else _per_class(draw, num_classes),
        "label_smoothing": draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0])),
    }
    alpha_kind = draw(st.sampled_from(["none", "float", "per_class"]))
    case["alpha"] = {
        "none": lambda: None,
        "float": lambda: draw(st.floats(0.0, 2.0)),
        "per_class": lambda: _per_class(draw, num_classes),
    }[alpha_kind]()
    seed = draw(st.integers(0, 1000))
    generator = torch.Generator().manual_seed(seed)
    if probabilities:
        class_dim = 0 if len(shape) == 1 else 1
        raw = torch.randn(shape, generator=generator, dtype=torch.float64) * 3
        target = torch.softmax(raw, dim=class_dim)
        if draw(st.booleans()):  # hard rows: one-hot probabilities, zeros included
            target = F.one_hot(target.argmax(class_dim), num_classes).movedim(-1, class_dim)
        case["target"] = target.to(case["x"].dtype)
        return case
    target_dtype = draw(st.sampled_from(INDEX_DTYPES))
    target = torch.randint(0, num_classes, element_shape, generator=generator)
    ignore = draw(st.sampled_from(["absent", "present", "all"]))
    # an absent ignore_index that a narrow dtype would wrap onto a class (-254 is 2 as uint8)
    ignore_index = draw(st.sampled_from([-100, -100, -1, -254, 258, 1000]))
    if ignore != "absent":
        ignore_index = draw(st.integers(0, num_classes - 1))
        if target_dtype != torch.uint8 and draw(st.booleans()):
            ignore_index = -100
        if ignore == "all":
            target.fill_(ignore_index)
        elif target.numel():
            target.view(-1)[:: draw(st.integers(1, 3))] = ignore_index
    case["target"] = target.to(target_dtype)
    case["ignore_index"] = ignore_index
    return case


@SETTINGS
@given(softmax_cases(probabilities=False))
def test_softmax_class_indices(case: dict[str, Any]) -> None:
    check_softmax(case.pop("x"), case.pop("target"), **case)


@SETTINGS
@given(softmax_cases(probabilities=True))
def test_softmax_probabilities(case: dict[str, Any]) -> None:
    check_softmax(case.pop("x"), case.pop("target"), **case)


@SETTINGS
@given(softmax_cases(probabilities=False))
def test_nll(case: dict[str, Any]) -> None:
    x = case["x"]
    log_probs = x.double().log_softmax(0 if x.dim() == 1 else 1)
    if isinstance(case["gamma"], torch.Tensor):
        case["gamma"] = 1.5
    lowered = log_probs.to(x.dtype)  # log p of a confident class rounds to 0: slope 0 there
    check_nll(
        lowered,
        case["target"],
        reduction=case["reduction"],
        gamma=case["gamma"],
        alpha=case["alpha"],
        weight=case["weight"],
        ignore_index=case["ignore_index"],
        memory=case["memory"],
    )


@st.composite
def elementwise_cases(draw: st.DrawFn, name: str) -> dict[str, Any]:
    num_classes = draw(st.integers(1, 5))
    shape = _shape(draw, num_classes)
    x = draw(logits(shape)).to(draw(st.sampled_from(FLOAT_DTYPES)))
    if name == "binary":
        x = torch.sigmoid(x.double()).to(x.dtype)
    seed = draw(st.integers(0, 1000))
    generator = torch.Generator().manual_seed(seed)
    kind = draw(st.sampled_from(["soft", "float", "bool", "int64", "uint8", "int8"]))
    soft = torch.rand(shape, generator=generator, dtype=torch.float64)
    if kind == "soft":
        target = soft.to(x.dtype)
    else:
        target = (soft > 0.5).to(
            {"float": x.dtype, "bool": torch.bool}.get(kind, getattr(torch, kind))
        )
    class_axis = len(shape) - 1 if len(shape) < 3 else 1
    per_class_shape = [1] * len(shape)
    per_class_shape[class_axis] = shape[class_axis]
    case: dict[str, Any] = {
        "x": x,
        "target": target,
        "reduction": draw(st.sampled_from(REDUCTIONS)),
        "memory": _memory(draw, shape),
        "gamma": _gamma(draw, shape, per_element=name == "sigmoid"),
        "weight": None
        if draw(st.booleans())
        else torch.rand(per_class_shape, generator=generator) * 3,
    }
    alpha_kind = draw(st.sampled_from(["none", "float", "per_class"]))
    case["alpha"] = {
        "none": lambda: None,
        "float": lambda: draw(st.floats(0.0, 1.0)),
        "per_class": lambda: torch.rand(per_class_shape, generator=generator),
    }[alpha_kind]()
    if name == "sigmoid" and draw(st.booleans()):
        case["pos_weight"] = torch.rand(per_class_shape, generator=generator) * 5
    return case


@SETTINGS
@given(elementwise_cases("sigmoid"))
def test_sigmoid(case: dict[str, Any]) -> None:
    check_elementwise("sigmoid", case.pop("x"), case.pop("target"), **case)


@SETTINGS
@given(elementwise_cases("binary"))
def test_binary(case: dict[str, Any]) -> None:
    check_elementwise("binary", case.pop("x"), case.pop("target"), **case)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    softmax_cases(probabilities=False),
    st.sampled_from(HALF_DTYPES),
)
def test_half_precision(case: dict[str, Any], dtype: torch.dtype) -> None:
    x = case.pop("x").double().clamp(-8, 8)  # half precision: logits that the dtype holds well
    check_softmax(x.to(dtype), case.pop("target"), **case)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.sampled_from(INDEX_DTYPES),
    st.sampled_from([-100, -1, -254, -255, 255, 256, 258, 1000, 0, 3]),
    st.integers(0, 1000),
    st.sampled_from([0.0, 2.0]),
)
def test_target_dtype_and_ignore_index(
    target_dtype: torch.dtype, ignore_index: int, seed: int, gamma: float
) -> None:
    # every class-index entry point reads a narrow integer target as its class, whatever
    # ignore_index would wrap to in that dtype
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 5, generator=generator, dtype=torch.float64) * 4
    target = torch.randint(0, 5, (6,), generator=generator)
    if 0 <= ignore_index < 5:
        target[::2] = ignore_index
    target = target.to(target_dtype)
    check_softmax(x.float(), target, reduction="mean", gamma=gamma, ignore_index=ignore_index)
    check_nll(
        x.log_softmax(1).float(), target, reduction="sum", gamma=gamma, ignore_index=ignore_index
    )
    expected = F.cross_entropy(x, target.long(), ignore_index=ignore_index, reduction="sum")
    fused = focalkit.linear_softmax_focal_loss(
        x,
        torch.eye(5, dtype=torch.float64),
        target,
        ignore_index=ignore_index,
        reduction="sum",
        gamma=0.0,
    )
    torch.testing.assert_close(fused, expected, rtol=1e-10, atol=1e-12)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    st.integers(0, 9),
    st.integers(0, 4),
    st.integers(2, 7),
    st.integers(0, 1000),
    st.sampled_from([None, 1, 2, 5]),
    st.sampled_from([0.0, 0.5, 2.0, 3.7]),
    st.sampled_from(REDUCTIONS),
    st.booleans(),
)
def test_fused_linear(
    rows: int,
    features: int,
    num_classes: int,
    seed: int,
    chunk_size: int | None,
    gamma: float,
    reduction: str,
    with_options: bool,
) -> None:
    # linear_softmax_focal_loss in float64 is the oracle on F.linear's logits, the gradients of
    # input, classifier and bias those of the float64 formula on them
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, features, generator=generator, dtype=torch.float64) * 3
    head = torch.randn(num_classes, features, generator=generator, dtype=torch.float64) * 3
    bias = torch.randn(num_classes, generator=generator, dtype=torch.float64) * 3
    target = torch.randint(0, num_classes, (rows,), generator=generator).to(torch.int32)
    options: dict[str, Any] = {}
    if with_options:
        target[::3] = 1
        weight = torch.rand(num_classes, generator=generator, dtype=torch.float64) + 0.1
        alpha = torch.rand(num_classes, generator=generator, dtype=torch.float64)
        options = {"weight": weight, "alpha": alpha, "ignore_index": 1, "label_smoothing": 0.1}
    leaves = [t.clone().requires_grad_() for t in (hidden, head, bias)]
    out = focalkit.linear_softmax_focal_loss(
        leaves[0],
        leaves[1],
        target,
        bias=leaves[2],
        reduction=reduction,
        gamma=gamma,
        chunk_size=chunk_size,
        **options,
    )
    twins = [t.clone().requires_grad_() for t in (hidden, head, bias)]
    logits = F.linear(*twins)
    expected = softmax_focal_oracle(
        logits.detach(), target, gamma=gamma, reduction=reduction, **options
    )
    torch.testing.assert_close(
        out, torch.as_tensor(expected), rtol=1e-9, atol=1e-12, equal_nan=True
    )
    reference = softmax_focal_reference(logits, target, gamma=gamma, reduction=reduction, **options)
    if out.numel():
        out.backward(torch.ones_like(out))
        reference.backward(torch.ones_like(reference))
        for leaf, twin in zip(leaves, twins, strict=True):
            torch.testing.assert_close(leaf.grad, twin.grad, rtol=1e-9, atol=1e-12, equal_nan=True)
