"""The oracles themselves, checked against facts that do not come from focalkit.

At ``gamma=0`` each oracle must be torch's own loss (``cross_entropy``, the BCE losses), over
reductions, options and shapes; the sigmoid oracle must be torchvision's formula at every gamma;
and a few values are worked out by hand. If these fail, no test that uses an oracle means anything.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from oracles import (
    asymmetric_oracle,
    asymmetric_reference,
    binary_focal_oracle,
    binary_focal_reference,
    distribution_focal_oracle,
    distribution_focal_reference,
    finite_difference_grad,
    ldam_drw_loss,
    ldam_margins_oracle,
    ldam_oracle,
    ldam_reference,
    logit_adjustment_oracle,
    mmdet_distribution_focal_loss,
    mmdet_quality_focal_loss,
    mmdet_quality_focal_loss_tensor_target,
    mmdet_varifocal_loss,
    mmdet_weight_reduce_loss,
    nll_focal_reference,
    poly_sigmoid_oracle,
    poly_sigmoid_reference,
    poly_softmax_oracle,
    poly_softmax_reference,
    quality_focal_oracle,
    quality_focal_reference,
    sigmoid_focal_oracle,
    sigmoid_focal_reference,
    softmax_focal_oracle,
    softmax_focal_prob_oracle,
    softmax_focal_reference,
    timm_asymmetric_loss_multilabel,
    torchvision_sigmoid_focal_loss,
    varifocal_oracle,
    varifocal_reference,
)

REDUCTIONS = ["none", "mean", "sum"]
SOFTMAX_SHAPES = {"2d": (6, 4), "3d": (3, 4, 5), "4d": (2, 4, 3, 2), "5d": (2, 3, 2, 2, 2)}
TOLERANCE = {"rtol": 1e-10, "atol": 1e-12}


def _logits(shape: tuple[int, ...], seed: int, scale: float = 3.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64) * scale


def _index_target(shape: tuple[int, ...], seed: int, ignore_index: int | None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed + 1)
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
    if ignore_index is not None:
        flat = target.view(-1)
        flat[:: max(1, flat.numel() // 3)] = ignore_index  # about a third of them, at least one
    return target


def _close(actual: object, expected: object) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), **TOLERANCE)


# ---------------------------------------------------------------- softmax, class-index targets


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES.values(), ids=SOFTMAX_SHAPES.keys())
@pytest.mark.parametrize(
    ("use_weight", "ignore_index", "label_smoothing"),
    [(False, None, 0.0), (True, None, 0.0), (False, 1, 0.0), (False, None, 0.2), (True, 2, 0.15)],
    ids=["plain", "weight", "ignore_index", "label_smoothing", "all"],
)
def test_softmax_oracle_gamma0_is_cross_entropy(
    reduction: str,
    shape: tuple[int, ...],
    use_weight: bool,
    ignore_index: int | None,
    label_smoothing: float,
) -> None:
    logits = _logits(shape, seed=len(shape))
    target = _index_target(shape, seed=3, ignore_index=ignore_index)
    weight = torch.linspace(0.3, 2.0, shape[1], dtype=torch.float64) if use_weight else None
    index = -100 if ignore_index is None else ignore_index
    expected = F.cross_entropy(
        logits,
        target,
        weight=weight,
        ignore_index=index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    actual = softmax_focal_oracle(
        logits,
        target,
        gamma=0.0,
        weight=weight,
        ignore_index=index,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )
    assert actual.shape == tuple(expected.shape)
    _close(actual, expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES.values(), ids=SOFTMAX_SHAPES.keys())
@pytest.mark.parametrize(
    ("use_weight", "label_smoothing"),
    [(False, 0.0), (True, 0.0), (False, 0.25), (True, 0.1)],
    ids=["plain", "weight", "label_smoothing", "both"],
)
def test_softmax_prob_oracle_gamma0_is_cross_entropy(
    reduction: str, shape: tuple[int, ...], use_weight: bool, label_smoothing: float
) -> None:
    logits = _logits(shape, seed=7)
    target = _logits(shape, seed=8, scale=1.0).softmax(1)
    weight = torch.linspace(0.5, 1.7, shape[1], dtype=torch.float64) if use_weight else None
    expected = F.cross_entropy(
        logits, target, weight=weight, reduction=reduction, label_smoothing=label_smoothing
    )
    actual = softmax_focal_prob_oracle(
        logits,
        target,
        gamma=0.0,
        weight=weight,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )
    assert actual.shape == tuple(expected.shape)
    _close(actual, expected)


def test_softmax_prob_oracle_with_one_hot_targets_is_the_index_oracle() -> None:
    logits = _logits((5, 3, 2), seed=11)
    target = _index_target((5, 3, 2), seed=12, ignore_index=None)
    one_hot = F.one_hot(target, 3).movedim(-1, 1).to(torch.float64)
    for gamma in (0.0, 0.5, 2.0):
        _close(
            softmax_focal_prob_oracle(logits, one_hot, gamma=gamma, alpha=[0.2, 0.5, 0.3]),
            softmax_focal_oracle(logits, target, gamma=gamma, alpha=[0.2, 0.5, 0.3]),
        )


def test_softmax_oracle_by_hand() -> None:
    # Two equal logits: p = 1/2, so the loss is (1 - 1/2)**gamma * log 2.
    logits = np.zeros((1, 2))
    for gamma in (0.0, 0.5, 1.0, 2.0, 5.0):
        _close(softmax_focal_oracle(logits, [0], gamma=gamma), 0.5**gamma * math.log(2.0))
    # Three classes, logits log(1), log(2), log(5): p = (0.125, 0.25, 0.625); target 2, gamma 2,
    # alpha 0.4 for that class, weight 3: 0.4 * 3 * 0.375**2 * -log 0.625.
    logits = np.log([[1.0, 2.0, 5.0]])
    expected = 0.4 * 3.0 * 0.375**2 * -math.log(0.625)
    losses = softmax_focal_oracle(
        logits, [2], gamma=2.0, alpha=[0.1, 0.2, 0.4], weight=[1.0, 1.0, 3.0], reduction="none"
    )
    _close(losses, [expected])
    # 'mean' divides by the weight of the target class, never by alpha.
    mean = softmax_focal_oracle(
        logits, [2], gamma=2.0, alpha=[0.1, 0.2, 0.4], weight=[1.0, 1.0, 3.0]
    )
    _close(mean, expected / 3.0)


def test_softmax_oracle_focal_factor_and_alpha() -> None:
    # With no label smoothing, loss / ce == alpha_t * (1 - p_t)**gamma element by element.
    logits = _logits((2, 5, 3), seed=21)
    target = _index_target((2, 5, 3), seed=22, ignore_index=None)
    ce = F.cross_entropy(logits, target, reduction="none").numpy()
    p_t = logits.softmax(1).gather(1, target[:, None]).squeeze(1).numpy()
    alpha = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
    for gamma in (0.5, 2.0, 3.5):
        focal = softmax_focal_oracle(logits, target, gamma=gamma, alpha=alpha, reduction="none")
        _close(focal, alpha[target.numpy()] * (1.0 - p_t) ** gamma * ce)
        scalar = softmax_focal_oracle(logits, target, gamma=gamma, alpha=0.25, reduction="none")
        _close(scalar, 0.25 * (1.0 - p_t) ** gamma * ce)


def test_softmax_oracle_alpha_stays_out_of_the_mean_divisor() -> None:
    # gamma=0 and per-class alpha: the 'sum' is cross_entropy's with weight=alpha, but 'mean'
    # divides by the number of elements kept, where cross_entropy would divide by sum(alpha).
    logits = _logits((7, 3), seed=31)
    target = torch.tensor([0, 1, 2, 2, -100, 1, 0])
    alpha = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    summed = F.cross_entropy(logits, target, weight=alpha, reduction="sum")
    _close(softmax_focal_oracle(logits, target, gamma=0.0, alpha=alpha, reduction="sum"), summed)
    _close(softmax_focal_oracle(logits, target, gamma=0.0, alpha=alpha), summed / 6)


def test_softmax_oracle_is_stable_for_huge_logits() -> None:
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0]])
    losses = softmax_focal_oracle(logits, [0, 0], gamma=2.0, reduction="none")
    _close(losses, [0.0, 1000.0])


# ---------------------------------------------------------------- sigmoid and binary

SIGMOID_SHAPES = {"1d": (7,), "2d": (5, 3), "3d": (2, 3, 4)}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SIGMOID_SHAPES.values(), ids=SIGMOID_SHAPES.keys())
@pytest.mark.parametrize(
    ("use_weight", "use_pos_weight"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["plain", "weight", "pos_weight", "both"],
)
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_sigmoid_oracle_gamma0_is_bce_with_logits(
    reduction: str, shape: tuple[int, ...], use_weight: bool, use_pos_weight: bool, soft: bool
) -> None:
    logits = _logits(shape, seed=41, scale=4.0)
    logits.view(-1)[:2] = torch.tensor([60.0, -60.0])  # stability on both signs
    generator = torch.Generator().manual_seed(42)
    target = torch.rand(shape, generator=generator, dtype=torch.float64)
    if not soft:
        target = target.round()
    weight = _logits(shape[-1:], seed=43).abs() if use_weight else None
    pos_weight = (
        torch.linspace(0.5, 3.0, shape[-1], dtype=torch.float64) if use_pos_weight else None
    )
    expected = F.binary_cross_entropy_with_logits(
        logits, target, weight=weight, pos_weight=pos_weight, reduction=reduction
    )
    actual = sigmoid_focal_oracle(
        logits,
        target,
        gamma=0.0,
        alpha=None,
        weight=weight,
        pos_weight=pos_weight,
        reduction=reduction,
    )
    assert actual.shape == tuple(expected.shape)
    _close(actual, expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [0.25, 0.8, None])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_sigmoid_oracle_is_torchvision(
    reduction: str, gamma: float, alpha: float | None, soft: bool
) -> None:
    logits = _logits((4, 6), seed=51, scale=3.0)
    generator = torch.Generator().manual_seed(52)
    target = torch.rand((4, 6), generator=generator, dtype=torch.float64)
    if not soft:
        target = target.round()
    expected = torchvision_sigmoid_focal_loss(
        logits, target, alpha=-1.0 if alpha is None else alpha, gamma=gamma, reduction=reduction
    )
    actual = sigmoid_focal_oracle(logits, target, gamma=gamma, alpha=alpha, reduction=reduction)
    _close(actual, expected)


def test_sigmoid_oracle_by_hand() -> None:
    # x = 0: p = 1/2 whatever the target, so the loss is alpha_t * 2**-gamma * log 2 (with
    # pos_weight multiplying the positive's log term).
    losses = sigmoid_focal_oracle(
        [0.0, 0.0], [1.0, 0.0], gamma=2.0, alpha=0.25, pos_weight=3.0, reduction="none"
    )
    _close(losses, [0.25 * 0.25 * 3.0 * math.log(2.0), 0.75 * 0.25 * math.log(2.0)])


def test_torchvision_transcription_rejects_unknown_reduction() -> None:
    with pytest.raises(ValueError, match="reduction"):
        torchvision_sigmoid_focal_loss(torch.zeros(2), torch.zeros(2), reduction="avg")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True], ids=["plain", "weight"])
def test_binary_oracle_gamma0_is_binary_cross_entropy(reduction: str, use_weight: bool) -> None:
    generator = torch.Generator().manual_seed(61)
    probs = torch.rand((4, 5), generator=generator, dtype=torch.float64)
    probs[0, :4] = torch.tensor([0.0, 1.0, 1e-60, 1.0 - 1e-16], dtype=torch.float64)  # clamps
    target = torch.rand((4, 5), generator=generator, dtype=torch.float64).round()
    target[0, :4] = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    target[1, :2] = torch.tensor([0.3, 0.9], dtype=torch.float64)  # soft targets too
    weight = torch.linspace(0.2, 2.0, 5, dtype=torch.float64) if use_weight else None
    expected = F.binary_cross_entropy(probs, target, weight=weight, reduction=reduction)
    actual = binary_focal_oracle(
        probs, target, gamma=0.0, alpha=None, weight=weight, reduction=reduction
    )
    _close(actual, expected)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_binary_oracle_on_sigmoid_is_sigmoid_oracle(gamma: float) -> None:
    logits = _logits((3, 4), seed=71, scale=2.0)
    target = torch.rand((3, 4), generator=torch.Generator().manual_seed(72), dtype=torch.float64)
    weight = [0.5, 1.0, 1.5, 2.0]
    _close(
        binary_focal_oracle(logits.sigmoid(), target, gamma=gamma, weight=weight),
        sigmoid_focal_oracle(logits, target, gamma=gamma, weight=weight),
    )


# ---------------------------------------------------------------- finite differences


def test_finite_differences_of_a_cubic() -> None:
    x = _logits((3, 4), seed=81, scale=1.5)
    numeric = finite_difference_grad(lambda v: (v**3).sum(), x)
    assert numeric.shape == x.shape
    assert numeric.dtype == torch.float64
    torch.testing.assert_close(numeric, 3 * x**2, rtol=1e-7, atol=1e-8)


def test_finite_differences_of_logsumexp_is_softmax() -> None:
    x = _logits((2, 3, 2), seed=82).permute(1, 0, 2)  # not contiguous, on purpose
    numeric = finite_difference_grad(lambda v: v.logsumexp(dim=(0, 1, 2)), x)
    torch.testing.assert_close(numeric, x.flatten().softmax(0).view(x.shape), rtol=1e-6, atol=1e-9)
    assert torch.equal(x, _logits((2, 3, 2), seed=82).permute(1, 0, 2))  # input left unchanged


def test_finite_differences_refuse_float32() -> None:
    with pytest.raises(TypeError, match="float64"):
        finite_difference_grad(lambda v: v.sum(), torch.zeros(2))


# ------------------------------------------------ the float64 torch formulas and the tails


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.7])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_softmax_reference_is_the_oracle_with_its_gradient(gamma: float, reduction: str) -> None:
    logits = _logits((3, 4, 2), seed=11)
    target = _index_target((3, 4, 2), seed=5, ignore_index=-100)
    probs = torch.softmax(_logits((3, 4, 2), seed=12), 1)
    options = {"alpha": [0.5, 1.0, 2.0, 0.25], "weight": [1.0, 0.5, 2.0, 3.0]}
    element_gamma = torch.linspace(0.0, 3.0, 6, dtype=torch.float64).reshape(3, 2) * (gamma > 0)
    for g in (gamma, element_gamma):
        for smoothing in (0.0, 0.3):
            index_loss = softmax_focal_reference(
                logits, target, gamma=g, label_smoothing=smoothing, reduction=reduction, **options
            )
            _close(
                index_loss,
                softmax_focal_oracle(
                    logits,
                    target,
                    gamma=g,
                    label_smoothing=smoothing,
                    reduction=reduction,
                    **options,
                ),
            )
            prob_loss = softmax_focal_reference(
                logits, probs, gamma=g, label_smoothing=smoothing, reduction=reduction, **options
            )
            _close(
                prob_loss,
                softmax_focal_prob_oracle(
                    logits,
                    probs,
                    gamma=g,
                    label_smoothing=smoothing,
                    reduction=reduction,
                    **options,
                ),
            )
    x = logits.clone().requires_grad_()
    softmax_focal_reference(x, target, gamma=gamma, label_smoothing=0.2, **options).backward()

    def loss(z: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(
            softmax_focal_oracle(z, target, gamma=gamma, label_smoothing=0.2, **options)
        )

    torch.testing.assert_close(x.grad, finite_difference_grad(loss, logits), rtol=1e-6, atol=1e-9)


def _check_elementwise_gradient(
    reference: Any, oracle: Any, x: torch.Tensor, y: torch.Tensor, gamma: float, wrt_target: bool
) -> None:
    """The reference's autograd gradient (w.r.t. the input or the target) is the oracle's."""
    x, y = x.clone(), y.clone()
    leaf = (y if wrt_target else x).requires_grad_()
    reference(x, y, gamma=gamma, alpha=0.3, reduction="sum").backward()

    def loss(z: torch.Tensor) -> torch.Tensor:
        args = (x, z) if wrt_target else (z, y)
        return torch.as_tensor(oracle(*args, gamma=gamma, alpha=0.3, reduction="sum"))

    expected = finite_difference_grad(loss, leaf.detach())
    torch.testing.assert_close(leaf.grad, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.7])
def test_elementwise_references_are_the_oracles_with_their_gradients(gamma: float) -> None:
    logits = _logits((3, 4), seed=21, scale=1.5)
    target = (torch.rand((3, 4), generator=torch.Generator().manual_seed(2)) > 0.5).double()
    soft = torch.rand((3, 4), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for y in (target, soft):
        sigmoid = {"alpha": 0.3, "weight": torch.rand(4, dtype=torch.float64) + 0.5}
        _close(
            sigmoid_focal_reference(
                logits, y, gamma=gamma, pos_weight=[1.0, 2.0, 0.5, 3.0], **sigmoid
            ),
            sigmoid_focal_oracle(
                logits, y, gamma=gamma, pos_weight=[1.0, 2.0, 0.5, 3.0], **sigmoid
            ),
        )
        _close(
            binary_focal_reference(logits.sigmoid(), y, gamma=gamma, **sigmoid),
            binary_focal_oracle(logits.sigmoid(), y, gamma=gamma, **sigmoid),
        )
        for reference, oracle, inputs in (
            (sigmoid_focal_reference, sigmoid_focal_oracle, logits),
            (binary_focal_reference, binary_focal_oracle, logits.sigmoid()),
        ):
            for wrt_target in (False, True):
                _check_elementwise_gradient(reference, oracle, inputs, y, gamma, wrt_target)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_nll_reference_is_the_softmax_oracle_with_its_gradient(gamma: float) -> None:
    logits = _logits((5, 3), seed=31)
    target = torch.tensor([0, 2, -100, 1, 2])
    weight = [0.5, 2.0, 1.5]
    for reduction in REDUCTIONS:
        _close(
            nll_focal_reference(
                logits.log_softmax(1),
                target,
                gamma=gamma,
                alpha=0.5,
                weight=weight,
                reduction=reduction,
            ),
            softmax_focal_oracle(
                logits, target, gamma=gamma, alpha=0.5, weight=weight, reduction=reduction
            ),
        )
    log_probs = logits.log_softmax(1).requires_grad_()
    nll_focal_reference(log_probs, target, gamma=gamma, weight=weight).backward()

    def loss(s: torch.Tensor) -> torch.Tensor:
        return nll_focal_reference(s, target, gamma=gamma, weight=weight)

    expected = finite_difference_grad(loss, log_probs.detach())
    torch.testing.assert_close(log_probs.grad, expected, rtol=1e-6, atol=1e-9)


def test_oracles_keep_their_digits_in_the_tails() -> None:
    # log(1 + e^-x) = e^-x - e^-2x / 2 + ...; 1 - p of the confident class is e^-x (1 - e^-x + ...)
    for x in (20.0, 40.0, 80.0, 300.0):
        tail = math.exp(-x)
        for gamma in (0.0, 0.5, 2.0):
            expected = tail**gamma * tail
            _close(softmax_focal_oracle([[x, 0.0]], [0], gamma=gamma, reduction="sum"), expected)
            _close(sigmoid_focal_oracle([x], [1.0], gamma=gamma, alpha=None), expected)
            _close(sigmoid_focal_oracle([-x], [0.0], gamma=gamma, alpha=None), expected)
            logits = torch.tensor([[x, 0.0]], dtype=torch.float64)
            _close(softmax_focal_reference(logits, torch.tensor([0]), gamma=gamma), expected)
            _close(
                sigmoid_focal_reference(logits[0, :1], torch.ones(1), gamma=gamma, alpha=None),
                expected,
            )
    # d/dx of e^{-(gamma + 1) x} is -(gamma + 1) e^{-(gamma + 1) x}
    x = torch.tensor([40.0], dtype=torch.float64, requires_grad=True)
    sigmoid_focal_reference(x, torch.ones(1), gamma=2.0, alpha=None).backward()
    assert x.grad is not None
    _close(x.grad, [-3.0 * math.exp(-120.0)])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_references_follow_torch_where_the_mean_divides_by_zero(label_smoothing: float) -> None:
    # every kept target of weight 0: nan, with nan gradients for the kept rows and 0 elsewhere
    weight = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    ignored = 1
    for target in (torch.tensor([0, 1, 0, 1]), torch.tensor([1, 1, 1, 1])):  # some kept, none
        logits = _logits((4, 3), seed=41).requires_grad_()
        twin = logits.detach().clone().requires_grad_()
        F.cross_entropy(
            logits, target, weight, ignore_index=ignored, label_smoothing=label_smoothing
        ).backward()
        value = softmax_focal_reference(
            twin,
            target,
            gamma=0.0,
            weight=weight,
            ignore_index=ignored,
            label_smoothing=label_smoothing,
        )
        value.backward()
        assert value.isnan()
        torch.testing.assert_close(twin.grad, logits.grad, equal_nan=True)
        log_probs = _logits((4, 3), seed=42).log_softmax(1).requires_grad_()
        twin = log_probs.detach().clone().requires_grad_()
        F.nll_loss(log_probs, target, weight, ignore_index=ignored).backward()
        value = nll_focal_reference(twin, target, gamma=0.0, weight=weight, ignore_index=ignored)
        value.backward()
        assert value.isnan()
        torch.testing.assert_close(twin.grad, log_probs.grad, equal_nan=True)


# ---------------------------------------------------------------- the focal family's oracles

FAMILY_SOFTMAX_OPTIONS = {
    "plain": {},
    "weight": {"weight": [0.5, 1.5, 1.0, 2.0]},
    "alpha": {"alpha": [0.1, 0.4, 0.3, 0.2]},
    "smoothing": {"label_smoothing": 0.2},
    "all": {"weight": [0.5, 1.5, 1.0, 2.0], "alpha": 0.7, "label_smoothing": 0.1},
}


def _soft_target(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=torch.float64)


def _check_gradient(fn: Any, x: torch.Tensor, *, rtol: float = 1e-6, atol: float = 1e-8) -> None:
    """autograd of the float64 formula ``fn`` against central finite differences."""
    leaf = x.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(fn(leaf), leaf)
    torch.testing.assert_close(grad, finite_difference_grad(fn, x.detach()), rtol=rtol, atol=atol)


@pytest.mark.parametrize("option", FAMILY_SOFTMAX_OPTIONS)
@pytest.mark.parametrize("probabilities", [False, True], ids=["index", "probability"])
@pytest.mark.parametrize("shape", [(5, 4), (2, 4, 3)], ids=["2d", "3d"])
def test_poly_softmax_oracle_at_epsilon_0_is_the_softmax_oracle(
    option: str, probabilities: bool, shape: tuple[int, ...]
) -> None:
    options = dict(FAMILY_SOFTMAX_OPTIONS[option])
    logits = _logits(shape, seed=101)
    for gamma in (0.0, 0.5, 2.0):
        for reduction in REDUCTIONS:
            if probabilities:
                target = _soft_target(shape, seed=102).softmax(1)
                expected = softmax_focal_prob_oracle(
                    logits, target, gamma=gamma, reduction=reduction, **options
                )
            else:
                target = _index_target(shape, seed=102, ignore_index=2)
                expected = softmax_focal_oracle(
                    logits, target, gamma=gamma, ignore_index=2, reduction=reduction, **options
                )
                options["ignore_index"] = 2
            actual = poly_softmax_oracle(
                logits, target, epsilon=0.0, gamma=gamma, reduction=reduction, **options
            )
            options.pop("ignore_index", None)
            _close(actual, expected)


@pytest.mark.parametrize("epsilon", [1.0, -1.0, 2.5])
def test_poly_softmax_oracle_at_gamma_0_is_cross_entropy_plus_epsilon_one_minus_pt(
    epsilon: float,
) -> None:
    logits = _logits((6, 5), seed=103)
    target = torch.tensor([0, 4, 2, 2, 1, 3])
    ce = F.cross_entropy(logits, target, reduction="none")
    p_t = logits.softmax(1).gather(1, target[:, None]).squeeze(1)
    expected = ce + epsilon * (1.0 - p_t)
    _close(poly_softmax_oracle(logits, target, epsilon=epsilon, reduction="none"), expected)
    # one weight per class scales each element's whole bracket; 'mean' divides by the weights
    weight = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.25], dtype=torch.float64)
    weighted = weight[target] * expected
    actual = poly_softmax_oracle(logits, target, epsilon=epsilon, weight=weight)
    _close(actual, weighted.sum() / weight[target].sum())


def test_poly_softmax_oracle_by_hand() -> None:
    # logits 0, log 3: p = (1/4, 3/4); target 1, gamma 2: (1/4)^2 (-log 3/4) + epsilon (1/4)^3
    logits = np.log([[1.0, 3.0]])
    for epsilon in (1.0, -1.0, 0.5):
        expected = 0.25**2 * -math.log(0.75) + epsilon * 0.25**3
        _close(poly_softmax_oracle(logits, [1], epsilon=epsilon, gamma=2.0), expected)
    # probability target (1/2, 1/2), gamma 0: the mean of the two classes' CE + epsilon (1 - p)
    expected = 0.5 * (-math.log(0.25) + 0.75) + 0.5 * (-math.log(0.75) + 0.25)
    _close(poly_softmax_oracle(logits, np.array([[0.5, 0.5]]), epsilon=1.0), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", FAMILY_SOFTMAX_OPTIONS)
@pytest.mark.parametrize("probabilities", [False, True], ids=["index", "probability"])
def test_poly_softmax_reference_is_the_oracle_with_its_gradient(
    reduction: str, option: str, probabilities: bool
) -> None:
    shape = (3, 4, 2)
    logits = _logits(shape, seed=104)
    options: dict[str, Any] = dict(FAMILY_SOFTMAX_OPTIONS[option])
    if probabilities:
        target = _soft_target(shape, seed=105).softmax(1)
    else:
        target = _index_target(shape, seed=105, ignore_index=1)
        options["ignore_index"] = 1
    for gamma, epsilon in ((0.0, 1.0), (0.5, -1.0), (2.0, 2.0)):

        def loss(x: torch.Tensor, epsilon: float = epsilon, gamma: float = gamma) -> torch.Tensor:
            return poly_softmax_reference(
                x, target, epsilon=epsilon, gamma=gamma, reduction=reduction, **options
            ).sum()

        expected = poly_softmax_oracle(
            logits, target, epsilon=epsilon, gamma=gamma, reduction=reduction, **options
        )
        _close(
            poly_softmax_reference(
                logits, target, epsilon=epsilon, gamma=gamma, reduction=reduction, **options
            ),
            expected,
        )
        _check_gradient(loss, logits)


def test_poly_softmax_reference_takes_one_unbatched_element() -> None:
    logits = _logits((4,), seed=106)
    for target in (torch.tensor(2), _soft_target((4,), seed=107).softmax(0)):
        for reduction in REDUCTIONS:
            expected = poly_softmax_oracle(
                logits[None], target[None], epsilon=1.0, gamma=1.0, reduction=reduction
            )
            actual = poly_softmax_reference(
                logits, target, epsilon=1.0, gamma=1.0, reduction=reduction
            )
            _close(actual, expected[0] if reduction == "none" else expected)


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("alpha", [0.25, None])
def test_poly_sigmoid_oracle_and_reference(soft: bool, alpha: float | None) -> None:
    logits = _logits((4, 5), seed=111, scale=4.0)
    target = _soft_target((4, 5), seed=112)
    target = target if soft else target.round()
    weight = _soft_target((5,), seed=113) + 0.5
    for gamma in (0.0, 0.5, 2.0):
        for reduction in REDUCTIONS:
            # epsilon = 0 is the sigmoid focal loss
            _close(
                poly_sigmoid_oracle(
                    logits, target, epsilon=0.0, gamma=gamma, alpha=alpha, reduction=reduction
                ),
                sigmoid_focal_oracle(logits, target, gamma=gamma, alpha=alpha, reduction=reduction),
            )
        # epsilon adds w alpha_t (1 - p_t)^(gamma + 1)
        one_minus_pt = target * torch.sigmoid(-logits) + (1 - target) * torch.sigmoid(logits)
        alpha_t = 1.0 if alpha is None else alpha * target + (1 - alpha) * (1 - target)
        expected = (
            sigmoid_focal_oracle(logits, target, gamma=gamma, alpha=alpha, reduction="none")
            * weight.numpy()
            + (-1.5 * weight * alpha_t * one_minus_pt ** (gamma + 1)).numpy()
        )
        options = {"epsilon": -1.5, "gamma": gamma, "alpha": alpha, "weight": weight}
        _close(poly_sigmoid_oracle(logits, target, reduction="none", **options), expected)
        _close(poly_sigmoid_reference(logits, target, reduction="none", **options), expected)
        _check_gradient(lambda x, o=options: poly_sigmoid_reference(x, target, **o), logits)


def test_asymmetric_oracle_special_cases() -> None:
    logits = _logits((5, 6), seed=121, scale=4.0)
    logits[0, :2] = torch.tensor([60.0, -60.0])
    soft = _soft_target((5, 6), seed=122)
    hard = soft.round()
    weight = _soft_target((6,), seed=123) + 0.5
    for target in (hard, soft):
        for reduction in REDUCTIONS:
            # no focusing and no clip: binary cross-entropy, with and without weight
            expected = F.binary_cross_entropy_with_logits(
                logits, target, weight=weight, reduction=reduction
            )
            actual = asymmetric_oracle(
                logits,
                target,
                gamma_pos=0.0,
                gamma_neg=0.0,
                clip=0.0,
                weight=weight,
                reduction=reduction,
            )
            _close(actual, expected)
    for gamma in (0.5, 2.0):  # one gamma and no clip, hard labels: sigmoid focal, alpha None
        _close(
            asymmetric_oracle(logits, hard, gamma_pos=gamma, gamma_neg=gamma, clip=0.0),
            sigmoid_focal_oracle(logits, hard, gamma=gamma, alpha=None),
        )
    # soft labels: linear in y, the mix of the hard-label losses
    for options in ({"gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.05}, {"clip": 0.2}):
        mixed = soft.numpy() * asymmetric_oracle(
            logits, torch.ones_like(soft), reduction="none", **options
        ) + (1 - soft.numpy()) * asymmetric_oracle(
            logits, torch.zeros_like(soft), reduction="none", **options
        )
        _close(asymmetric_oracle(logits, soft, reduction="none", **options), mixed)


def test_asymmetric_oracle_by_hand() -> None:
    # x = 0, p = 1/2. Positive: (1/2)^gamma_pos log 2. Negative with clip 0.05: p_m = 0.45,
    # 0.45^gamma_neg * -log 0.55. Where p <= clip the negative term is 0.
    losses = asymmetric_oracle(
        [0.0, 0.0, math.log(0.05 / 0.95), -5.0],
        [1.0, 0.0, 0.0, 0.0],
        gamma_pos=1.0,
        gamma_neg=4.0,
        clip=0.05,
        reduction="none",
    )
    _close(losses, [0.5 * math.log(2.0), 0.45**4 * -math.log(0.55), 0.0, 0.0])


@pytest.mark.parametrize(
    "options",
    [
        {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05},
        {"gamma_pos": 1.0, "gamma_neg": 0.5, "clip": 0.0},
        {"gamma_pos": 0.5, "gamma_neg": 0.0, "clip": 0.3},
    ],
)
def test_asymmetric_reference_is_the_oracle_with_its_gradient(options: dict[str, float]) -> None:
    logits = _logits((4, 5), seed=124, scale=3.0)
    # keep every logit away from p = clip, where the negative term's gradient has a kink
    if options["clip"]:
        edge = math.log(options["clip"] / (1 - options["clip"]))
        logits = torch.where((logits - edge).abs() < 1e-3, logits + 0.1, logits)
    target = _soft_target((4, 5), seed=125)
    weight = _soft_target((5,), seed=126) + 0.5
    for y in (target.round(), target):
        for reduction in REDUCTIONS:
            expected = asymmetric_oracle(logits, y, weight=weight, reduction=reduction, **options)
            actual = asymmetric_reference(logits, y, weight=weight, reduction=reduction, **options)
            _close(actual, expected)
        _check_gradient(lambda x, y=y: asymmetric_reference(x, y, weight=weight, **options), logits)


def test_asymmetric_oracle_is_timm_for_hard_labels_where_its_clamp_does_not_bite() -> None:
    logits = _logits((6, 7), seed=127, scale=4.0)  # |x| < 18: p and 1 - p + clip above 1e-8
    target = _soft_target((6, 7), seed=128).round()
    for gamma_pos, gamma_neg, clip in ((1.0, 4.0, 0.05), (0.0, 2.0, 0.1), (0.0, 0.0, 0.0)):
        expected = timm_asymmetric_loss_multilabel(logits, target, gamma_neg, gamma_pos, clip)
        actual = asymmetric_oracle(
            logits, target, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, reduction="sum"
        )
        _close(actual, expected)


def test_varifocal_oracle_by_hand_and_against_mmdetection() -> None:
    # x = 0, p = 1/2: a positive of IoU q costs -q (q log 1/2 + (1 - q) log 1/2) = q log 2; a
    # negative alpha (1/2)^gamma log 2.
    losses = varifocal_oracle([0.0, 0.0], [0.6, 0.0], alpha=0.75, gamma=2.0, reduction="none")
    _close(losses, [0.6 * math.log(2.0), 0.75 * 0.25 * math.log(2.0)])
    logits = _logits((6, 5), seed=131, scale=3.0)
    target = _soft_target((6, 5), seed=132) * (_soft_target((6, 5), seed=133) < 0.4)
    weight = _soft_target((6, 5), seed=134) + 0.5
    for alpha, gamma in ((0.75, 2.0), (0.25, 1.5), (1.0, 0.0)):
        for reduction in REDUCTIONS:
            options = {"alpha": alpha, "gamma": gamma}
            expected = mmdet_varifocal_loss(logits, target, weight, reduction=reduction, **options)
            _close(
                varifocal_oracle(logits, target, weight=weight, reduction=reduction, **options),
                expected,
            )
            actual = varifocal_reference(
                logits, target, weight=weight, reduction=reduction, **options
            )
            _close(actual, expected)
        _check_gradient(
            lambda x, o=options: varifocal_reference(x, target, weight=weight, **o), logits
        )


def test_quality_focal_oracle_special_cases_and_mmdetection() -> None:
    logits = _logits((6, 5), seed=141, scale=3.0)
    hard = _soft_target((6, 5), seed=142).round()
    for beta in (0.0, 0.5, 2.0):  # hard labels: sigmoid focal loss with gamma = beta, no alpha
        _close(
            quality_focal_oracle(logits, hard, beta=beta, reduction="none"),
            sigmoid_focal_oracle(logits, hard, gamma=beta, alpha=None, reduction="none"),
        )
    # one positive class per sample with its quality score, as mmdetection's (label, score)
    label = torch.tensor([0, 4, 5, 2, 5, 1])  # 5 = background
    score = _soft_target((6,), seed=143)
    dense = torch.zeros(6, 5, dtype=torch.float64)
    rows = label < 5
    dense[rows, label[rows]] = score[rows]
    weight = _soft_target((6, 1), seed=144) + 0.5
    for beta in (2.0, 1.0):
        per_sample = mmdet_quality_focal_loss(logits, (label, score), beta=beta)
        dense_per_sample = mmdet_quality_focal_loss_tensor_target(logits, dense, beta=beta)
        oracle = quality_focal_oracle(logits, dense, beta=beta, reduction="none")
        _close(oracle.sum(1), per_sample)
        _close(oracle.sum(1, keepdims=True), dense_per_sample)
        reference = quality_focal_reference(logits, dense, beta=beta, weight=weight)
        _close(reference, (oracle * weight.numpy()).mean())
        _check_gradient(
            lambda x, b=beta: quality_focal_reference(x, dense, beta=b, weight=weight), logits
        )


def test_distribution_focal_oracle_against_mmdetection_and_by_hand() -> None:
    logits = _logits((7, 5), seed=151, scale=2.0)
    target = torch.tensor([0.0, 0.5, 1.25, 2.0, 3.999, 3.5, 0.1], dtype=torch.float64)
    weight = _soft_target((7,), seed=152) + 0.5
    expected = mmdet_distribution_focal_loss(logits, target)
    _close(distribution_focal_oracle(logits, target, reduction="none"), expected)
    for reduction in REDUCTIONS:
        weighted = mmdet_weight_reduce_loss(expected, weight, reduction)
        _close(
            distribution_focal_oracle(logits, target, weight=weight, reduction=reduction), weighted
        )
        _close(
            distribution_focal_reference(logits, target, weight=weight, reduction=reduction),
            weighted,
        )
    _check_gradient(
        lambda x: distribution_focal_reference(x, target, weight=weight, reduction="sum"), logits
    )
    # y = n: all of the weight on the last bin (mmdetection asks for a bin n + 1 there)
    ce_last = F.cross_entropy(logits, torch.full((7,), 4), reduction="none")
    _close(distribution_focal_oracle(logits, torch.full((7,), 4.0), reduction="none"), ce_last)
    with pytest.raises(IndexError):
        mmdet_distribution_focal_loss(logits, torch.full((7,), 4.0, dtype=torch.float64))


def test_long_tail_oracles_by_hand_and_against_the_ldam_authors() -> None:
    _close(logit_adjustment_oracle([1, 3]), [math.log(0.25), math.log(0.75)])
    _close(
        logit_adjustment_oracle([2, 2, 4], tau=0.5),
        [0.5 * math.log(0.25)] * 2 + [0.5 * math.log(0.5)],
    )
    _close(ldam_margins_oracle([16, 1, 81]), [0.25, 0.5, 0.5 / 3])
    counts = [500, 120, 40, 7, 1000]
    margins = ldam_margins_oracle(counts, max_margin=0.4)
    authors = 1.0 / np.sqrt(np.sqrt(np.asarray(counts, dtype=np.float64)))
    _close(margins, authors * (0.4 / authors.max()))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ldam_oracle_at_gamma_0_is_the_ldam_authors_loss(reduction: str) -> None:
    counts = [300, 40, 9, 100]
    margins = ldam_margins_oracle(counts)
    logits = _logits((6, 4), seed=161, scale=0.5)
    target = torch.tensor([0, 1, 2, 3, 2, 1])
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64)
    for w in (None, weight):
        if reduction == "mean":
            expected = ldam_drw_loss(logits, target, counts, weight=w, s=30.0)
            _close(ldam_oracle(logits, target, margins, scale=30.0, weight=w), expected)
        z = 30.0 * (
            logits
            - torch.tensor(margins, dtype=torch.float64)[target][:, None] * F.one_hot(target, 4)
        )
        expected = F.cross_entropy(z, target, weight=w, reduction=reduction)
        _close(ldam_oracle(logits, target, margins, weight=w, reduction=reduction), expected)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_ldam_reference_is_the_oracle_with_its_gradient(gamma: float) -> None:
    margins = [0.5, 0.3, 0.2, 0.4]
    logits = _logits((3, 4, 2), seed=162, scale=0.3)
    target = _index_target((3, 4, 2), seed=163, ignore_index=3)
    options = {"gamma": gamma, "alpha": [0.2, 0.3, 0.4, 0.1], "weight": [1.0, 2.0, 0.5, 1.0]}
    for reduction in REDUCTIONS:
        expected = ldam_oracle(
            logits, target, margins, scale=4.0, ignore_index=3, reduction=reduction, **options
        )
        actual = ldam_reference(
            logits, target, margins, scale=4.0, ignore_index=3, reduction=reduction, **options
        )
        _close(actual, expected)
    _check_gradient(
        lambda x: ldam_reference(x, target, margins, scale=4.0, ignore_index=3, **options), logits
    )
