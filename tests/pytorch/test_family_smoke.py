"""Sanity checks of the focal family at the points where each member reduces to a loss PyTorch
or focalkit already has, plus the construction of each module and a few clear errors.

The thorough tests (float64 oracles, gradients, peers, the numerics) are in the other
``test_family_*.py`` files; these are the quick checks that each member is wired as documented.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import focalkit
from focalkit.torch import _kernels

pytestmark = pytest.mark.usefixtures("one_thread")

C = 5


def _logits(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * 3).requires_grad_()


def _indices(*shape: int, seed: int = 1, classes: int = C) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, shape, generator=generator)


def _value_and_grad(loss: torch.Tensor, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    (grad,) = torch.autograd.grad(loss.sum(), input)
    return loss.detach(), grad


def _assert_same(first: torch.Tensor, second: torch.Tensor, input: torch.Tensor) -> None:
    value, grad = _value_and_grad(first, input)
    expected_value, expected_grad = _value_and_grad(second, input)
    torch.testing.assert_close(value, expected_value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


# logit_adjustment and logit_offset


def test_logit_adjustment_is_tau_log_prior() -> None:
    counts = np.array([500, 120, 30, 7, 1])
    expected = 0.5 * np.log(counts / counts.sum())
    np.testing.assert_allclose(focalkit.logit_adjustment(counts, tau=0.5), expected, rtol=1e-13)


def test_logit_adjustment_names_the_empty_class() -> None:
    with pytest.raises(ValueError, match=r"logit_adjustment\(\): class 2 has count 0"):
        focalkit.logit_adjustment([3, 1, 0, 4])


@pytest.mark.parametrize("kernels", [True, False])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    "options",
    [{}, {"weight": [1.0, 2.0, 0.5, 1.0, 3.0]}, {"label_smoothing": 0.2}, {"ignore_index": 1}],
    ids=["plain", "weight", "smoothing", "ignore"],
)
def test_logit_offset_is_cross_entropy_of_shifted_logits(
    kernels: bool, reduction: str, options: dict[str, object]
) -> None:
    input, target = _logits(6, C, 3), _indices(6, 3)
    offset = torch.tensor(focalkit.logit_adjustment([50, 20, 9, 4, 1]))
    torch_options = dict(options)
    if "weight" in torch_options:
        torch_options["weight"] = torch.tensor(torch_options["weight"], dtype=torch.float64)
    with _kernels.use_kernels(kernels):
        loss = focalkit.softmax_focal_loss(
            input, target, reduction=reduction, gamma=0.0, logit_offset=offset, **options
        )
    shifted = input + offset.reshape(1, C, 1)
    _assert_same(
        loss, F.cross_entropy(shifted, target, reduction=reduction, **torch_options), input
    )


def test_logit_offset_with_probability_targets_and_focal_term() -> None:
    input = _logits(4, C)
    target = torch.softmax(_logits(4, C, seed=3).detach(), 1)
    offset = [0.5, -1.0, 0.0, 2.0, -0.25]
    loss = focalkit.softmax_focal_loss(input, target, gamma=1.5, logit_offset=offset)
    shifted = input + torch.tensor(offset, dtype=torch.float64)
    _assert_same(loss, focalkit.softmax_focal_loss(shifted, target, gamma=1.5), input)


def test_logit_offset_on_the_fused_linear_loss_is_an_extra_bias() -> None:
    generator = torch.Generator().manual_seed(4)
    hidden = torch.randn(9, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    head = torch.randn(C, 4, generator=generator, dtype=torch.float64)
    bias = torch.randn(C, generator=generator, dtype=torch.float64)
    target = _indices(9)
    offset = torch.tensor(focalkit.logit_adjustment([9, 7, 5, 3, 1]))
    for chunk_size in (None, 4):
        loss = focalkit.linear_softmax_focal_loss(
            hidden, head, target, bias=bias, gamma=0.0, chunk_size=chunk_size, logit_offset=offset
        )
        expected = F.cross_entropy(F.linear(hidden, head, bias) + offset, target)
        _assert_same(loss, expected, hidden)


def test_focal_loss_module_keeps_the_offset_as_a_buffer() -> None:
    offset = focalkit.logit_adjustment([4, 2, 1])
    criterion = focalkit.FocalLoss(gamma=0.0, logit_offset=offset)
    assert "logit_offset" in dict(criterion.named_buffers())
    assert repr(criterion).endswith(f"logit_offset={[round(v, 4) for v in offset.tolist()]})")
    input, target = _logits(5, 3), _indices(5, classes=3)
    # A sequence or an array becomes a buffer in the default dtype, as a module's weight does.
    expected = F.cross_entropy(input + torch.tensor(offset, dtype=torch.float32).double(), target)
    _assert_same(criterion(input, target), expected, input)
    linear = focalkit.LinearFocalLoss(logit_offset=offset)
    assert "logit_offset" in dict(linear.named_buffers())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: focalkit.softmax_focal_loss(
                torch.zeros(2, C), torch.zeros(2, dtype=torch.long), logit_offset=[0.0] * 4
            ),
            r"softmax_focal_loss\(\): logit_offset must have one value per class \(5 classes\)",
        ),
        (
            lambda: focalkit.FocalLoss(logit_offset=[[0.0, 1.0]]),
            r"FocalLoss\(\): logit_offset must be a 1-D sequence",
        ),
        (lambda: focalkit.logit_adjustment([1, 2], tau=-1.0), r"tau must be >= 0"),
    ],
)
def test_logit_offset_errors(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


# poly_softmax_focal_loss


@pytest.mark.parametrize("kernels", [True, False])
def test_poly_softmax_at_epsilon_zero_is_the_focal_loss(kernels: bool) -> None:
    input, target = _logits(7, C), _indices(7)
    options = {"weight": [1.0, 2.0, 0.5, 1.0, 3.0], "alpha": [0.5, 1.0, 1.0, 2.0, 0.25]}
    with _kernels.use_kernels(kernels):
        loss = focalkit.poly_softmax_focal_loss(input, target, epsilon=0.0, gamma=2.0, **options)
    _assert_same(loss, focalkit.softmax_focal_loss(input, target, gamma=2.0, **options), input)


@pytest.mark.parametrize("kernels", [True, False])
@pytest.mark.parametrize("epsilon", [1.0, -1.0, 2.5])
def test_poly_softmax_at_gamma_zero_is_poly1_cross_entropy(kernels: bool, epsilon: float) -> None:
    input, target = _logits(8, C, 2), _indices(8, 2)
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    with _kernels.use_kernels(kernels):
        loss = focalkit.poly_softmax_focal_loss(input, target, weight, epsilon=epsilon)
    p_t = torch.softmax(input, 1).gather(1, target.unsqueeze(1)).squeeze(1)
    w_t = weight[target]
    total = F.cross_entropy(input, target, weight, reduction="sum")
    expected = (total + epsilon * (w_t * (1 - p_t)).sum()) / w_t.sum()
    _assert_same(loss, expected, input)


def test_poly_softmax_on_probabilities_is_optax_poly_loss() -> None:
    input = _logits(6, C)
    target = torch.softmax(_logits(6, C, seed=5).detach(), 1)
    loss = focalkit.poly_softmax_focal_loss(input, target, epsilon=2.0, reduction="none")
    one_minus_pt = (target * (1 - torch.softmax(input, 1))).sum(1)
    expected = F.cross_entropy(input, target, reduction="none") + 2.0 * one_minus_pt
    _assert_same(loss, expected, input)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_poly_softmax_kernel_matches_its_definition(gamma: float, reduction: str) -> None:
    input, target = _logits(9, C, 2), _indices(9, 2)
    target[0, 0] = -100
    options = {"weight": [1.0, 2.0, 0.5, 1.0, 3.0], "alpha": 0.5}
    losses = []
    for kernels in (True, False):
        with _kernels.use_kernels(kernels):
            loss = focalkit.poly_softmax_focal_loss(
                input, target, reduction=reduction, epsilon=1.5, gamma=gamma, **options
            )
        losses.append(loss)
    _assert_same(*losses, input)


def test_poly_softmax_is_finite_at_extreme_logits() -> None:
    input = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], requires_grad=True)
    for gamma in (0.0, 0.5, 2.0):
        for kernels in (True, False):
            with _kernels.use_kernels(kernels):
                loss = focalkit.poly_softmax_focal_loss(input, torch.tensor([0, 0]), gamma=gamma)
            (grad,) = torch.autograd.grad(loss, input)
            assert torch.isfinite(loss)
            assert torch.isfinite(grad).all()


def test_poly_focal_loss_module() -> None:
    criterion = focalkit.PolyFocalLoss([1.0, 2.0, 0.5], epsilon=-1.0, gamma=1.0)
    assert "epsilon=-1.0" in repr(criterion)
    input, target = _logits(4, 3), _indices(4, classes=3)
    expected = focalkit.poly_softmax_focal_loss(
        input, target, criterion.weight, epsilon=-1.0, gamma=1.0
    )
    _assert_same(criterion(input, target), expected, input)
    with pytest.raises(ValueError, match=r"PolyFocalLoss\(\): epsilon must be a finite real"):
        focalkit.PolyFocalLoss(epsilon=float("inf"))
    with pytest.raises(ValueError, match=r"poly_softmax_focal_loss\(\): gamma must be >= 0"):
        focalkit.poly_softmax_focal_loss(input, target, gamma=-1.0)


# poly_sigmoid_focal_loss


def _soft_labels(*shape: int, seed: int = 6) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    y = torch.rand(shape, generator=generator, dtype=torch.float64)
    y[..., 0] = 0.0
    y[..., 1] = 1.0
    return y


def test_poly_sigmoid_at_epsilon_zero_is_the_sigmoid_focal_loss() -> None:
    input, target = _logits(6, 4), _soft_labels(6, 4)
    options = {"weight": torch.rand(4, dtype=torch.float64), "alpha": 0.3, "gamma": 1.5}
    loss = focalkit.poly_sigmoid_focal_loss(input, target, epsilon=0.0, **options)
    _assert_same(loss, focalkit.sigmoid_focal_loss(input, target, **options), input)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_poly_sigmoid_at_gamma_zero_is_poly1_binary_cross_entropy(reduction: str) -> None:
    input, target = _logits(5, 3), _soft_labels(5, 3)
    loss = focalkit.poly_sigmoid_focal_loss(
        input, target, reduction=reduction, epsilon=-0.5, gamma=0.0, alpha=None
    )
    p = torch.sigmoid(input)
    one_minus_pt = target * (1 - p) + (1 - target) * p
    per_element = F.binary_cross_entropy_with_logits(input, target, reduction="none")
    per_element = per_element - 0.5 * one_minus_pt
    expected = {"none": per_element, "mean": per_element.mean(), "sum": per_element.sum()}
    _assert_same(loss, expected[reduction], input)


def test_poly_sigmoid_is_finite_at_extreme_logits() -> None:
    input = torch.tensor([1e4, -1e4, 1e4, -1e4, 30.0], requires_grad=True)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5])
    for gamma in (0.0, 0.5, 2.0):
        loss = focalkit.poly_sigmoid_focal_loss(input, target, gamma=gamma, reduction="sum")
        (grad,) = torch.autograd.grad(loss, input)
        assert torch.isfinite(loss)
        assert torch.isfinite(grad).all()


def test_poly_sigmoid_focal_loss_module() -> None:
    criterion = focalkit.PolySigmoidFocalLoss(alpha=[0.25, 0.75], epsilon=2.0)
    assert "alpha" in dict(criterion.named_buffers())
    input, target = _logits(3, 2), _soft_labels(3, 2)
    expected = focalkit.poly_sigmoid_focal_loss(input, target, epsilon=2.0, alpha=criterion.alpha)
    _assert_same(criterion(input, target), expected, input)
    with pytest.raises(ValueError, match=r"PolySigmoidFocalLoss\(\): alpha values must be in"):
        focalkit.PolySigmoidFocalLoss(alpha=[1.5])


# ldam_margins and ldam_loss


def test_ldam_margins_follow_the_quarter_power() -> None:
    counts = np.array([4000, 250, 16, 1000])
    margins = focalkit.ldam_margins(counts, max_margin=0.4)
    expected = counts**-0.25 * (0.4 / np.max(counts**-0.25))  # the authors' m_list
    np.testing.assert_allclose(margins, expected, rtol=1e-13)
    with pytest.raises(ValueError, match=r"ldam_margins\(\): class 1 has count 0"):
        focalkit.ldam_margins([5, 0, 1])


@pytest.mark.parametrize("kernels", [True, False])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_ldam_at_gamma_zero_is_the_authors_loss(kernels: bool, reduction: str) -> None:
    input, target = _logits(10, C, seed=8), _indices(10, seed=9)
    margins = torch.tensor(focalkit.ldam_margins([300, 80, 20, 5, 1]))
    weight = torch.tensor([0.2, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    with _kernels.use_kernels(kernels):
        loss = focalkit.ldam_loss(input, target, margins, weight, reduction=reduction, scale=10.0)
    # LDAM-DRW's LDAMLoss.forward: the margin is subtracted at the target class only
    index = torch.zeros_like(input, dtype=torch.bool).scatter_(1, target.view(-1, 1), True)
    batch_m = (margins[None, :] @ index.double().t()).view(-1, 1)
    output = torch.where(index, input - batch_m, input)
    expected = F.cross_entropy(10.0 * output, target, weight=weight, reduction=reduction)
    _assert_same(loss, expected, input)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_ldam_kernel_matches_its_definition_with_ignored_targets(gamma: float) -> None:
    input, target = _logits(6, C, 3, seed=10), _indices(6, 3, seed=11)
    target[1, 2] = 7
    margins = focalkit.ldam_margins([30, 20, 10, 5, 1])
    losses = []
    for kernels in (True, False):
        with _kernels.use_kernels(kernels):
            losses.append(
                focalkit.ldam_loss(input, target, margins, ignore_index=7, gamma=gamma, alpha=0.5)
            )
    _assert_same(*losses, input)


def test_ldam_loss_module_and_errors() -> None:
    criterion = focalkit.LDAMLoss([0.5, 0.25, 0.1], scale=16.0, gamma=1.0)
    assert "margins" in dict(criterion.named_buffers())
    assert repr(criterion).startswith("LDAMLoss(margins=[0.5, 0.25, 0.1], scale=16.0, gamma=1.0")
    input, target = _logits(4, 3), _indices(4, classes=3)
    expected = focalkit.ldam_loss(input, target, criterion.margins, scale=16.0, gamma=1.0)
    _assert_same(criterion(input, target), expected, input)
    with pytest.raises(ValueError, match=r"LDAMLoss\(\): scale must be a positive finite number"):
        focalkit.LDAMLoss([0.5, 0.1], scale=0.0)
    with pytest.raises(ValueError, match=r"LDAMLoss\(\): margins values must be >= 0"):
        focalkit.LDAMLoss([0.5, -0.1])
    with pytest.raises(ValueError, match=r"ldam_loss\(\): margins must have one value per class"):
        focalkit.ldam_loss(input, target, [0.5, 0.1])
    with pytest.raises(TypeError, match=r"ldam_loss\(\): target must hold class indices"):
        focalkit.ldam_loss(input, torch.softmax(input.detach(), 1), [0.5, 0.2, 0.1])


# asymmetric_loss, varifocal_loss, quality_focal_loss, distribution_focal_loss


def _hard_labels(*shape: int, seed: int = 12) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=generator) < 0.3).double()


def test_asymmetric_loss_reduces_to_bce_and_to_the_focal_loss() -> None:
    input, soft, hard = _logits(6, 4), _soft_labels(6, 4), _hard_labels(6, 4)
    loss = focalkit.asymmetric_loss(input, soft, gamma_neg=0.0, clip=0.0)
    _assert_same(loss, F.binary_cross_entropy_with_logits(input, soft), input)
    loss = focalkit.asymmetric_loss(input, hard, gamma_pos=1.5, gamma_neg=1.5, clip=0.0)
    expected = focalkit.sigmoid_focal_loss(input, hard, gamma=1.5, alpha=None)
    _assert_same(loss, expected, input)


def test_asymmetric_loss_is_timms_for_hard_labels() -> None:
    input, target = _logits(5, 6), _hard_labels(5, 6)
    loss = focalkit.asymmetric_loss(input, target, reduction="sum", gamma_pos=1.0)
    # timm's AsymmetricLossMultiLabel.forward (gamma_neg=4, gamma_pos=1, clip=0.05, eps=1e-8)
    xs_pos = torch.sigmoid(input)
    xs_neg = (1 - xs_pos + 0.05).clamp(max=1)
    los = target * torch.log(xs_pos.clamp(min=1e-8)) + (1 - target) * torch.log(
        xs_neg.clamp(min=1e-8)
    )
    pt = xs_pos * target + xs_neg * (1 - target)
    expected = -(los * torch.pow(1 - pt, 1.0 * target + 4.0 * (1 - target))).sum()
    _assert_same(loss, expected, input)


def test_asymmetric_loss_discards_easy_negatives_exactly() -> None:
    input = torch.tensor([-4.0, -3.0, 0.0], dtype=torch.float64, requires_grad=True)
    target = torch.zeros(3, dtype=torch.float64)
    loss = focalkit.asymmetric_loss(input, target, reduction="none", clip=0.05)
    (grad,) = torch.autograd.grad(loss.sum(), input)
    assert loss[:2].tolist() == [0.0, 0.0]  # sigmoid(-3) = 0.047 <= clip
    assert grad[:2].tolist() == [0.0, 0.0]
    assert loss[2] > 0


def test_varifocal_loss_is_mmdetections() -> None:
    input = _logits(8, 3)
    target = _soft_labels(8, 3) * _hard_labels(8, 3, seed=13)
    weight = torch.rand(8, 1, dtype=torch.float64)
    loss = focalkit.varifocal_loss(input, target, weight, divisor=5.0)
    # mmdetection's varifocal_loss (iou_weighted=True) with weight_reduce_loss(avg_factor=5)
    p = input.sigmoid()
    focal_weight = (
        target * (target > 0).double() + 0.75 * (p - target).abs().pow(2.0) * (target <= 0).double()
    )
    per_element = F.binary_cross_entropy_with_logits(input, target, reduction="none")
    expected = (per_element * focal_weight * weight).sum() / 5.0
    _assert_same(loss, expected, input)


def test_quality_focal_loss_is_mmdetections_and_the_focal_loss_on_hard_labels() -> None:
    input = _logits(7, 3)
    label = torch.tensor([0, 2, 3, 1, 3, 0, 2])  # 3: background
    score = torch.rand(7, dtype=torch.float64)
    target = F.one_hot(label, 4)[:, :3].double() * score[:, None]
    loss = focalkit.quality_focal_loss(input, target, reduction="none").sum(1)
    # mmdetection's quality_focal_loss(pred, (label, score), beta=2)
    p = input.sigmoid()
    expected = F.binary_cross_entropy_with_logits(
        input, torch.zeros_like(input), reduction="none"
    ) * p.pow(2.0)
    pos = (label < 3).nonzero().squeeze(1)
    expected = expected.index_put(
        (pos, label[pos]),
        F.binary_cross_entropy_with_logits(input[pos, label[pos]], score[pos], reduction="none")
        * (score[pos] - p[pos, label[pos]]).abs().pow(2.0),
    )
    _assert_same(loss, expected.sum(1), input)
    hard = _hard_labels(7, 3)
    expected = focalkit.sigmoid_focal_loss(input, hard, gamma=1.5, alpha=None)
    _assert_same(focalkit.quality_focal_loss(input, hard, beta=1.5), expected, input)


def test_distribution_focal_loss_is_mmdetections() -> None:
    input = _logits(9, 8)
    generator = torch.Generator().manual_seed(14)
    target = torch.rand(9, generator=generator, dtype=torch.float64) * 6.999
    weight = torch.rand(9, generator=generator, dtype=torch.float64)
    loss = focalkit.distribution_focal_loss(input, target, weight)
    left = target.long()
    right = left + 1
    expected = F.cross_entropy(input, left, reduction="none") * (right.double() - target)
    expected = expected + F.cross_entropy(input, right, reduction="none") * (target - left)
    _assert_same(loss, (expected * weight).mean(), input)
    # the last bin: mmdetection would index bin n + 1; here it is CE(x, n)
    last = focalkit.distribution_focal_loss(input, torch.full((9,), 7.0), reduction="none")
    _assert_same(last, F.cross_entropy(input, torch.full((9,), 7), reduction="none"), input)


@pytest.mark.parametrize(
    "loss",
    [
        lambda x, y: focalkit.asymmetric_loss(x, y, gamma_pos=0.5),
        lambda x, y: focalkit.varifocal_loss(x, y, gamma=0.5),
        lambda x, y: focalkit.quality_focal_loss(x, y, beta=0.5),
        lambda x, y: focalkit.poly_sigmoid_focal_loss(x, y, gamma=0.5),
    ],
    ids=["asymmetric", "varifocal", "quality", "poly"],
)
def test_sigmoid_family_is_finite_at_extreme_logits_and_passes_nan_on(loss: object) -> None:
    input = torch.tensor([1e4, -1e4, 1e4, -1e4, 200.0, -200.0, 0.3], requires_grad=True)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.4, 0.7, 0.5])
    value = loss(input, target)  # type: ignore[operator]
    (grad,) = torch.autograd.grad(value, input)
    assert torch.isfinite(value)
    assert torch.isfinite(grad).all()
    assert torch.isnan(loss(torch.tensor([0.1, float("nan")]), target[:2]))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: focalkit.asymmetric_loss(torch.zeros(2), torch.zeros(2), clip=1.0),
            ValueError,
            r"asymmetric_loss\(\): clip must be a real number in \[0, 1\)",
        ),
        (
            lambda: focalkit.AsymmetricLoss(gamma_neg=-1.0),
            ValueError,
            r"AsymmetricLoss\(\): gamma_neg must be >= 0",
        ),
        (
            lambda: focalkit.varifocal_loss(torch.zeros(2), torch.zeros(3)),
            ValueError,
            r"varifocal_loss\(\): expected target of shape \(2,\)",
        ),
        (
            lambda: focalkit.QualityFocalLoss(beta=-2.0),
            ValueError,
            r"QualityFocalLoss\(\): beta must be >= 0",
        ),
        (
            lambda: focalkit.quality_focal_loss(torch.zeros(2), torch.tensor([0.5, 1.5])),
            ValueError,
            r"quality_focal_loss\(\): target values must be in \[0, 1\]",
        ),
        (
            lambda: focalkit.distribution_focal_loss(torch.zeros(2, 5), torch.tensor([1.0, 4.5])),
            ValueError,
            r"distribution_focal_loss\(\): target values must be in \[0, 4\]",
        ),
        (
            lambda: focalkit.distribution_focal_loss(torch.zeros(2, 1), torch.zeros(2)),
            ValueError,
            r"distribution_focal_loss\(\): input must have shape \(N, n \+ 1\)",
        ),
        (
            lambda: focalkit.VarifocalLoss(reduction="avg"),
            ValueError,
            r"VarifocalLoss\(\): reduction must be one of",
        ),
    ],
)
def test_sigmoid_family_errors(call: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]


def test_family_modules_call_their_functions() -> None:
    input, target = _logits(4, 3), _soft_labels(4, 3)
    weight = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    cases = [
        (
            focalkit.AsymmetricLoss(weight, gamma_pos=1.0),
            focalkit.asymmetric_loss,
            {"gamma_pos": 1.0},
        ),
        (focalkit.VarifocalLoss(weight, alpha=0.5), focalkit.varifocal_loss, {"alpha": 0.5}),
        (focalkit.QualityFocalLoss(weight, beta=1.0), focalkit.quality_focal_loss, {"beta": 1.0}),
    ]
    for module, function, options in cases:
        expected = function(input, target, module.weight, divisor=3.0, **options)
        _assert_same(module(input, target, divisor=3.0), expected, input)
    bins = _logits(4, 6)
    distances = torch.tensor([0.0, 2.5, 4.99, 5.0], dtype=torch.float64)
    per_sample = torch.tensor([1.0, 0.5, 2.0, 0.0], dtype=torch.float64)
    module = focalkit.DistributionFocalLoss(reduction="sum")
    expected = focalkit.distribution_focal_loss(bins, distances, per_sample, "sum")
    _assert_same(module(bins, distances, per_sample), expected, bins)


def test_shifted_softmax_kernel_flushes_only_negligible_probabilities() -> None:
    # LDAM's scale spreads the logits beyond float32's exponent range: the kernel flushes the
    # probabilities below 1e-19 of the largest to 0, which the definition keeps.
    generator = torch.Generator().manual_seed(15)
    input = (torch.randn(64, 50, generator=generator) * 3).requires_grad_()
    input.data[0, 1] = -torch.inf  # a masked logit
    target = torch.randint(2, 50, (64,), generator=generator)
    margins = focalkit.ldam_margins(np.arange(1, 51))
    results = []
    for kernels in (True, False):
        with _kernels.use_kernels(kernels):
            loss = focalkit.ldam_loss(input, target, margins, gamma=1.0)
        results.append((loss.detach(), torch.autograd.grad(loss, input)[0]))
    (loss, grad), (expected_loss, expected_grad) = results
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-7)
    assert grad[0, 1] == 0.0


ELEMENTWISE = [
    ("asymmetric", lambda x, y, **o: focalkit.asymmetric_loss(x, y, gamma_pos=0.5, **o)),
    ("asymmetric clip 0", lambda x, y, **o: focalkit.asymmetric_loss(x, y, clip=0.0, **o)),
    ("asymmetric gamma 0", lambda x, y, **o: focalkit.asymmetric_loss(x, y, gamma_neg=0.0, **o)),
    ("varifocal", lambda x, y, **o: focalkit.varifocal_loss(x, y, **o)),
    ("varifocal gamma 0.5", lambda x, y, **o: focalkit.varifocal_loss(x, y, gamma=0.5, **o)),
    ("quality", lambda x, y, **o: focalkit.quality_focal_loss(x, y, **o)),
    ("quality beta 0.5", lambda x, y, **o: focalkit.quality_focal_loss(x, y, beta=0.5, **o)),
    ("poly", lambda x, y, **o: focalkit.poly_sigmoid_focal_loss(x, y, **o)),
    ("poly gamma 0.5", lambda x, y, **o: focalkit.poly_sigmoid_focal_loss(x, y, gamma=0.5, **o)),
]


@pytest.mark.parametrize(("name", "loss"), ELEMENTWISE, ids=[name for name, _ in ELEMENTWISE])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape", [(), (7,), (5, 4), (3, 4, 2)], ids=["0d", "1d", "2d", "3d"])
def test_elementwise_kernel_matches_its_definition(
    name: str, loss: object, reduction: str, shape: tuple[int, ...]
) -> None:
    input = (_logits(*shape, seed=16) * 3).detach().requires_grad_()
    target = (
        _soft_labels(*shape, seed=17) if shape and shape[-1] > 1 else torch.rand(shape).double()
    )
    target = target * (torch.rand(shape, dtype=torch.float64) < 0.6)  # varifocal's zeros
    weight = torch.rand(shape[-1:], dtype=torch.float64) if shape else None
    results = []
    for kernels in (True, False):
        with _kernels.use_kernels(kernels):
            value = loss(input, target, weight=weight, reduction=reduction)  # type: ignore[operator]
        results.append(value)
    _assert_same(*results, input)


@pytest.mark.parametrize(("name", "loss"), ELEMENTWISE[::3], ids=[n for n, _ in ELEMENTWISE[::3]])
def test_elementwise_kernel_in_half_precision(name: str, loss: object) -> None:
    input = (_logits(6, 5, seed=18) * 3).detach().half().float()
    target = _soft_labels(6, 5).float()
    expected = loss(input, target)  # type: ignore[operator]
    half = input.half().requires_grad_()
    value = loss(half, target.half())  # type: ignore[operator]
    assert value.dtype == torch.float16
    value.backward()
    assert half.grad is not None
    assert half.grad.dtype == torch.float16
    torch.testing.assert_close(value.float(), expected, rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape", [(9, 6), (4, 6, 3)], ids=["2d", "3d"])
@pytest.mark.parametrize("weighted", [False, True])
def test_distribution_kernel_matches_its_definition(
    reduction: str, shape: tuple[int, ...], weighted: bool
) -> None:
    input = _logits(*shape, seed=19)
    target_shape = (shape[0], *shape[2:])
    generator = torch.Generator().manual_seed(20)
    target = torch.rand(target_shape, generator=generator, dtype=torch.float64) * 5.0
    target.view(-1)[0] = 5.0  # the last bin
    target.view(-1)[1] = 0.0
    weight = (
        torch.rand(target_shape, generator=generator, dtype=torch.float64) if weighted else None
    )
    results = []
    for kernels in (True, False):
        with _kernels.use_kernels(kernels):
            results.append(
                focalkit.distribution_focal_loss(input, target, weight, reduction, divisor=None)
            )
    _assert_same(*results, input)
