"""Half precision, autocast, empty and fully ignored batches, memory layouts, NaN, huge logits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tolerances import tolerance

import focalkit
from focalkit.torch import _kernels


def _softmax_case(seed=0):
    generator = torch.Generator().manual_seed(seed)
    input = torch.randn(8, 5, 3, generator=generator) * 3
    target = torch.randint(0, 5, (8, 3), generator=generator)
    return input, target


def _one_hot(target):
    return F.one_hot(target, 5).movedim(-1, 1).float()


# name: (the loss, the map from float32 logits to the loss's input)
LOSSES = {
    "softmax": (
        lambda x, t, **kw: focalkit.softmax_focal_loss(x, t, alpha=[0.1, 0.2, 0.3, 0.2, 0.2], **kw),
        lambda logits: logits,
    ),
    "softmax-prob": (
        lambda x, t, **kw: focalkit.softmax_focal_loss(x, _one_hot(t) * 0.9 + 0.02, **kw),
        lambda logits: logits,
    ),
    "nll": (
        lambda x, t, **kw: focalkit.nll_focal_loss(x, t, **kw),
        lambda logits: logits.log_softmax(1),
    ),
    "sigmoid": (
        lambda x, t, **kw: focalkit.sigmoid_focal_loss(x, _one_hot(t), **kw),
        lambda logits: logits,
    ),
    "binary": (
        lambda x, t, **kw: focalkit.binary_focal_loss(x, _one_hot(t), **kw),
        lambda logits: logits.sigmoid(),
    ),
}


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_half_precision_computes_in_float32(name, reduction, half_dtype):
    input, target = _softmax_case()
    loss, prepare = LOSSES[name]
    low = prepare(input).to(half_dtype)
    actual = loss(low, target, reduction=reduction)
    assert actual.dtype == half_dtype
    assert torch.isfinite(actual).all()
    # Same input values in float32: the only difference is the final rounding to half_dtype.
    expected = loss(low.float(), target, reduction=reduction)
    torch.testing.assert_close(actual.float(), expected, **tolerance(half_dtype))


@pytest.mark.parametrize("name", LOSSES)
def test_half_precision_gradient_at_certainty_is_finite(name, half_dtype):
    _, target = _softmax_case()
    loss, prepare = LOSSES[name]
    # Logits scaled until p_t rounds to 1 wherever the prediction is right.
    confident = prepare(_one_hot(target) * 100 - 50).to(half_dtype).requires_grad_()
    loss(confident, target, gamma=0.5).backward()
    assert confident.grad.dtype == half_dtype
    assert torch.isfinite(confident.grad).all()


def test_half_precision_large_logits_stay_finite():
    # float16 overflows at 65504; log-space math never forms exp(logit).
    input = torch.tensor([[3e4, -3e4, 0.0]], dtype=torch.float16)
    loss = focalkit.softmax_focal_loss(input, torch.tensor([2]), reduction="none")
    assert torch.isfinite(loss).all()
    assert loss.item() == pytest.approx(
        focalkit.softmax_focal_loss(input.double(), torch.tensor([2])).item(), rel=2e-3
    )


@pytest.mark.parametrize("name", LOSSES)
def test_autocast_computes_in_float32_like_cross_entropy(name):
    input, target = _softmax_case()
    loss, prepare = LOSSES[name]
    low = prepare(input).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = F.cross_entropy(input.bfloat16(), target)
        actual = loss(low, target)
    assert reference.dtype == torch.float32
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, loss(low.float(), target))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_empty_batch_matches_cross_entropy(reduction):
    input, target = torch.randn(0, 4), torch.zeros(0, dtype=torch.long)
    expected = F.cross_entropy(input, target, reduction=reduction)
    for gamma in (0.0, 2.0):
        actual = focalkit.softmax_focal_loss(input, target, reduction=reduction, gamma=gamma)
        torch.testing.assert_close(actual, expected, equal_nan=True)
        actual = focalkit.nll_focal_loss(input, target, reduction=reduction, gamma=gamma)
        torch.testing.assert_close(actual, expected, equal_nan=True)
    probability = torch.zeros(0, 4)
    torch.testing.assert_close(
        focalkit.softmax_focal_loss(input, probability, reduction=reduction),
        F.cross_entropy(input, probability, reduction=reduction),
        equal_nan=True,
    )
    torch.testing.assert_close(
        focalkit.sigmoid_focal_loss(input, probability, reduction=reduction),
        F.binary_cross_entropy_with_logits(input, probability, reduction=reduction),
        equal_nan=True,
    )
    if reduction == "mean":
        assert math.isnan(expected.item())  # PyTorch's mean of nothing, which focalkit keeps


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("use_weight", [False, True])
def test_all_targets_ignored_matches_cross_entropy(reduction, use_weight):
    input = torch.randn(4, 3, requires_grad=True)
    target = torch.full((4,), -100)
    weight = torch.tensor([1.0, 2.0, 3.0]) if use_weight else None
    for smoothing in (0.0, 0.1):
        expected = F.cross_entropy(input, target, weight, reduction=reduction)
        actual = focalkit.softmax_focal_loss(
            input, target, weight, reduction=reduction, label_smoothing=smoothing
        )
        torch.testing.assert_close(actual, expected, equal_nan=True)
        # A batch of padding only: the value is NaN for 'mean' and the gradient 0, as PyTorch's.
        (expected_grad,) = torch.autograd.grad(expected.sum(), input)
        (grad,) = torch.autograd.grad(actual.sum(), input)
        torch.testing.assert_close(grad, expected_grad)
        assert not expected_grad.any()
    nll = focalkit.nll_focal_loss(input.log_softmax(1), target, weight, reduction=reduction)
    (nll_grad,) = torch.autograd.grad(nll.sum(), input)
    assert not nll_grad.any()
    classifier = torch.randn(3, 5, requires_grad=True)
    hidden = torch.randn(4, 5, requires_grad=True)
    fused = focalkit.linear_softmax_focal_loss(
        hidden, classifier, target, weight=weight, reduction=reduction, chunk_size=3
    )
    torch.testing.assert_close(fused, expected, equal_nan=True)
    for fused_grad in torch.autograd.grad(fused.sum(), (hidden, classifier)):
        assert not fused_grad.any()


# Targets with every kept class of weight 0 (the 'mean' divides by 0), then a control in which
# some kept weight is not 0; -100 marks ignored elements.
ZERO_WEIGHT_TARGETS = {
    "every kept target of weight 0": [[0, 1], [-100, 0], [1, -100], [0, 0]],
    "some kept weight": [[0, 1], [-100, 2], [1, -100], [0, 0]],
}


def _softmax_paths(path, x, target, weight, reduction, smoothing, gamma):
    """The loss by one route: the kernel, the definition, or the fused loss (2-D ``x``)."""
    options = {"reduction": reduction, "label_smoothing": smoothing}
    with _kernels.use_kernels(not path.endswith("definition")):
        if path.startswith("fused"):
            classifier = torch.eye(x.shape[1], requires_grad=True)
            bias = torch.zeros(x.shape[1], requires_grad=True)
            loss = focalkit.linear_softmax_focal_loss(
                x, classifier, target, bias=bias, weight=weight, gamma=gamma, **options
            )
            return loss, (x, classifier, bias)
        return focalkit.softmax_focal_loss(x, target, weight, gamma=gamma, **options), (x,)


@pytest.mark.parametrize("path", ["kernel", "definition", "fused", "fused definition"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("case", ZERO_WEIGHT_TARGETS)
def test_targets_of_weight_zero_match_cross_entropy(case, smoothing, reduction, path):
    # F.cross_entropy's 'mean' over kept weights that sum to 0 is nan (not inf, with smoothing),
    # its gradient nan for the kept elements and 0 for the ignored ones.
    generator = torch.Generator().manual_seed(12)
    target = torch.tensor(ZERO_WEIGHT_TARGETS[case])  # (N, d) = (4, 2)
    weight = torch.tensor([0.0, 0.0, 1.5])
    x = torch.randn(4, 3, 2, generator=generator)
    if path.startswith("fused"):  # rows of a (N d, C) input
        x, target = x.movedim(1, -1).reshape(-1, 3), target.reshape(-1)
    for gamma in (0.0, 0.5, 2.0):
        leaf = x.clone().requires_grad_()
        actual, inputs = _softmax_paths(path, leaf, target, weight, reduction, smoothing, gamma)
        grads = torch.autograd.grad(actual.sum(), inputs)
        reference_leaf = x.clone().requires_grad_()
        reference_inputs: tuple[torch.Tensor, ...] = (reference_leaf,)
        logits = reference_leaf
        if path.startswith("fused"):
            classifier, bias = (t.detach().clone().requires_grad_() for t in inputs[1:])
            logits, reference_inputs = (
                F.linear(reference_leaf, classifier, bias),
                (
                    reference_leaf,
                    classifier,
                    bias,
                ),
            )
        expected = F.cross_entropy(
            logits, target, weight, reduction=reduction, label_smoothing=smoothing
        )
        expected_grads = torch.autograd.grad(expected.sum(), reference_inputs)
        if gamma == 0:  # cross-entropy itself: values and gradients, nan where it has nan
            torch.testing.assert_close(actual, expected, equal_nan=True)
            for got, want in zip(grads, expected_grads, strict=True):
                torch.testing.assert_close(got, want, equal_nan=True)
        else:  # the focal loss: nan, and 0, exactly where cross-entropy has them
            assert torch.equal(actual.isnan(), expected.isnan())
            for got, want in zip(grads, expected_grads, strict=True):
                assert torch.equal(got.isnan(), want.isnan())
                assert torch.equal(got == 0, want == 0)
    if case == "every kept target of weight 0" and reduction == "mean":
        assert expected.isnan()
        kept = (target != -100).unsqueeze(1).expand_as(x) if x.dim() == 3 else None
        if kept is not None:
            assert grads[0][kept].isnan().all()
            assert (grads[0][~kept] == 0).all()


def test_non_contiguous_and_channels_last_match_contiguous():
    generator = torch.Generator().manual_seed(3)
    input = torch.randn(2, 6, 5, 4, generator=generator)
    target = torch.randint(0, 6, (2, 5, 4), generator=generator)
    channels_last = input.to(memory_format=torch.channels_last)
    transposed = input.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    assert not channels_last.is_contiguous()
    assert not transposed.is_contiguous()
    probs = F.one_hot(target, 6).movedim(-1, 1).float()
    for fn in (
        lambda x: focalkit.softmax_focal_loss(x, target, reduction="none", label_smoothing=0.1),
        lambda x: focalkit.softmax_focal_loss(x, probs, reduction="none"),
        lambda x: focalkit.nll_focal_loss(x.log_softmax(1), target, reduction="none"),
        lambda x: focalkit.sigmoid_focal_loss(x, probs, reduction="none"),
        lambda x: focalkit.binary_focal_loss(x.sigmoid(), probs, reduction="none"),
    ):
        expected = fn(input)
        torch.testing.assert_close(fn(channels_last), expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(fn(transposed), expected, rtol=0, atol=1e-6)
    strided, strided_target = input[:, :, ::2], target[:, ::2]
    for fn in (
        lambda x: focalkit.softmax_focal_loss(x, strided_target, reduction="none"),
        lambda x: focalkit.nll_focal_loss(x.log_softmax(1), strided_target, reduction="none"),
    ):
        torch.testing.assert_close(fn(strided), fn(strided.contiguous()), rtol=0, atol=1e-6)


def test_nan_in_gives_nan_out():
    input = torch.tensor([[1.0, float("nan"), 0.0], [0.5, 0.2, 0.1]])
    target = torch.tensor([0, 1])
    assert torch.isnan(F.cross_entropy(input, target, reduction="none")[0])
    losses = [
        focalkit.softmax_focal_loss(input, target, reduction="none"),
        focalkit.softmax_focal_loss(input, F.one_hot(target, 3).float(), reduction="none"),
        focalkit.nll_focal_loss(input.log_softmax(1), target, reduction="none"),
        focalkit.sigmoid_focal_loss(input, torch.ones_like(input), reduction="none")[:, 1],
        focalkit.binary_focal_loss(input, torch.ones_like(input) / 2, reduction="none")[:, 1],
    ]
    for loss in losses:
        assert torch.isnan(loss[0])
        assert torch.isfinite(loss[1])


def test_binary_nan_probability_gives_nan_where_binary_cross_entropy_raises():
    probs = torch.tensor([0.3, float("nan")])
    target = torch.tensor([1.0, 0.0])
    with pytest.raises(RuntimeError):
        F.binary_cross_entropy(probs, target)
    assert torch.isnan(focalkit.binary_focal_loss(probs, target))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_huge_logits_give_the_exact_value(gamma):
    # At logit gaps of 1e4 the right answers are 0 (confident right) and the gap (confident wrong).
    input = torch.tensor([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]])
    loss = focalkit.softmax_focal_loss(input, torch.tensor([0, 1]), gamma=gamma, reduction="none")
    assert loss.tolist() == [0.0, 2e4]
    loss = focalkit.sigmoid_focal_loss(
        torch.tensor([1e4, -1e4]),
        torch.tensor([1.0, 1.0]),
        gamma=gamma,
        alpha=None,
        reduction="none",
    )
    assert loss.tolist() == [0.0, 1e4]


def test_one_class_gives_zero_like_cross_entropy():
    input = torch.randn(3, 1, requires_grad=True)
    target = torch.zeros(3, dtype=torch.long)
    loss = focalkit.softmax_focal_loss(input, target, gamma=0.5)
    loss.backward()
    assert loss.item() == F.cross_entropy(input, target).item() == 0.0
    assert torch.equal(input.grad, torch.zeros_like(input))


def test_masked_logits_minus_infinity_are_allowed():
    # Logits masked with -inf (a vocabulary mask) leave the others' loss and gradient finite.
    input = torch.tensor(
        [[2.0, -torch.inf, 0.5], [-torch.inf, -torch.inf, 1.0]], requires_grad=True
    )
    target = torch.tensor([0, 2])
    loss = focalkit.softmax_focal_loss(input, target, gamma=0.5)
    loss.backward()
    expected = F.cross_entropy(input.detach(), target, reduction="none")
    assert torch.isfinite(loss)
    assert torch.isfinite(input.grad).all()
    assert focalkit.softmax_focal_loss(input, target, reduction="none")[1].item() == 0.0
    assert expected[1].item() == 0.0
