"""A Flax NNX model trained with the softmax focal loss and an optax optimizer."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
nnx = pytest.importorskip("flax.nnx")

import focalkit  # noqa: E402
from focalkit.jax import softmax_focal_loss_with_integer_labels  # noqa: E402


class MLP(nnx.Module):
    def __init__(self, features: int, classes: int, rngs: nnx.Rngs) -> None:
        self.hidden = nnx.Linear(features, 32, rngs=rngs)
        self.out = nnx.Linear(32, classes, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


def test_flax_model_learns_an_imbalanced_problem():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [900, 90, 10])  # 90 : 9 : 1
    centers = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    x = (centers[labels] + rng.normal(scale=0.7, size=(labels.size, 2))).astype(np.float32)
    alpha = focalkit.class_weights(focalkit.class_counts(labels, 3), normalize="mean")

    model = MLP(2, 3, nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            logits = model(x)
            return softmax_focal_loss_with_integer_labels(logits, y, gamma=2.0, alpha=alpha).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(train_step(model, optimizer, x, labels)) for _ in range(150)]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.15 * losses[0]
    predicted = np.asarray(model(x).argmax(-1))
    recall = [float(np.mean(predicted[labels == k] == k)) for k in range(3)]
    assert min(recall) >= 0.7, recall  # the 1% class is found, not traded for accuracy
