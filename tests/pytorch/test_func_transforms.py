"""torch.func (grad, vmap, jvp, jacfwd, hessian) and eager forward-mode AD over every loss give
what reverse-mode autograd gives, kernels or not."""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

import focalkit

_generator = torch.Generator().manual_seed(11)
X = torch.randn(4, 6, 3, generator=_generator, dtype=torch.float64)  # (batch, N, C)
T = torch.randint(0, 3, (4, 6), generator=_generator)
T[0, 1] = -100
Y = torch.rand(4, 6, 3, generator=_generator, dtype=torch.float64)
LOSSES = {
    "softmax": lambda x, i: focalkit.softmax_focal_loss(x, T[i], [1.0, 2.0, 0.5], alpha=0.25),
    "softmax smoothing": lambda x, i: focalkit.softmax_focal_loss(x, T[i], label_smoothing=0.1),
    "softmax probabilities": lambda x, i: focalkit.softmax_focal_loss(x, Y[i].softmax(1)),
    "nll": lambda x, i: focalkit.nll_focal_loss(x.log_softmax(1), T[i], gamma=0.5),
    "sigmoid": lambda x, i: focalkit.sigmoid_focal_loss(x, Y[i], pos_weight=torch.ones(3) * 2),
    "binary": lambda x, i: focalkit.binary_focal_loss(x.sigmoid(), Y[i].round(), gamma=0.5),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_func_grad_matches_autograd(name):
    fn = LOSSES[name]
    x = X[1].clone().requires_grad_()
    (expected,) = torch.autograd.grad(fn(x, 1), x)
    torch.testing.assert_close(grad(fn)(X[1], 1), expected)


@pytest.mark.parametrize("name", ["softmax", "sigmoid", "binary"])
def test_vmap_of_grad_gives_per_sample_gradients(name):
    fn = LOSSES[name]
    # The same targets for every sample, so that vmap batches the input alone.
    per_sample = vmap(grad(fn), in_dims=(0, None))(X, 2)
    for b in range(X.shape[0]):
        x = X[b].clone().requires_grad_()
        (expected,) = torch.autograd.grad(fn(x, 2), x)
        torch.testing.assert_close(per_sample[b], expected)


def test_func_grad_of_the_fused_loss_with_respect_to_the_classifier():
    hidden = torch.randn(8, 5, dtype=torch.float64, generator=_generator)
    classifier = torch.randn(3, 5, dtype=torch.float64, generator=_generator)
    target = T[:2].reshape(-1)[:8]

    def fused(w):
        return focalkit.linear_softmax_focal_loss(hidden, w, target, chunk_size=3)

    w = classifier.clone().requires_grad_()
    expected = torch.autograd.grad(focalkit.softmax_focal_loss(F.linear(hidden, w), target), w)[0]
    torch.testing.assert_close(grad(fused)(classifier), expected)


# ------------------------------------------------------------------------ forward mode

FORWARD = {
    **LOSSES,
    "nll gamma 0": lambda x, i: focalkit.nll_focal_loss(x.log_softmax(1), T[i], gamma=0.0),
    "binary alpha weight": lambda x, i: focalkit.binary_focal_loss(
        x.sigmoid(), Y[i].round(), [1.0, 2.0, 0.5], gamma=2.0, alpha=0.75
    ),
    "fused": lambda x, i: focalkit.linear_softmax_focal_loss(
        x, torch.eye(3, dtype=torch.float64), T[i], reduction="sum", chunk_size=2
    ),
}
_TANGENT = torch.randn(6, 3, generator=_generator, dtype=torch.float64)


def _reverse_jvp(fn, x, tangent):
    """``grad . tangent`` by reverse mode: what a forward-mode derivative must give."""
    leaf = x.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(fn(leaf), leaf)
    return (gradient * tangent).sum()


@pytest.mark.parametrize("name", sorted(FORWARD))
def test_eager_forward_mode_matches_reverse_mode(name):
    fn = FORWARD[name]
    with fwAD.dual_level():
        out = fn(fwAD.make_dual(X[1], _TANGENT), 1)
        value, tangent = fwAD.unpack_dual(out)
    torch.testing.assert_close(value, fn(X[1], 1))
    torch.testing.assert_close(tangent, _reverse_jvp(lambda z: fn(z, 1), X[1], _TANGENT))


@pytest.mark.parametrize("name", sorted(FORWARD))
def test_func_jvp_jacfwd_and_hessian_match_reverse_mode(name):
    fn = FORWARD[name]
    x = X[2]
    _, tangent = jvp(lambda z: fn(z, 2), (x,), (_TANGENT,))
    torch.testing.assert_close(tangent, _reverse_jvp(lambda z: fn(z, 2), x, _TANGENT))
    torch.testing.assert_close(jacfwd(fn)(x, 2), jacrev(fn)(x, 2))
    torch.testing.assert_close(hessian(fn)(x, 2), jacrev(jacrev(fn))(x, 2))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_forward_mode_at_gamma_0_is_cross_entropys(smoothing):
    weight = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    with fwAD.dual_level():
        dual = fwAD.make_dual(X[0], _TANGENT)
        expected = F.cross_entropy(dual, T[0], weight, label_smoothing=smoothing)
        got = focalkit.softmax_focal_loss(dual, T[0], weight, label_smoothing=smoothing, gamma=0.0)
        fused = focalkit.linear_softmax_focal_loss(
            dual,
            torch.eye(3, dtype=torch.float64),
            T[0],
            weight=weight,
            label_smoothing=smoothing,
            gamma=0.0,
        )
        expected, got, fused = (fwAD.unpack_dual(t) for t in (expected, got, fused))
    torch.testing.assert_close(got.primal, expected.primal)
    torch.testing.assert_close(got.tangent, expected.tangent)
    torch.testing.assert_close(fused.tangent, expected.tangent)


def test_forward_mode_through_settings_and_the_classifier():
    # Tangents on weight, alpha, the target of sigmoid_focal_loss, the classifier and the bias.
    x, y, t = X[3], Y[3], T[3]
    probs = x.sigmoid()
    weight = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    alpha = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    classifier = torch.randn(3, 3, generator=_generator, dtype=torch.float64)
    bias = torch.randn(3, generator=_generator, dtype=torch.float64)
    cases = {
        "binary weight": (lambda w: focalkit.binary_focal_loss(probs, y.round(), w), weight),
        "binary alpha": (lambda a: focalkit.binary_focal_loss(probs, y.round(), alpha=a), alpha),
        "sigmoid target": (lambda target: focalkit.sigmoid_focal_loss(x, target), y.round()),
        "softmax weight": (lambda w: focalkit.softmax_focal_loss(x, t, w), weight),
        "fused classifier": (
            lambda c: focalkit.linear_softmax_focal_loss(x, c, t, bias=bias, chunk_size=2),
            classifier,
        ),
        "fused bias": (
            lambda b: focalkit.linear_softmax_focal_loss(x, classifier, t, bias=b, chunk_size=2),
            bias,
        ),
    }
    for name, (fn, primal) in cases.items():
        direction = torch.rand(primal.shape, generator=_generator, dtype=torch.float64)
        with fwAD.dual_level():
            tangent = fwAD.unpack_dual(fn(fwAD.make_dual(primal, direction))).tangent
        expected = _reverse_jvp(fn, primal, direction)
        torch.testing.assert_close(tangent, expected, msg=name)


def test_forward_mode_refuses_a_target_tangent_where_reverse_mode_refuses_one():
    y = Y[0].round()
    with fwAD.dual_level(), pytest.raises(ValueError, match="target is not differentiated"):
        focalkit.binary_focal_loss(X[0].sigmoid(), fwAD.make_dual(y, torch.ones_like(y)))
