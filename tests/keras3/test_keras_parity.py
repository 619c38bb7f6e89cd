"""focalkit.keras against focalkit's PyTorch losses, Keras's built-ins and seed 001."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import torch
from keras_backend import BACKEND, to_numpy

import focalkit
from focalkit.keras import (
    BinaryFocalCrossentropy,
    CategoricalFocalCrossentropy,
    SparseCategoricalFocalCrossentropy,
)
from focalkit.torch import (
    binary_focal_loss,
    nll_focal_loss,
    sigmoid_focal_loss,
    softmax_focal_loss,
)

F32 = {"rtol": 1e-5, "atol": 1e-6}
REDUCTIONS = [None, "sum", "sum_over_batch_size", "mean", "mean_with_sample_weight"]
ALPHAS = {"none": None, "scalar": 0.3, "per_class": [0.1, 0.2, 0.3, 0.15, 0.25]}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def logits(shape: tuple[int, ...], scale: float = 3.0, seed: int = 0) -> np.ndarray:
    return (rng(seed).standard_normal(shape) * scale).astype(np.float32)


def probabilities(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    z = rng(seed).standard_normal(shape)
    return (np.exp(z) / np.exp(z).sum(-1, keepdims=True)).astype(np.float32)


def class_last_to_torch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.moveaxis(x, -1, 1).copy())


# --- same numbers as focalkit's torch losses ---------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4, 5)], ids=["2d", "4d"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", ALPHAS.values(), ids=ALPHAS.keys())
@pytest.mark.parametrize("ignore_class", [None, -1])
def test_sparse_on_logits_equals_torch_softmax_focal_loss(shape, gamma, alpha, ignore_class):
    x = logits(shape)
    target = rng(1).integers(0, shape[-1], shape[:-1])
    if ignore_class is not None:
        target[..., 0] = ignore_class
    loss = SparseCategoricalFocalCrossentropy(
        gamma=gamma, alpha=alpha, from_logits=True, ignore_class=ignore_class, reduction=None
    )
    ours = to_numpy(loss(target, x))
    index = torch.from_numpy(target if ignore_class is None else np.where(target < 0, -100, target))
    expected = softmax_focal_loss(
        class_last_to_torch(x), index, reduction="none", gamma=gamma, alpha=alpha
    )
    np.testing.assert_allclose(ours, expected.numpy(), **F32)
    mean = SparseCategoricalFocalCrossentropy(
        gamma=gamma, alpha=alpha, from_logits=True, ignore_class=ignore_class
    )
    expected_mean = softmax_focal_loss(class_last_to_torch(x), index, gamma=gamma, alpha=alpha)
    np.testing.assert_allclose(to_numpy(mean(target, x)), expected_mean.numpy(), **F32)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", ALPHAS.values(), ids=ALPHAS.keys())
def test_sparse_on_probabilities_equals_torch_nll_focal_loss(gamma, alpha):
    p = probabilities((8, 5))
    target = rng(1).integers(0, 5, (8, 1))  # (N, 1) targets, as Keras's sparse losses accept
    loss = SparseCategoricalFocalCrossentropy(gamma=gamma, alpha=alpha, reduction=None)
    expected = nll_focal_loss(
        torch.from_numpy(p).log(),
        torch.from_numpy(target[:, 0]),
        reduction="none",
        gamma=gamma,
        alpha=alpha,
    )
    np.testing.assert_allclose(to_numpy(loss(target, p)), expected.numpy(), **F32)


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", ALPHAS.values(), ids=ALPHAS.keys())
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_categorical_on_logits_equals_torch_softmax_focal_loss(axis, gamma, alpha, label_smoothing):
    x = logits((2, 3, 4, 5))  # class axis last
    q = probabilities((2, 3, 4, 5), seed=2)  # soft targets
    expected = softmax_focal_loss(
        class_last_to_torch(x),
        class_last_to_torch(q),
        reduction="none",
        label_smoothing=label_smoothing,
        gamma=gamma,
        alpha=alpha,
    ).numpy()
    if axis == 1:  # the same data with the class axis at 1
        x, q = np.moveaxis(x, -1, 1), np.moveaxis(q, -1, 1)
        expected = expected  # (N, d1, d2) either way: the class axis is reduced
    loss = CategoricalFocalCrossentropy(
        gamma=gamma,
        alpha=alpha,
        from_logits=True,
        label_smoothing=label_smoothing,
        axis=axis,
        reduction=None,
    )
    np.testing.assert_allclose(to_numpy(loss(q, x)), expected, **F32)


BINARY_ALPHAS = {"none": None, "scalar": 0.25, "per_class": [0.1, 0.5, 0.9, 0.3]}
CLASS_WEIGHTS = {"none": None, "per_class": list(focalkit.class_weights([100, 200, 50, 10]))}


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", BINARY_ALPHAS.values(), ids=BINARY_ALPHAS.keys())
@pytest.mark.parametrize("class_weight", CLASS_WEIGHTS.values(), ids=CLASS_WEIGHTS.keys())
@pytest.mark.parametrize("soft", [False, True])
def test_binary_on_logits_equals_torch_sigmoid_focal_loss(gamma, alpha, class_weight, soft):
    x = logits((3, 6, 4))
    y = rng(1).uniform(size=x.shape) if soft else rng(1).integers(0, 2, x.shape)
    y = y.astype(np.float32)
    loss = BinaryFocalCrossentropy(
        gamma=gamma, alpha=alpha, from_logits=True, class_weight=class_weight, reduction=None
    )
    weight = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
    torch_alpha = None if alpha is None else torch.tensor(alpha, dtype=torch.float32)
    expected = sigmoid_focal_loss(
        torch.from_numpy(x),
        torch.from_numpy(y),
        weight,
        reduction="none",
        gamma=gamma,
        alpha=torch_alpha,
    )
    np.testing.assert_allclose(to_numpy(loss(y, x)), expected.mean(-1).numpy(), **F32)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", BINARY_ALPHAS.values(), ids=BINARY_ALPHAS.keys())
def test_binary_on_probabilities_equals_torch_binary_focal_loss(gamma, alpha):
    p = rng(0).uniform(0.01, 0.99, (16, 4)).astype(np.float32)
    y = rng(1).integers(0, 2, p.shape).astype(np.float32)
    torch_alpha = None if alpha is None else torch.tensor(alpha, dtype=torch.float32)
    expected = binary_focal_loss(
        torch.from_numpy(p), torch.from_numpy(y), reduction="none", gamma=gamma, alpha=torch_alpha
    )
    loss = BinaryFocalCrossentropy(gamma=gamma, alpha=alpha, axis=1, reduction=None)
    np.testing.assert_allclose(to_numpy(loss(y, p)), expected.mean(-1).numpy(), **F32)


def test_binary_label_smoothing_equals_torch_on_smoothed_targets():
    x, y = logits((8, 3)), rng(1).integers(0, 2, (8, 3)).astype(np.float32)
    loss = BinaryFocalCrossentropy(alpha=0.25, from_logits=True, label_smoothing=0.2)
    expected = sigmoid_focal_loss(torch.from_numpy(x), torch.from_numpy(y * 0.8 + 0.1))
    np.testing.assert_allclose(to_numpy(loss(y, x)), expected.numpy(), **F32)


# --- Keras's own losses -------------------------------------------------------------------------


def reduce_both(ours, theirs, y_true, y_pred, reduction):
    weight = rng(5).uniform(0.5, 2.0, (y_pred.shape[0],)).astype(np.float32)
    for sample_weight in (None, weight):
        np.testing.assert_allclose(
            to_numpy(ours(y_true, y_pred, sample_weight=sample_weight)),
            to_numpy(theirs(y_true, y_pred, sample_weight=sample_weight)),
            rtol=1e-5,
            atol=1e-7,
            err_msg=f"reduction={reduction}, sample_weight={sample_weight is not None}",
        )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_categorical_equals_keras_categorical_focal(reduction, from_logits, label_smoothing):
    y_pred = logits((16, 4), scale=2.0) if from_logits else probabilities((16, 4))
    y_true = np.eye(4, dtype=np.float32)[rng(1).integers(0, 4, 16)]
    settings = {"from_logits": from_logits, "label_smoothing": label_smoothing}
    ours = CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0, reduction=reduction, **settings)
    theirs = keras.losses.CategoricalFocalCrossentropy(
        alpha=0.25, gamma=2.0, reduction=reduction, **settings
    )
    reduce_both(ours, theirs, y_true, y_pred, reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (0.6, 0.5), (0.5, 0.0)])
def test_binary_equals_keras_binary_focal_with_class_balancing(
    reduction, from_logits, alpha, gamma
):
    shape = (16, 3)
    y_pred = logits(shape, 2.0) if from_logits else rng(0).uniform(0.01, 0.99, shape)
    y_pred = y_pred.astype(np.float32)
    y_true = rng(1).integers(0, 2, shape).astype(np.float32)
    settings = {"alpha": alpha, "gamma": gamma, "from_logits": from_logits, "label_smoothing": 0.1}
    ours = BinaryFocalCrossentropy(reduction=reduction, **settings)
    theirs = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=True, reduction=reduction, **settings
    )
    reduce_both(ours, theirs, y_true, y_pred, reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("ignore_class", [None, 2])
def test_sparse_gamma0_equals_keras_sparse_categorical(reduction, from_logits, ignore_class):
    y_pred = logits((12, 4), 2.0) if from_logits else probabilities((12, 4))
    y_true = rng(1).integers(0, 4, (12,))
    settings = {"from_logits": from_logits, "ignore_class": ignore_class, "reduction": reduction}
    ours = SparseCategoricalFocalCrossentropy(gamma=0.0, **settings)
    theirs = keras.losses.SparseCategoricalCrossentropy(**settings)
    reduce_both(ours, theirs, y_true, y_pred, reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_and_binary_gamma0_equal_keras_crossentropies(reduction, from_logits):
    y_pred = logits((12, 4), 2.0) if from_logits else probabilities((12, 4))
    y_true = np.eye(4, dtype=np.float32)[rng(1).integers(0, 4, 12)]
    settings = {"from_logits": from_logits, "label_smoothing": 0.1, "reduction": reduction}
    reduce_both(
        CategoricalFocalCrossentropy(gamma=0.0, **settings),
        keras.losses.CategoricalCrossentropy(**settings),
        y_true,
        y_pred,
        reduction,
    )
    reduce_both(
        BinaryFocalCrossentropy(gamma=0.0, **settings),
        keras.losses.BinaryCrossentropy(**settings),
        y_true,
        y_pred,
        reduction,
    )


# --- where Keras's built-ins saturate -----------------------------------------------------------


@pytest.mark.parametrize("logit", [-100.0, -1e3, -1e4])
def test_categorical_stays_exact_at_confident_logits_where_keras_saturates(logit):
    x = np.array([[logit, 0.0, 0.0]], np.float32)
    y = np.array([[1.0, 0.0, 0.0]], np.float32)
    exact = 0.25 * (-logit + math.log(2.0))  # alpha (1 - p)^2 (-log p), with p = e^logit / 2
    ours = CategoricalFocalCrossentropy(alpha=0.25, from_logits=True)(y, x)
    theirs = keras.losses.CategoricalFocalCrossentropy(alpha=0.25, from_logits=True)(y, x)
    np.testing.assert_allclose(to_numpy(ours), exact, rtol=1e-6)
    # Keras: softmax, then clip to 1e-7: -log(1e-7) / 4, whatever the logit.
    np.testing.assert_allclose(to_numpy(theirs), 0.25 * -math.log(1e-7), rtol=1e-5)


@pytest.mark.parametrize("logit", [-100.0, -1e3, -1e4])
def test_binary_stays_exact_at_confident_logits_where_keras_saturates(logit):
    x, y = np.array([[logit]], np.float32), np.array([[1.0]], np.float32)
    exact = 0.25 * -logit  # alpha (1 - p)^2 softplus(-logit), with p = sigmoid(logit) ~ 0
    ours = BinaryFocalCrossentropy(alpha=0.25, from_logits=True)(y, x)
    theirs = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=True, alpha=0.25, from_logits=True
    )(y, x)
    np.testing.assert_allclose(to_numpy(ours), exact, rtol=1e-6)
    if BACKEND == "tensorflow":
        # Keras's TensorFlow backend recovers the logits from the Sigmoid op and is exact here.
        np.testing.assert_allclose(to_numpy(theirs), exact, rtol=1e-6)
    else:  # sigmoid, then clip to 1e-7
        np.testing.assert_allclose(to_numpy(theirs), 0.25 * -math.log(1e-7), rtol=1e-5)


# --- seed 001 -----------------------------------------------------------------------------------

SEED_Y_TRUE = np.eye(4, dtype=np.float32)[[0, 1, 0, 2, 2, 2, 0, 1]]
SEED_Y_PRED = np.array(
    [
        [0.37623284, 0.33230947, 0.0481559, 0.2433018],
        [0.29497108, 0.12360882, 0.20553146, 0.37588864],
        [0.58799838, 0.28331014, 0.07566421, 0.05302727],
        [0.4794889, 0.07500778, 0.41214537, 0.03335796],
        [0.28295068, 0.07871247, 0.16113049, 0.47720636],
        [0.03239087, 0.35946281, 0.28374307, 0.32440325],
        [0.08932401, 0.54083959, 0.23610655, 0.13372985],
        [0.19806993, 0.20598081, 0.29593526, 0.30001401],
    ]
)
SEED_LOSS = np.array(
    [0.04206767, 0.11250415, 0.00784752, 0.05654315, 0.30171221, 0.12844518, 0.16094631, 0.06586922]
)


def test_seed_001_printed_losses_are_reproduced():
    weights = focalkit.class_weights([100, 200, 50, 10], method="inverse", normalize="sum")
    loss = BinaryFocalCrossentropy(gamma=2, class_weight=weights, reduction=None)
    # Seed 001 sums over the 4 classes (a matmul with the weights); Keras averages.
    np.testing.assert_allclose(to_numpy(loss(SEED_Y_TRUE, SEED_Y_PRED)) * 4, SEED_LOSS, atol=1e-6)
