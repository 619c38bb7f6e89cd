"""torch.func: grad and vmap over every loss give what autograd gives, kernels or not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

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
