"""Logit adjustment and balanced softmax: ``logit_adjustment`` and ``logit_offset=``.

``logit_adjustment(counts, tau)`` is ``tau * log(n_c / sum n)`` (NumPy in, NumPy out), and
``logit_offset=b`` on ``softmax_focal_loss``, ``FocalLoss``, ``linear_softmax_focal_loss`` and
``LinearFocalLoss`` is the loss of ``x + b`` (``b`` along the class dimension): at ``gamma=0``
``F.cross_entropy(input + b, target)`` for every option, and otherwise the softmax focal oracle
at ``x + b``.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import (
    logit_adjustment_oracle,
    softmax_focal_oracle,
    softmax_focal_prob_oracle,
    softmax_focal_reference,
)
from torch.autograd import gradcheck, gradgradcheck

import focalkit

pytestmark = pytest.mark.usefixtures("one_thread")

COUNTS = [500, 120, 40, 7]
REDUCTIONS = ["none", "mean", "sum"]
SHAPES = {"unbatched": (4,), "2d": (6, 4), "3d": (3, 4, 5), "4d": (2, 4, 3, 2)}
OPTIONS = {
    "plain": {},
    "weight": {"weight": [0.5, 2.0, 1.0, 1.5]},
    "ignore_index": {"ignore_index": 1},
    "label_smoothing": {"label_smoothing": 0.2},
    "all": {"weight": [0.5, 2.0, 1.0, 1.5], "ignore_index": 1, "label_smoothing": 0.15},
}


def _offset(tau: float = 1.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(logit_adjustment_oracle(COUNTS, tau), dtype=dtype)


def _case(
    shape: tuple[int, ...], options: dict[str, Any], dtype: torch.dtype, probabilities: bool
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    generator = torch.Generator().manual_seed(len(shape))
    x = (torch.randn(shape, generator=generator, dtype=torch.float64) * 3).to(dtype)
    class_dim = 0 if len(shape) == 1 else 1
    kwargs = dict(options)
    if kwargs.get("weight") is not None:
        kwargs["weight"] = torch.tensor(kwargs["weight"], dtype=dtype)
    if probabilities:
        kwargs.pop("ignore_index", None)
        target = torch.rand(shape, generator=generator, dtype=torch.float64).softmax(class_dim)
        return x, target.to(dtype), kwargs
    element_shape = shape[:class_dim] + shape[class_dim + 1 :]
    target = torch.randint(0, shape[class_dim], element_shape, generator=generator)
    if "ignore_index" in kwargs and target.dim() > 0:
        target.view(-1)[::3] = kwargs["ignore_index"]
    return x, target, kwargs


def _class_view(offset: torch.Tensor, ndim: int) -> torch.Tensor:
    return offset if ndim == 1 else offset.reshape(1, -1, *([1] * (ndim - 2)))


def _value_and_grads(fn: Any, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    cotangent = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad(out, leaves, cotangent)
    return (out.detach(), *grads)


# ------------------------------------------------------------------------ logit_adjustment


@pytest.mark.parametrize("tau", [1.0, 0.5, 2.0, 0.0])
@pytest.mark.parametrize(
    "counts", [COUNTS, [1, 1], [3, 1, 0.5, 1e6], np.array([10, 20, 30], dtype=np.int32)]
)
def test_logit_adjustment_is_tau_log_prior(counts: Any, tau: float) -> None:
    actual = focalkit.logit_adjustment(counts, tau)
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == np.float64
    assert actual.shape == (len(counts),)
    # an offset is added to logits: what matters is its absolute error, a few ulp of log(sum n)
    expected = logit_adjustment_oracle(list(counts), tau)
    np.testing.assert_allclose(actual, expected, rtol=1e-13, atol=1e-14)
    if tau == 1.0:  # the log of the prior: exp sums to one
        np.testing.assert_allclose(np.exp(actual).sum(), 1.0, rtol=1e-14)


def test_logit_adjustment_default_tau_is_balanced_softmax() -> None:
    np.testing.assert_allclose(
        focalkit.logit_adjustment(COUNTS), np.log(np.array(COUNTS) / sum(COUNTS)), rtol=1e-14
    )


def test_logit_adjustment_needs_only_numpy() -> None:
    code = (
        "import sys, focalkit; out = focalkit.logit_adjustment([2, 6]); "
        "assert type(out).__module__ == 'numpy', type(out); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize(
    ("counts", "tau", "error", "match"),
    [
        ([5, 3, 0, 2], 1.0, ValueError, r"logit_adjustment\(\).*class 2"),
        ([5, -3, 2], 1.0, ValueError, r"logit_adjustment\(\): counts must be >= 0.*class 1"),
        ([[1, 2], [3, 4]], 1.0, ValueError, r"logit_adjustment\(\): counts must be .*1-D"),
        ([], 1.0, ValueError, r"logit_adjustment\(\): counts must be .*non-empty"),
        ([1, 2], -0.5, ValueError, r"logit_adjustment\(\): tau must be >= 0"),
        ([1, 2], float("nan"), ValueError, r"logit_adjustment\(\): tau must be >= 0"),
    ],
)
def test_logit_adjustment_errors(counts: Any, tau: float, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        focalkit.logit_adjustment(counts, tau)


# ---------------------------------------------- softmax_focal_loss(logit_offset=...): parity


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("probabilities", [False, True], ids=["index", "probability"])
@pytest.mark.parametrize(
    ("shape_name", "option_name", "reduction"), list(itertools.product(SHAPES, OPTIONS, REDUCTIONS))
)
def test_gamma0_with_offset_is_cross_entropy_of_shifted_logits(
    shape_name: str, option_name: str, reduction: str, probabilities: bool, dtype: torch.dtype
) -> None:
    x, target, kwargs = _case(SHAPES[shape_name], OPTIONS[option_name], dtype, probabilities)
    offset = _offset(tau=0.7, dtype=dtype)

    def expected_fn(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        shifted = x + _class_view(b, x.dim())
        return F.cross_entropy(shifted, target, reduction=reduction, **kwargs)

    def actual_fn(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return focalkit.softmax_focal_loss(
            x, target, reduction=reduction, gamma=0.0, logit_offset=b, **kwargs
        )

    expected = _value_and_grads(expected_fn, x, offset)
    actual = _value_and_grads(actual_fn, x, offset)
    tolerance = (
        {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    )
    assert actual[0].dtype == dtype
    for a, e in zip(actual, expected, strict=True):  # value, d/dinput, d/doffset
        torch.testing.assert_close(a, e, **tolerance)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 4.0])
@pytest.mark.parametrize("option_name", OPTIONS)
@pytest.mark.parametrize("probabilities", [False, True], ids=["index", "probability"])
def test_offset_is_the_focal_oracle_of_shifted_logits(
    option_name: str, probabilities: bool, gamma: float
) -> None:
    x, target, kwargs = _case((3, 4, 2), OPTIONS[option_name], torch.float64, probabilities)
    offset = _offset(tau=1.3)
    alpha = [0.1, 0.4, 0.3, 0.2]
    shifted = x + _class_view(offset, 3)
    for reduction in REDUCTIONS:
        actual = focalkit.softmax_focal_loss(
            x, target, reduction=reduction, gamma=gamma, alpha=alpha, logit_offset=offset, **kwargs
        )
        if probabilities:
            expected = softmax_focal_prob_oracle(
                shifted, target, gamma=gamma, alpha=alpha, reduction=reduction, **kwargs
            )
        else:
            expected = softmax_focal_oracle(
                shifted, target, gamma=gamma, alpha=alpha, reduction=reduction, **kwargs
            )
        np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-10, atol=1e-13)
    actual_grads = _value_and_grads(
        lambda x, b: focalkit.softmax_focal_loss(
            x, target, gamma=gamma, alpha=alpha, logit_offset=b, **kwargs
        ),
        x,
        offset,
    )
    expected_grads = _value_and_grads(
        lambda x, b: softmax_focal_reference(
            x + _class_view(b, 3), target, gamma=gamma, alpha=alpha, **kwargs
        ),
        x,
        offset,
    )
    for a, e in zip(actual_grads, expected_grads, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "as_offset",
    [
        lambda b: b,
        lambda b: b.numpy(),
        lambda b: b.tolist(),
        lambda b: b.float(),
    ],
    ids=["float64 tensor", "numpy", "list", "float32 tensor"],
)
def test_offset_array_likes_and_logit_adjustment_output(as_offset: Any) -> None:
    x, target, _ = _case((6, 4), {}, torch.float32, probabilities=False)
    offset64 = torch.tensor(focalkit.logit_adjustment(COUNTS, 0.5))
    actual = focalkit.softmax_focal_loss(x, target, logit_offset=as_offset(offset64))
    assert actual.dtype == torch.float32
    expected = softmax_focal_oracle(x.double() + offset64, target, gamma=2.0)
    np.testing.assert_allclose(actual.item(), expected, rtol=1e-5)
    # logit_adjustment's NumPy output goes in as it is
    direct = focalkit.softmax_focal_loss(
        x, target, logit_offset=focalkit.logit_adjustment(COUNTS, 0.5)
    )
    torch.testing.assert_close(direct, actual)


def test_offset_zero_changes_nothing_and_a_constant_offset_changes_nothing() -> None:
    x, target, kwargs = _case((3, 4, 5), OPTIONS["all"], torch.float64, probabilities=False)
    plain = focalkit.softmax_focal_loss(x, target, reduction="none", gamma=1.5, **kwargs)
    for offset in (torch.zeros(4), torch.full((4,), -7.25)):  # softmax is shift-invariant
        shifted = focalkit.softmax_focal_loss(
            x, target, reduction="none", gamma=1.5, logit_offset=offset, **kwargs
        )
        torch.testing.assert_close(shifted, plain, rtol=1e-12, atol=1e-14)


def test_offset_moves_the_loss_toward_rare_classes() -> None:
    # With the balanced-softmax offset a rare class's target costs more at equal logits, a
    # frequent class's less: the model must give rare classes larger logits.
    x = torch.zeros(4, 4)
    target = torch.arange(4)
    losses = focalkit.softmax_focal_loss(
        x, target, reduction="none", gamma=0.0, logit_offset=focalkit.logit_adjustment(COUNTS)
    )
    assert torch.all(losses[1:] > losses[:-1])  # COUNTS falls from class 0 to class 3


def test_offset_gradient_is_none_for_a_constant_offset() -> None:
    x, target, _ = _case((6, 4), {}, torch.float64, probabilities=False)
    offset = _offset()
    leaf = x.clone().requires_grad_()
    focalkit.softmax_focal_loss(leaf, target, logit_offset=offset).backward()
    assert offset.grad is None
    assert leaf.grad is not None


# --------------------------------------------------------------------------- the fused loss


@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("use_bias", [False, True], ids=["no bias", "bias"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_linear_softmax_focal_loss_with_offset(
    gamma: float, use_bias: bool, dtype: torch.dtype
) -> None:
    generator = torch.Generator().manual_seed(3)
    hidden = torch.randn(7, 3, generator=generator, dtype=torch.float64).to(dtype)
    classifier = torch.randn(4, 3, generator=generator, dtype=torch.float64).to(dtype)
    bias = torch.randn(4, generator=generator, dtype=torch.float64).to(dtype)
    target = torch.tensor([0, 3, 2, 1, -100, 3, 1])
    offset = focalkit.logit_adjustment(COUNTS)
    options = {
        "weight": [0.5, 2.0, 1.0, 1.5],
        "label_smoothing": 0.1,
        "alpha": [0.1, 0.4, 0.3, 0.2],
    }

    def actual_fn(h: torch.Tensor, w: torch.Tensor, *b: torch.Tensor) -> torch.Tensor:
        return focalkit.linear_softmax_focal_loss(
            h,
            w,
            target,
            bias=b[0] if b else None,
            gamma=gamma,
            chunk_size=3,
            logit_offset=offset,
            **options,
        )

    def expected_fn(h: torch.Tensor, w: torch.Tensor, *b: torch.Tensor) -> torch.Tensor:
        logits = F.linear(h, w, b[0] if b else None)
        return softmax_focal_reference(
            logits + torch.as_tensor(offset), target, gamma=gamma, **options
        )

    tensors = (hidden, classifier, bias) if use_bias else (hidden, classifier)
    actual = _value_and_grads(actual_fn, *tensors)
    expected = _value_and_grads(expected_fn, *[t.double() for t in tensors])
    tolerance = (
        {"rtol": 1e-9, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-6}
    )
    assert actual[0].dtype == dtype
    for a, e in zip(actual, expected, strict=True):  # value, then each tensor's gradient
        torch.testing.assert_close(a.double(), e, **tolerance)


# ------------------------------------------------------------------------------ the modules


def test_focal_loss_module_keeps_the_offset_as_a_buffer() -> None:
    offset = focalkit.logit_adjustment(COUNTS, tau=0.5)
    module = focalkit.FocalLoss(weight=[0.5, 2.0, 1.0, 1.5], gamma=1.0, logit_offset=offset)
    buffers = dict(module.named_buffers())
    assert "logit_offset" in buffers
    assert "logit_offset" in module.state_dict()
    assert "logit_offset" in repr(module)
    x, target, _ = _case((3, 4, 5), {}, torch.float32, probabilities=False)
    expected = focalkit.softmax_focal_loss(
        x, target, [0.5, 2.0, 1.0, 1.5], gamma=1.0, logit_offset=offset
    )
    torch.testing.assert_close(module(x, target), expected)
    doubled = module.double()
    assert doubled.logit_offset.dtype == torch.float64
    torch.testing.assert_close(doubled(x.double(), target), expected.double(), rtol=1e-5, atol=1e-6)
    plain = focalkit.FocalLoss()
    assert plain.logit_offset is None


def test_linear_focal_loss_module_takes_the_offset() -> None:
    offset = focalkit.logit_adjustment(COUNTS)
    module = focalkit.LinearFocalLoss(gamma=0.0, logit_offset=offset)
    assert "logit_offset" in dict(module.named_buffers())
    assert "logit_offset" in repr(module)
    generator = torch.Generator().manual_seed(4)
    hidden = torch.randn(5, 3, generator=generator)
    classifier = torch.randn(4, 3, generator=generator)
    target = torch.tensor([0, 1, 2, 3, 1])
    expected = F.cross_entropy(hidden @ classifier.T + torch.as_tensor(offset).float(), target)
    torch.testing.assert_close(module(hidden, classifier, target), expected)


# ------------------------------------------------------------------ gradients and numerics


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_gradcheck_through_input_and_offset(gamma: float) -> None:
    generator = torch.Generator().manual_seed(5)
    x = (torch.randn(3, 4, 2, generator=generator, dtype=torch.float64) * 3).requires_grad_()
    offset = _offset(tau=0.8).requires_grad_()
    target = torch.tensor([[0, 3], [1, -100], [2, 2]])

    def fn(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return focalkit.softmax_focal_loss(
            x, target, weight=[0.5, 2.0, 1.0, 1.5], gamma=gamma, logit_offset=b
        )

    assert gradcheck(fn, (x, offset), eps=1e-6, atol=1e-7, rtol=1e-5)
    assert gradgradcheck(fn, (x, offset), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_extreme_logits_and_offsets_stay_finite(gamma: float) -> None:
    x = torch.tensor([[1e4, -1e4, 0.0, 3.0], [-1e4, -1e4, -1e4, 1e4]], requires_grad=True)
    offset = torch.tensor([0.0, -50.0, 20.0, -1e3])
    for target in (torch.tensor([0, 1]), torch.tensor([1, 3])):
        x.grad = None
        loss = focalkit.softmax_focal_loss(x, target, gamma=gamma, logit_offset=offset)
        loss.backward()
        assert torch.isfinite(loss)
        assert x.grad is not None
        assert torch.isfinite(x.grad).all()
        expected = softmax_focal_oracle(x.detach().double() + offset.double(), target, gamma=gamma)
        np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)


def test_nan_in_input_or_offset_gives_nan_out() -> None:
    x, target, _ = _case((6, 4), {}, torch.float32, probabilities=False)
    x[2, 1] = float("nan")
    out = focalkit.softmax_focal_loss(x, target, reduction="none", logit_offset=_offset().float())
    assert out[2].isnan()
    assert not out[[0, 1, 3, 4, 5]].isnan().any()
    offset = _offset().float()
    offset[0] = float("nan")
    clean, _, _ = _case((6, 4), {}, torch.float32, probabilities=False)
    assert focalkit.softmax_focal_loss(clean, target, logit_offset=offset).isnan()


def test_half_precision_and_autocast(half_dtype: torch.dtype) -> None:
    x, target, _ = _case((6, 4), {}, torch.float32, probabilities=False)
    offset = focalkit.logit_adjustment(COUNTS)
    low = x.to(half_dtype)
    out = focalkit.softmax_focal_loss(low, target, logit_offset=offset)
    assert out.dtype == half_dtype
    expected = softmax_focal_oracle(low.double() + torch.as_tensor(offset), target, gamma=2.0)
    np.testing.assert_allclose(out.double().item(), expected, rtol=1e-2)
    with torch.autocast("cpu", dtype=half_dtype):
        auto = focalkit.softmax_focal_loss(low, target, logit_offset=offset)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(
        auto, focalkit.softmax_focal_loss(low.float(), target, logit_offset=offset)
    )


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("offset", "error", "match"),
    [
        ([0.0, 1.0, 2.0], ValueError, r"logit_offset.*4"),
        (torch.zeros(5), ValueError, r"logit_offset.*4"),
        (torch.zeros(2, 4), ValueError, r"logit_offset"),
        ("balanced", TypeError, r"logit_offset"),
    ],
    ids=["3 of 4", "5 of 4", "2-D", "string"],
)
def test_bad_offset_is_a_clear_error(offset: Any, error: type, match: str) -> None:
    x, target, _ = _case((6, 4), {}, torch.float32, probabilities=False)
    generator = torch.Generator().manual_seed(0)
    hidden, head = torch.randn(6, 3, generator=generator), torch.randn(4, 3, generator=generator)
    with pytest.raises(error, match=r"^softmax_focal_loss\(\): " + match):
        focalkit.softmax_focal_loss(x, target, logit_offset=offset)
    with pytest.raises(error, match=r"^linear_softmax_focal_loss\(\): " + match):
        focalkit.linear_softmax_focal_loss(hidden, head, target, logit_offset=offset)
    with pytest.raises(error, match=match):  # at construction, or at the first call
        focalkit.FocalLoss(logit_offset=offset)(x, target)
    with pytest.raises(error, match=match):
        focalkit.LinearFocalLoss(logit_offset=offset)(hidden, head, target)


@pytest.mark.parametrize(
    ("offset", "error"), [(torch.zeros(2, 4), ValueError), ("balanced", TypeError)]
)
def test_module_checks_the_offset_at_construction(offset: Any, error: type) -> None:
    with pytest.raises(error, match=r"^FocalLoss\(\): logit_offset"):
        focalkit.FocalLoss(logit_offset=offset)
    with pytest.raises(error, match=r"^LinearFocalLoss\(\): logit_offset"):
        focalkit.LinearFocalLoss(logit_offset=offset)


# ------------------------------------------------------------------------ randomized tests


@st.composite
def _shifted_case(draw: st.DrawFn) -> dict[str, Any]:
    num_classes = draw(st.integers(2, 5))
    batch = draw(st.integers(1, 4))
    extra = draw(st.sampled_from([(), (2,), (2, 3)]))
    shape = (batch, num_classes, *extra)
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([0.1, 3.0, 30.0]))
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * scale
    counts = draw(st.lists(st.integers(1, 10**6), min_size=num_classes, max_size=num_classes))
    tau = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]))
    case: dict[str, Any] = {
        "x": x,
        "offset": logit_adjustment_oracle(counts, tau),
        "gamma": draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])),
        "reduction": draw(st.sampled_from(REDUCTIONS)),
        "label_smoothing": draw(st.sampled_from([0.0, 0.1])),
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
    }
    if draw(st.booleans()):
        case["weight"] = draw(
            st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=num_classes, max_size=num_classes)
        )
    if draw(st.booleans()):
        case["alpha"] = draw(
            st.lists(st.sampled_from([0.1, 0.5, 1.0]), min_size=num_classes, max_size=num_classes)
        )
    if draw(st.booleans()):
        case["target"] = torch.rand(shape, generator=generator, dtype=torch.float64).softmax(1)
    else:
        target_dtype = draw(st.sampled_from([torch.int64, torch.int32, torch.uint8]))
        target = torch.randint(0, num_classes, (batch, *extra), generator=generator)
        if target_dtype == torch.int64 and draw(st.booleans()):
            target.view(-1)[0] = -100
        case["target"] = target.to(target_dtype)
    return case


@settings(max_examples=40, deadline=None, derandomize=True)
@given(_shifted_case())
def test_randomized_against_the_oracle(case: dict[str, Any]) -> None:
    dtype = case["dtype"]
    x, target, offset = case["x"], case["target"], case["offset"]
    options = {k: case[k] for k in ("weight", "alpha", "label_smoothing") if k in case}
    if target.is_floating_point():
        target = target.to(dtype)
    out = focalkit.softmax_focal_loss(
        x.to(dtype),
        target,
        reduction=case["reduction"],
        gamma=case["gamma"],
        logit_offset=offset,
        **options,
    )
    assert out.dtype == dtype
    shifted = x.to(dtype).double() + torch.tensor(offset, dtype=torch.float64).reshape(
        1, -1, *([1] * (x.dim() - 2))
    )
    if target.is_floating_point():
        expected = softmax_focal_prob_oracle(
            shifted, target.double(), gamma=case["gamma"], reduction=case["reduction"], **options
        )
    else:
        expected = softmax_focal_oracle(
            shifted, target.long(), gamma=case["gamma"], reduction=case["reduction"], **options
        )
    rtol, atol = (1e-9, 1e-12) if dtype == torch.float64 else (2e-4, 2e-5)
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=rtol, atol=atol)
