"""Properties that hold for every input, checked with hypothesis."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import focalkit

gammas = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.5, 5.0])
finite = st.floats(-30, 30, allow_nan=False, width=64)


@st.composite
def softmax_cases(draw):
    batch = draw(st.integers(1, 5))
    classes = draw(st.integers(2, 6))
    spatial = draw(st.lists(st.integers(1, 3), max_size=2))
    shape = (batch, classes, *spatial)
    logits = draw(arrays(np.float64, shape, elements=finite))
    target = draw(arrays(np.int64, (batch, *spatial), elements=st.integers(0, classes - 1)))
    return torch.from_numpy(logits), torch.from_numpy(target)


@settings(max_examples=60, deadline=None)
@given(case=softmax_cases(), gamma=gammas, shift=st.floats(-1e3, 1e3))
def test_softmax_invariant_to_a_constant_added_to_every_logit(case, gamma, shift):
    logits, target = case
    torch.testing.assert_close(
        focalkit.softmax_focal_loss(logits + shift, target, gamma=gamma, reduction="none"),
        focalkit.softmax_focal_loss(logits, target, gamma=gamma, reduction="none"),
        rtol=1e-9,
        atol=1e-9,
    )


@settings(max_examples=60, deadline=None)
@given(case=softmax_cases(), gamma=gammas)
def test_softmax_focal_is_cross_entropy_times_modulating_factor(case, gamma):
    logits, target = case
    focal = focalkit.softmax_focal_loss(logits, target, gamma=gamma, reduction="none")
    ce = F.cross_entropy(logits, target, reduction="none")
    p_t = logits.softmax(1).gather(1, target.unsqueeze(1)).squeeze(1)
    assert (focal >= 0).all()
    assert (focal <= ce + 1e-12).all()
    torch.testing.assert_close(focal, (1 - p_t) ** gamma * ce, rtol=1e-9, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    x=arrays(np.float64, st.integers(1, 20), elements=finite),
    y=st.data(),
    gamma=gammas,
    alpha=st.one_of(st.none(), st.floats(0, 1)),
)
def test_sigmoid_focal_is_nonnegative_and_below_bce(x, y, gamma, alpha):
    input = torch.from_numpy(x)
    target = torch.from_numpy(y.draw(arrays(np.float64, x.shape, elements=st.floats(0, 1))))
    focal = focalkit.sigmoid_focal_loss(input, target, gamma=gamma, alpha=alpha, reduction="none")
    bce = F.binary_cross_entropy_with_logits(input, target, reduction="none")
    assert (focal >= 0).all()
    scale = 1.0 if alpha is None else max(alpha, 1 - alpha)
    assert (focal <= scale * bce + 1e-12).all()


@settings(max_examples=40, deadline=None)
@given(
    gamma=st.sampled_from([0.25, 0.5, 1.0, 2.0, 5.0]),
    logits=arrays(np.float64, 12, elements=st.floats(-20, 20), unique=True),
)
def test_loss_decreases_as_p_t_grows(gamma, logits):
    # Hard targets: a larger p_t (a larger logit for the target class) never costs more.
    ordered = torch.from_numpy(np.sort(logits))
    sigmoid = focalkit.sigmoid_focal_loss(
        ordered, torch.ones_like(ordered), gamma=gamma, reduction="none"
    )
    assert (sigmoid[1:] <= sigmoid[:-1]).all()
    rows = torch.stack([ordered, torch.zeros_like(ordered), torch.ones_like(ordered)], 1)
    softmax = focalkit.softmax_focal_loss(
        rows, torch.zeros(12, dtype=torch.long), gamma=gamma, reduction="none"
    )
    assert (softmax[1:] <= softmax[:-1]).all()
    probs = torch.linspace(0, 1, 101, dtype=torch.float64)
    binary = focalkit.binary_focal_loss(
        probs, torch.ones_like(probs), gamma=gamma, reduction="none"
    )
    assert (binary[1:] <= binary[:-1]).all()


def _finite_difference(fn, x, eps=1e-6):
    grad = torch.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.numel()):
        saved = flat[i].item()
        flat[i] = saved + eps
        upper = fn(x).item()
        flat[i] = saved - eps
        lower = fn(x).item()
        flat[i] = saved
        out[i] = (upper - lower) / (2 * eps)
    return grad


@settings(max_examples=30, deadline=None)
@given(
    case=softmax_cases(),
    gamma=gammas,
    smoothing=st.sampled_from([0.0, 0.1]),
    use_alpha=st.booleans(),
)
def test_softmax_gradient_matches_float64_finite_differences(case, gamma, smoothing, use_alpha):
    logits, target = case
    logits = logits.clamp(-8, 8)  # finite differences need moderate curvature
    alpha = torch.linspace(0.2, 1.0, logits.shape[1], dtype=torch.float64) if use_alpha else None

    def loss(x):
        return focalkit.softmax_focal_loss(
            x, target, gamma=gamma, alpha=alpha, label_smoothing=smoothing
        )

    x = logits.clone().requires_grad_()
    loss(x).backward()
    torch.testing.assert_close(
        x.grad, _finite_difference(loss, logits.clone()), rtol=1e-5, atol=1e-7
    )


@settings(max_examples=30, deadline=None)
@given(
    x=arrays(np.float64, (3, 4), elements=st.floats(-8, 8)),
    soft=st.booleans(),
    gamma=gammas,
)
def test_sigmoid_and_binary_gradients_match_finite_differences(x, soft, gamma):
    input = torch.from_numpy(x)
    target = torch.linspace(0, 1, 12, dtype=torch.float64).reshape(3, 4)
    target = target if soft else target.round()
    pos_weight = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)

    def sigmoid(z):
        return focalkit.sigmoid_focal_loss(z, target, pos_weight=pos_weight, gamma=gamma)

    z = input.clone().requires_grad_()
    sigmoid(z).backward()
    torch.testing.assert_close(
        z.grad, _finite_difference(sigmoid, input.clone()), rtol=1e-5, atol=1e-7
    )

    probs = input.sigmoid().clamp(1e-3, 1 - 1e-3)

    def binary(p):
        return focalkit.binary_focal_loss(p, target, gamma=gamma)

    p = probs.clone().requires_grad_()
    binary(p).backward()
    torch.testing.assert_close(
        p.grad, _finite_difference(binary, probs.clone()), rtol=1e-5, atol=1e-6
    )
