"""What every member of the focal family owes, checked the same way for each.

Each member is one loss call with fixed targets and settings beside its float64 torch formula
from ``tests/oracles.py`` (written from the paper, not from focalkit). For each: gradcheck and
gradgradcheck in float64, finite values and gradients at logits of +-1e4 and +-100 (and the
formula's value there), NaN in gives NaN out, half precision computed in float32 and returned in
the input's dtype, float32 under ``torch.autocast``, ``torch.compile(fullgraph=True)`` parity,
``divisor=`` and an unknown reduction. The per-loss files hold the oracle grids, the parity
points, the peers and the randomized tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest
import torch
from oracles import (
    asymmetric_reference,
    distribution_focal_reference,
    ldam_reference,
    poly_sigmoid_reference,
    poly_softmax_reference,
    quality_focal_reference,
    softmax_focal_reference,
    varifocal_reference,
)
from torch.autograd import gradcheck, gradgradcheck

import focalkit

pytestmark = pytest.mark.usefixtures("one_thread")

Loss = Callable[..., torch.Tensor]


class Member(NamedTuple):
    """One member: ``loss(input, target, reduction=..., **extra)`` and its float64 formula
    ``reference(input, target, reduction=...)``; ``target(shape, generator)`` and ``shape``
    make its inputs; ``elementwise`` says whether a NaN logit stays in its own element."""

    loss: Loss
    reference: Loss
    shape: tuple[int, ...]
    target: Callable[[tuple[int, ...], torch.Generator], torch.Tensor]
    elementwise: bool


COUNTS = [500, 120, 40, 7]
WEIGHT = [0.5, 2.0, 1.0, 1.5]
ALPHA = [0.1, 0.4, 0.3, 0.2]


OFFSET = torch.tensor(focalkit.logit_adjustment(COUNTS, 0.7))
MARGINS = torch.tensor(focalkit.ldam_margins(COUNTS))  # a NumPy setting breaks a compiled graph


def _index_target(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
    target.view(-1)[1] = -100  # one ignored element
    return target


def _probability_target(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64).softmax(1)


def _soft_target(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    target = torch.rand(shape, generator=generator, dtype=torch.float64)
    target.view(-1)[::3] = target.view(-1)[::3].round()  # hard labels among the soft ones
    return target


def _iou_target(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    iou = torch.rand(shape, generator=generator, dtype=torch.float64)
    return torch.where(torch.rand(shape, generator=generator) < 0.5, iou, torch.zeros_like(iou))


def _distance_target(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    n = shape[1] - 1
    target = torch.rand(shape[0], generator=generator, dtype=torch.float64) * n
    target[-2:] = torch.tensor([0.0, float(n)])  # both ends
    return target


def _sample_weight(target: torch.Tensor) -> torch.Tensor:
    """One weight per sample, as distribution focal loss takes them."""
    return torch.linspace(0.5, 2.0, target.shape[0], dtype=torch.float64)


def _class_view(values: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.to(torch.float64).reshape(1, -1, *([1] * (ndim - 2)))


MEMBERS: dict[str, Member] = {
    "logit-adjusted": Member(
        lambda x, t, **kw: focalkit.softmax_focal_loss(
            x, t, WEIGHT, gamma=1.5, alpha=ALPHA, logit_offset=OFFSET, **kw
        ),
        lambda x, t, **kw: softmax_focal_reference(
            x + _class_view(OFFSET, x.dim()), t, gamma=1.5, alpha=ALPHA, weight=WEIGHT, **kw
        ),
        (3, 4, 2),
        _index_target,
        elementwise=False,
    ),
    "poly softmax": Member(
        lambda x, t, **kw: focalkit.poly_softmax_focal_loss(
            x, t, WEIGHT, label_smoothing=0.1, epsilon=-1.0, gamma=0.5, alpha=ALPHA, **kw
        ),
        lambda x, t, **kw: poly_softmax_reference(
            x, t, weight=WEIGHT, label_smoothing=0.1, epsilon=-1.0, gamma=0.5, alpha=ALPHA, **kw
        ),
        (3, 4, 2),
        _index_target,
        elementwise=False,
    ),
    "poly softmax probabilities": Member(
        lambda x, t, **kw: focalkit.poly_softmax_focal_loss(
            x, t, WEIGHT, epsilon=2.0, gamma=2.0, **kw
        ),
        lambda x, t, **kw: poly_softmax_reference(
            x, t, weight=WEIGHT, epsilon=2.0, gamma=2.0, **kw
        ),
        (3, 4),
        _probability_target,
        elementwise=False,
    ),
    "poly sigmoid": Member(
        lambda x, t, **kw: focalkit.poly_sigmoid_focal_loss(
            x, t, torch.tensor(WEIGHT), epsilon=1.5, gamma=0.5, alpha=0.3, **kw
        ),
        lambda x, t, **kw: poly_sigmoid_reference(
            x, t, weight=WEIGHT, epsilon=1.5, gamma=0.5, alpha=0.3, **kw
        ),
        (3, 4),
        _soft_target,
        elementwise=True,
    ),
    "LDAM": Member(
        lambda x, t, **kw: focalkit.ldam_loss(
            x, t, MARGINS, WEIGHT, scale=5.0, gamma=1.0, alpha=ALPHA, **kw
        ),
        lambda x, t, **kw: ldam_reference(
            x, t, MARGINS, scale=5.0, gamma=1.0, alpha=ALPHA, weight=WEIGHT, **kw
        ),
        (3, 4, 2),
        _index_target,
        elementwise=False,
    ),
    "asymmetric": Member(
        lambda x, t, **kw: focalkit.asymmetric_loss(
            x, t, torch.tensor(WEIGHT), gamma_pos=1.0, gamma_neg=3.0, clip=0.05, **kw
        ),
        lambda x, t, **kw: asymmetric_reference(
            x, t, weight=WEIGHT, gamma_pos=1.0, gamma_neg=3.0, clip=0.05, **kw
        ),
        (3, 4),
        _soft_target,
        elementwise=True,
    ),
    "varifocal": Member(
        lambda x, t, **kw: focalkit.varifocal_loss(
            x, t, torch.tensor(WEIGHT), alpha=0.6, gamma=1.5, **kw
        ),
        lambda x, t, **kw: varifocal_reference(x, t, weight=WEIGHT, alpha=0.6, gamma=1.5, **kw),
        (3, 4),
        _iou_target,
        elementwise=True,
    ),
    "quality focal": Member(
        lambda x, t, **kw: focalkit.quality_focal_loss(x, t, torch.tensor(WEIGHT), beta=1.5, **kw),
        lambda x, t, **kw: quality_focal_reference(x, t, weight=WEIGHT, beta=1.5, **kw),
        (3, 4),
        _soft_target,
        elementwise=True,
    ),
    "distribution focal": Member(
        lambda x, t, **kw: focalkit.distribution_focal_loss(x, t, _sample_weight(t), **kw),
        lambda x, t, **kw: distribution_focal_reference(x, t, weight=_sample_weight(t), **kw),
        (4, 5),
        _distance_target,
        elementwise=False,
    ),
}

REDUCTIONS = ["none", "mean", "sum"]


def _inputs(
    member: Member, dtype: torch.dtype = torch.float64, seed: int = 0, scale: float = 3.0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(member.shape, generator=generator, dtype=torch.float64) * scale
    target = member.target(member.shape, generator)
    if target.is_floating_point():
        target = target.to(dtype if dtype in (torch.float32, torch.float64) else torch.float32)
    return x.to(dtype), target


@pytest.mark.parametrize("name", MEMBERS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_and_gradgradcheck(name: str, reduction: str) -> None:
    member = MEMBERS[name]
    x, target = _inputs(member)

    def fn(v: torch.Tensor) -> torch.Tensor:
        return member.loss(v, target, reduction=reduction)

    leaf = x.requires_grad_()
    assert gradcheck(fn, (leaf,), eps=1e-6, atol=1e-7, rtol=1e-5)
    assert gradgradcheck(fn, (leaf,), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("name", MEMBERS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_extreme_logits_give_finite_values_and_gradients(name: str, dtype: torch.dtype) -> None:
    member = MEMBERS[name]
    for seed, magnitude in ((1, 1e4), (2, 100.0)):
        x, target = _inputs(member, dtype, seed=seed)
        x = torch.sign(x) * magnitude  # every logit at +-magnitude
        x.view(-1)[0] = 0.0
        leaf = x.requires_grad_()
        for reduction in REDUCTIONS:
            leaf.grad = None
            out = member.loss(leaf, target, reduction=reduction)
            out.backward(torch.ones_like(out))
            assert torch.isfinite(out).all(), f"{name} {reduction} at {magnitude}: {out}"
            assert leaf.grad is not None
            assert torch.isfinite(leaf.grad).all(), f"{name} {reduction} gradient at {magnitude}"
            expected = member.reference(x.detach().double(), target, reduction=reduction)
            # a float32 logit of 1e4 is known to 1e-3 (what an offset added to it keeps)
            atol = 8 * torch.finfo(dtype).eps * magnitude
            torch.testing.assert_close(out.detach().double(), expected, rtol=1e-5, atol=atol)


@pytest.mark.parametrize("name", MEMBERS)
def test_nan_in_gives_nan_out(name: str) -> None:
    member = MEMBERS[name]
    x, target = _inputs(member, torch.float32)
    x.view(-1)[0] = float("nan")
    out = member.loss(x, target, reduction="none")
    assert out.view(-1)[0].isnan(), f"{name}: the NaN logit's element is {out.view(-1)[0]}"
    assert not out.view(-1)[-1].isnan(), f"{name}: the NaN reached another element"
    if member.elementwise:
        assert out.isnan().sum() == 1
    for reduction in ("mean", "sum"):
        assert member.loss(x, target, reduction=reduction).isnan()


@pytest.mark.parametrize("name", MEMBERS)
def test_half_precision_is_computed_in_float32(name: str, half_dtype: torch.dtype) -> None:
    member = MEMBERS[name]
    x, target = _inputs(member, torch.float32, seed=3)
    low = x.to(half_dtype)
    for reduction in REDUCTIONS:
        leaf = low.clone().requires_grad_()
        out = member.loss(leaf, target, reduction=reduction)
        assert out.dtype == half_dtype
        out.float().sum().backward()
        assert leaf.grad is not None
        assert leaf.grad.dtype == half_dtype
        assert torch.isfinite(leaf.grad).all()
        # the formula at the half-precision numbers, rounded once to the half dtype at the end
        expected = member.reference(low.double(), target, reduction=reduction)
        rtol = 8e-3 if half_dtype == torch.bfloat16 else 1e-3
        torch.testing.assert_close(out.double(), expected, rtol=rtol, atol=1e-3)


@pytest.mark.parametrize("name", MEMBERS)
def test_autocast_computes_in_float32(name: str, half_dtype: torch.dtype) -> None:
    member = MEMBERS[name]
    x, target = _inputs(member, torch.float32, seed=4)
    low = x.to(half_dtype)
    with torch.autocast("cpu", dtype=half_dtype):
        out = member.loss(low, target)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, member.loss(low.float(), target))


# compiling is slow: a few members, one of each kind of kernel
COMPILED = ["logit-adjusted", "LDAM", "poly sigmoid", "asymmetric", "distribution focal"]


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_fullgraph_matches_eager(name: str) -> None:
    member = MEMBERS[name]
    x, target = _inputs(member, torch.float32, seed=5)

    def fn(v: torch.Tensor) -> torch.Tensor:
        return member.loss(v, target, reduction="sum")

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="eager")
    results = []
    for call in (compiled, fn):
        leaf = x.clone().requires_grad_()
        out = call(leaf)
        out.backward()
        results.append((out.detach(), leaf.grad))
    torch.testing.assert_close(results[0], results[1])


@pytest.mark.parametrize("name", MEMBERS)
def test_divisor_divides_the_sum(name: str) -> None:
    member = MEMBERS[name]
    x, target = _inputs(member, seed=6)
    total = member.loss(x, target, reduction="sum")
    for divisor in (2.5, torch.tensor(7.0, dtype=torch.float64)):
        torch.testing.assert_close(member.loss(x, target, divisor=divisor), total / divisor)


@pytest.mark.parametrize("name", MEMBERS)
def test_unknown_reduction_is_an_error(name: str) -> None:
    member = MEMBERS[name]
    x, target = _inputs(member)
    with pytest.raises(ValueError, match=r"\(\): reduction must be one of 'none', 'mean', 'sum'"):
        member.loss(x, target, reduction="batchmean")


NUMPY_NAMES = ["logit_adjustment", "ldam_margins"]
TORCH_NAMES = [
    "poly_softmax_focal_loss",
    "PolyFocalLoss",
    "poly_sigmoid_focal_loss",
    "PolySigmoidFocalLoss",
    "ldam_loss",
    "LDAMLoss",
    "asymmetric_loss",
    "AsymmetricLoss",
    "varifocal_loss",
    "VarifocalLoss",
    "quality_focal_loss",
    "QualityFocalLoss",
    "distribution_focal_loss",
    "DistributionFocalLoss",
]


def test_members_are_public_in_both_namespaces() -> None:
    for name in NUMPY_NAMES + TORCH_NAMES:
        assert name in focalkit.__all__
    for name in TORCH_NAMES:
        assert name in focalkit.torch.__all__
        assert getattr(focalkit, name) is getattr(focalkit.torch, name)


@pytest.mark.parametrize("name", MEMBERS)
@pytest.mark.parametrize(
    "dtype", [torch.float64, torch.float32, torch.bfloat16], ids=["float64", "float32", "bf16"]
)
def test_many_row_chunks_match_the_formula(
    name: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the kernels take a few rows at a time: with chunks of a few elements, every chunk boundary
    # (and a last, shorter chunk) is crossed on a small input
    from focalkit.torch._kernels import family as family_kernels

    for constant in ("CHUNK", "SCRATCH_CHUNK", "ELEMENTWISE_CHUNK"):
        monkeypatch.setattr(family_kernels, constant, 7)
    member = MEMBERS[name]
    shape = (11, *member.shape[1:])
    generator = torch.Generator().manual_seed(7)
    x = (torch.randn(shape, generator=generator, dtype=torch.float64) * 3).to(dtype)
    target = member.target(shape, generator)
    if target.is_floating_point():
        target = target.to(dtype if dtype != torch.bfloat16 else torch.float32)
    for reduction in REDUCTIONS:
        leaf = x.clone().requires_grad_()
        out = member.loss(leaf, target, reduction=reduction)
        out.float().sum().backward()
        reference_leaf = x.detach().double().clone().requires_grad_()
        expected = member.reference(reference_leaf, target, reduction=reduction)
        expected.sum().backward()
        assert leaf.grad is not None
        assert reference_leaf.grad is not None
        tolerance = {
            torch.float64: {"rtol": 1e-10, "atol": 1e-12},
            torch.float32: {"rtol": 2e-5, "atol": 2e-6},
            torch.bfloat16: {"rtol": 2e-2, "atol": 2e-2},
        }[dtype]
        torch.testing.assert_close(out.double(), expected.detach(), **tolerance)
        torch.testing.assert_close(leaf.grad.double(), reference_leaf.grad, **tolerance)
