"""LDAM (Cao et al. 2019): ``ldam_margins``, ``ldam_loss`` and ``LDAMLoss``.

``ldam_margins(counts, max_margin)`` is ``max_margin (min n / n_c)^(1/4)``, the authors'
``m_list``; ``ldam_loss`` is ``softmax_focal_loss(scale * (input - margins[target] onehot))``
with no margin for ignored elements. Checked against the float64 oracle written from that
definition (values, and the float64 formula's gradients) over every option and N-D inputs,
against the LDAM authors' ``LDAMLoss`` at ``gamma=0`` (re-typed in ``tests/oracles.py``), and
against ``F.cross_entropy`` / ``softmax_focal_loss`` of the shifted, scaled logits.
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
from oracles import ldam_drw_loss, ldam_margins_oracle, ldam_oracle, ldam_reference

import focalkit

pytestmark = pytest.mark.usefixtures("one_thread")

COUNTS = [500, 120, 40, 7]
MARGINS = ldam_margins_oracle(COUNTS)
REDUCTIONS = ["none", "mean", "sum"]
SHAPES = {"2d": (6, 4), "3d": (3, 4, 5), "4d": (2, 4, 3, 2)}
OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "weight": {"weight": [0.5, 2.0, 1.0, 1.5]},
    "ignore_index": {"ignore_index": 1},
    "alpha": {"alpha": [0.1, 0.4, 0.3, 0.2]},
    "all": {"weight": [0.5, 2.0, 1.0, 1.5], "ignore_index": 1, "alpha": 0.3},
}


def _case(
    shape: tuple[int, ...], options: dict[str, Any], seed: int = 0, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    generator = torch.Generator().manual_seed(seed + len(shape))
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * scale
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
    kwargs = dict(options)
    if "ignore_index" in kwargs:
        target.view(-1)[::3] = kwargs["ignore_index"]
    return x, target, kwargs


def _value_and_grad(fn: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.detach().clone().requires_grad_()
    out = fn(leaf)
    cotangent = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, leaf, cotangent)
    return out.detach(), grad


# ---------------------------------------------------------------------------- ldam_margins


@pytest.mark.parametrize("max_margin", [0.5, 0.3, 1.0, 0.0])
@pytest.mark.parametrize(
    "counts", [COUNTS, [16, 1, 81], [5, 5], np.array([1000, 10, 1], dtype=np.int64), [2.5, 7.0]]
)
def test_ldam_margins_are_the_authors_m_list(counts: Any, max_margin: float) -> None:
    actual = focalkit.ldam_margins(counts, max_margin)
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == np.float64
    np.testing.assert_allclose(actual, ldam_margins_oracle(list(counts), max_margin), rtol=1e-14)
    # the authors: m = 1 / sqrt(sqrt(n)), scaled so that the largest is max_m
    m_list = 1.0 / np.sqrt(np.sqrt(np.asarray(counts, dtype=np.float64)))
    if max_margin:
        np.testing.assert_allclose(actual, m_list * (max_margin / m_list.max()), rtol=1e-14)
        assert actual.max() == pytest.approx(max_margin, rel=1e-15)


def test_ldam_margins_default_is_half() -> None:
    np.testing.assert_allclose(focalkit.ldam_margins([16, 1, 81]), [0.25, 0.5, 0.5 / 3])


@pytest.mark.parametrize(
    ("counts", "max_margin", "match"),
    [
        ([5, 0, 2], 0.5, r"ldam_margins\(\).*class 1"),
        ([5, -1, 2], 0.5, r"ldam_margins\(\): counts must be >= 0.*class 1"),
        ([[1, 2]], 0.5, r"ldam_margins\(\): counts must be .*1-D"),
        ([1, 2], -0.1, r"ldam_margins\(\): max_margin must be >= 0"),
    ],
)
def test_ldam_margins_errors(counts: Any, max_margin: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        focalkit.ldam_margins(counts, max_margin)


# ---------------------------------------------------------------------- ldam_loss: oracle


@pytest.mark.parametrize(("shape_name", "option_name"), list(itertools.product(SHAPES, OPTIONS)))
def test_ldam_loss_against_the_oracle(shape_name: str, option_name: str) -> None:
    x, target, kwargs = _case(SHAPES[shape_name], OPTIONS[option_name])
    for gamma, scale, reduction in itertools.product((0.0, 0.5, 2.0), (30.0, 1.0, 5.0), REDUCTIONS):
        options = {"gamma": gamma, "scale": scale, "reduction": reduction, **kwargs}
        value, grad = _value_and_grad(
            lambda v, o=options: focalkit.ldam_loss(v, target, MARGINS, **o), x
        )
        _, expected_grad = _value_and_grad(
            lambda v, o=options: ldam_reference(v, target, MARGINS, **o), x
        )
        expected = ldam_oracle(x, target, MARGINS, **options)
        assert value.dtype == torch.float64
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("option_name", ["plain", "all"])
def test_ldam_loss_float32(option_name: str) -> None:
    x, target, kwargs = _case((8, 4, 3), OPTIONS[option_name], seed=1)
    margins32 = torch.tensor(MARGINS, dtype=torch.float32)
    for gamma, reduction in itertools.product((0.0, 2.0), REDUCTIONS):
        options = {"gamma": gamma, "reduction": reduction, **kwargs}
        value, grad = _value_and_grad(
            lambda v, o=options: focalkit.ldam_loss(v, target, margins32, **o), x.float()
        )
        expected, expected_grad = _value_and_grad(
            lambda v, o=options: ldam_reference(v, target, margins32.double(), **o),
            x.float().double(),
        )
        assert value.dtype == torch.float32
        # scale 30 multiplies the logits: their float32 rounding is 30 eps |x|
        torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad.double(), expected_grad, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------- ldam_loss: parity points


@pytest.mark.parametrize("use_weight", [False, True], ids=["plain", "weight"])
@pytest.mark.parametrize("max_m", [0.5, 0.2])
def test_ldam_loss_at_gamma_0_is_the_ldam_authors_loss(max_m: float, use_weight: bool) -> None:
    x, target, _ = _case((16, 4), {}, seed=2, scale=0.3)
    weight = torch.tensor([0.5, 2.0, 1.0, 1.5], dtype=torch.float64) if use_weight else None
    margins = focalkit.ldam_margins(COUNTS, max_m)
    for dtype in (torch.float64, torch.float32):
        w = None if weight is None else weight.to(dtype)
        expected = _value_and_grad(
            lambda v, w=w: ldam_drw_loss(v, target, COUNTS, max_m=max_m, weight=w, s=30.0),
            x.to(dtype),
        )
        actual = _value_and_grad(
            lambda v, w=w: focalkit.ldam_loss(v, target, margins, w), x.to(dtype)
        )
        tolerance = (
            {"rtol": 1e-10, "atol": 1e-12}
            if dtype == torch.float64
            else {"rtol": 1e-5, "atol": 1e-6}
        )
        for a, e in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, e, **tolerance)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize(("shape_name", "option_name"), list(itertools.product(SHAPES, OPTIONS)))
def test_ldam_loss_is_the_focal_loss_of_shifted_scaled_logits(
    shape_name: str, option_name: str, gamma: float
) -> None:
    x, target, kwargs = _case(SHAPES[shape_name], OPTIONS[option_name], seed=3)
    ignore_index = kwargs.get("ignore_index", -100)
    kept = target != ignore_index
    safe = torch.where(kept, target, torch.zeros_like(target))
    margin = torch.tensor(MARGINS, dtype=torch.float64)[safe] * kept  # none where ignored
    one_hot = F.one_hot(safe, 4).movedim(-1, 1).to(torch.float64)
    for reduction in REDUCTIONS:

        def shifted(v: torch.Tensor, reduction: str = reduction) -> torch.Tensor:
            z = 7.0 * (v - margin.unsqueeze(1) * one_hot)
            if gamma == 0.0 and "alpha" not in kwargs:  # torch's own loss
                options = dict(kwargs)
                if "weight" in options:
                    options["weight"] = torch.tensor(options["weight"], dtype=torch.float64)
                return F.cross_entropy(z, target, reduction=reduction, **options)
            return focalkit.softmax_focal_loss(
                z, target, reduction=reduction, gamma=gamma, **kwargs
            )

        actual = _value_and_grad(
            lambda v, r=reduction: focalkit.ldam_loss(
                v, target, MARGINS, reduction=r, scale=7.0, gamma=gamma, **kwargs
            ),
            x,
        )
        for a, e in zip(actual, _value_and_grad(shifted, x), strict=True):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_ignored_elements_get_no_margin_and_no_gradient() -> None:
    x, target, _ = _case((6, 4), {"ignore_index": 2}, seed=4)
    target[::3] = 2
    leaf = x.clone().requires_grad_()
    out = focalkit.ldam_loss(leaf, target, MARGINS, ignore_index=2, reduction="none")
    assert (out[target == 2] == 0).all()
    out.sum().backward()
    assert leaf.grad is not None
    assert (leaf.grad[target == 2] == 0).all()
    # a valid class as ignore_index: those elements are ignored, the others keep their margin
    expected = ldam_oracle(x, target, MARGINS, ignore_index=2, reduction="none")
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-10, atol=1e-13)


def test_zero_margins_are_the_scaled_focal_loss() -> None:
    x, target, kwargs = _case((3, 4, 5), OPTIONS["all"], seed=5)
    for gamma in (0.0, 2.0):
        actual = focalkit.ldam_loss(x, target, [0.0] * 4, scale=2.0, gamma=gamma, **kwargs)
        expected = focalkit.softmax_focal_loss(2.0 * x, target, gamma=gamma, **kwargs)
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "as_margins",
    [np.asarray, torch.tensor, list, lambda m: torch.tensor(m, dtype=torch.float32)],
    ids=["numpy", "tensor", "list", "float32 tensor"],
)
def test_margins_array_likes(as_margins: Any) -> None:
    x, target, _ = _case((6, 4), {}, seed=6)
    margins = focalkit.ldam_margins(COUNTS)
    actual = focalkit.ldam_loss(x.float(), target, as_margins(margins))
    expected = ldam_oracle(x.float().double(), target, margins)
    np.testing.assert_allclose(actual.item(), expected, rtol=2e-5)


def test_ldam_loss_defaults_and_divisor() -> None:
    x, target, _ = _case((6, 4), {}, seed=7)
    expected = ldam_oracle(x, target, MARGINS, scale=30.0, gamma=0.0)
    np.testing.assert_allclose(focalkit.ldam_loss(x, target, MARGINS).item(), expected, rtol=1e-12)
    total = focalkit.ldam_loss(x, target, MARGINS, reduction="sum")
    torch.testing.assert_close(focalkit.ldam_loss(x, target, MARGINS, divisor=4.0), total / 4)


def test_ldam_loss_unbatched() -> None:
    x, target, kwargs = _case((1, 4), OPTIONS["weight"], seed=8)
    for reduction in REDUCTIONS:
        batched = focalkit.ldam_loss(x, target, MARGINS, reduction=reduction, **kwargs)
        single = focalkit.ldam_loss(x[0], target[0], MARGINS, reduction=reduction, **kwargs)
        torch.testing.assert_close(single, batched[0] if reduction == "none" else batched)


# ------------------------------------------------------------------------------- the module


def test_ldam_loss_module() -> None:
    x, target, _ = _case((3, 4, 5), {}, seed=9)
    weight, alpha = [0.5, 2.0, 1.0, 1.5], [0.1, 0.4, 0.3, 0.2]
    module = focalkit.LDAMLoss(MARGINS, weight, 2, "sum", scale=10.0, gamma=1.0, alpha=alpha)
    expected = focalkit.ldam_loss(
        x, target, MARGINS, weight, 2, "sum", scale=10.0, gamma=1.0, alpha=alpha
    )
    torch.testing.assert_close(module(x, target), expected)
    buffers = dict(module.named_buffers())
    assert {"margins", "weight", "alpha"} <= set(buffers)
    text = repr(module)
    for setting in ("scale=10.0", "gamma=1.0", "reduction='sum'", "ignore_index=2", "margins"):
        assert setting in text
    doubled = module.double()
    assert doubled.margins.dtype == torch.float64
    plain = focalkit.LDAMLoss(focalkit.ldam_margins(COUNTS))
    torch.testing.assert_close(
        plain(x, target, divisor=3.0),
        focalkit.ldam_loss(x, target, MARGINS, reduction="sum") / 3.0,
    )


# ------------------------------------------------------------------------------- bad input

X = torch.randn(4, 3)
T = torch.tensor([0, 1, 2, 1])
M3 = [0.5, 0.3, 0.2]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((T, [0.5, 0.3]), {}, ValueError, r"margins.*3"),
        ((T, [[0.5, 0.3, 0.2]]), {}, ValueError, r"margins"),
        ((T, M3), {"gamma": -1.0}, ValueError, r"gamma must be >= 0"),
        ((T, M3), {"scale": -1.0}, ValueError, r"scale"),
        ((T, M3), {"scale": 0.0}, ValueError, r"scale"),
        ((T, M3), {"reduction": "avg"}, ValueError, r"reduction must be one of"),
        ((T, M3), {"weight": [1.0, 2.0]}, ValueError, r"weight must have one value per class"),
        ((T, M3), {"alpha": [1.0, 2.0]}, ValueError, r"alpha must have one value per class"),
        ((torch.tensor([0, 1, 3, 1]), M3), {}, ValueError, r"target class indices must be in"),
        ((torch.tensor([0, 1, 2]), M3), {}, ValueError, r"expected target of shape \(4,\)"),
        ((torch.full((4, 3), 1 / 3), M3), {}, (TypeError, ValueError), r"target"),
    ],
    ids=repr,
)
def test_ldam_loss_bad_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: Any, match: str
) -> None:
    with pytest.raises(error, match=r"^ldam_loss\(\): " + match):
        focalkit.ldam_loss(X, *args, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"gamma": -1.0}, ValueError, r"gamma"),
        ({"scale": -2.0}, ValueError, r"scale"),
        ({"reduction": "avg"}, ValueError, r"reduction"),
        ({"margins": [[0.5]]}, ValueError, r"margins"),
    ],
)
def test_ldam_module_checks_its_configuration(
    kwargs: dict[str, Any], error: type, match: str
) -> None:
    options = {"margins": M3, **kwargs}
    margins = options.pop("margins")
    with pytest.raises(error, match=r"^LDAMLoss\(\): " + match):
        focalkit.LDAMLoss(margins, **options)


# ------------------------------------------------------------------------ randomized tests


@st.composite
def _ldam_case(draw: st.DrawFn) -> dict[str, Any]:
    num_classes = draw(st.integers(2, 5))
    batch = draw(st.integers(1, 4))
    extra = draw(st.sampled_from([(), (2,), (2, 2)]))
    shape = (batch, num_classes, *extra)
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale_of_logits = draw(st.sampled_from([0.01, 0.3, 3.0, 30.0]))
    counts = draw(st.lists(st.integers(1, 10**5), min_size=num_classes, max_size=num_classes))
    target = torch.randint(0, num_classes, (batch, *extra), generator=generator)
    ignore = draw(st.sampled_from([None, -100, 0]))
    if ignore is not None:
        target.view(-1)[0] = ignore
    case: dict[str, Any] = {
        "x": torch.randn(shape, generator=generator, dtype=torch.float64) * scale_of_logits,
        "target": target.to(
            draw(st.sampled_from([torch.int64, torch.int32])) if ignore != -100 else torch.int64
        ),
        "margins": ldam_margins_oracle(counts, draw(st.sampled_from([0.1, 0.5, 1.0]))),
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
        "options": {
            "gamma": draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])),
            "scale": draw(st.sampled_from([1.0, 10.0, 30.0, 64.0])),
            "reduction": draw(st.sampled_from(REDUCTIONS)),
        },
    }
    if ignore is not None:
        case["options"]["ignore_index"] = ignore
    if draw(st.booleans()):
        case["options"]["weight"] = draw(
            st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=num_classes, max_size=num_classes)
        )
    if draw(st.booleans()):
        case["options"]["alpha"] = draw(st.sampled_from([0.25, 1.0]))
    return case


@settings(max_examples=40, deadline=None, derandomize=True)
@given(_ldam_case())
def test_ldam_loss_randomized(case: dict[str, Any]) -> None:
    dtype, options = case["dtype"], case["options"]
    x = case["x"].to(dtype)
    out = focalkit.ldam_loss(x, case["target"], case["margins"], **options)
    assert out.dtype == dtype
    expected = ldam_oracle(x.double(), case["target"].long(), case["margins"], **options)
    actual = out.double().numpy()
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    # float32: the scaled logits carry scale * eps * |x| each
    eps = torch.finfo(dtype).eps
    atol = 16 * eps * options["scale"] * (1.0 + float(x.abs().max()))
    if options["reduction"] == "sum":
        atol *= max(1, case["target"].numel())
    np.testing.assert_allclose(actual, expected, rtol=64 * eps, atol=atol)
