"""Seed 001: a Keras multi-class focal loss with inverse-frequency class weights.

Source: /work/shared/seeds/001_3b436c2501aa7d67.txt ("seed 001", a blog post "focal loss 的理解").
Its ``multi_category_focal_loss`` treats each of the C softmax outputs as a binary problem:
``pt = y p + (1 - y)(1 - p)`` per class, ``-(1 - pt)**2 log(pt)``, then a matmul with weights
``total / count`` normalized to sum to 1, giving one loss per sample. The post prints the inputs
and the eight losses; they are hard-coded below.

In focalkit that is ``binary_focal_loss`` on the probabilities with ``alpha=None``,
``weight=class_weights(counts, "inverse", "sum")`` along the class dimension, summed over classes.
The one difference: the seed clips probabilities to ``[1e-7, 1 - 1e-7]`` and focalkit does not.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from oracles import binary_focal_oracle

import focalkit

# Seed 001's label_num_list: four classes with 100, 200, 50 and 10 samples.
LABEL_COUNTS = [100, 200, 50, 10]

# Seed 001's printed y_true (tf.one_hot of 8 random labels, depth 4).
Y_TRUE = np.array(
    [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
    ]
)

# Seed 001's printed y_pred (K.softmax of normal logits), float64 as printed.
Y_PRED = np.array(
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

# Seed 001's printed loss, shape (8, 1) float32, flattened.
PRINTED_LOSS = np.array(
    [
        0.04206767,
        0.11250415,
        0.00784752,
        0.05654315,
        0.30171221,
        0.12844518,
        0.16094631,
        0.06586922,
    ]
)


def seed_001_focal_loss(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Seed 001's ``multi_category_focal_loss`` transcribed into NumPy (float64).

    TensorFlow ops map one to one: ``tf.clip_by_value`` -> ``np.clip``, ``K.log`` -> ``np.log``,
    ``tf.pow`` -> ``**``, ``tf.matmul`` -> ``@``. Returns shape ``(N, 1)`` like the seed.
    """
    gamma = 2.0
    epsilon = 1.0e-7
    total_sample_num = sum(LABEL_COUNTS)
    classes_weight = [total_sample_num / label_num for label_num in LABEL_COUNTS]
    classes_weight_norm = [weight / sum(classes_weight) for weight in classes_weight]
    alpha = np.expand_dims(np.array(classes_weight_norm), 1)

    y_pred = np.clip(y_pred, epsilon, 1.0 - epsilon)
    pt = y_true * y_pred + (1 - y_true) * (1 - y_pred)
    cross_entropy_loss = -np.log(pt)
    weight = (1.0 - pt) ** gamma
    return (weight * cross_entropy_loss) @ alpha


def focalkit_seed_001(y_true: np.ndarray, y_pred: np.ndarray) -> torch.Tensor:
    """focalkit's spelling of seed 001: per-class weighted binary focal loss, summed per sample."""
    weight = focalkit.class_weights(LABEL_COUNTS, method="inverse", normalize="sum")
    loss = focalkit.binary_focal_loss(
        torch.tensor(y_pred),
        torch.tensor(y_true),
        weight=torch.tensor(weight),
        alpha=None,
        gamma=2,
        reduction="none",
    )
    return loss.sum(1)


def test_class_weights_are_the_seeds_normalized_weights() -> None:
    total = sum(LABEL_COUNTS)
    raw = [total / count for count in LABEL_COUNTS]
    expected = [weight / sum(raw) for weight in raw]  # the seed's classes_weight_norm
    weights = focalkit.class_weights(LABEL_COUNTS, method="inverse", normalize="sum")
    np.testing.assert_allclose(weights, expected, rtol=1e-15)
    np.testing.assert_allclose(weights, np.array([2, 1, 4, 20]) / 27, rtol=1e-15)


def test_focalkit_reproduces_the_printed_losses() -> None:
    loss = focalkit_seed_001(Y_TRUE, Y_PRED)
    assert loss.shape == (8,)
    np.testing.assert_allclose(loss.numpy(), PRINTED_LOSS, rtol=0, atol=1e-6)


def test_transcription_reproduces_the_printed_losses() -> None:
    # Proves the NumPy transcription is the seed: it reproduces the post's own output.
    loss = seed_001_focal_loss(Y_TRUE, Y_PRED)
    assert loss.shape == (8, 1)
    np.testing.assert_allclose(loss[:, 0], PRINTED_LOSS, rtol=0, atol=1e-6)


def test_focalkit_is_the_transcription_when_nothing_is_clipped() -> None:
    # Away from the clip the two agree to float64 rounding, not merely to the printed digits.
    np.testing.assert_allclose(
        focalkit_seed_001(Y_TRUE, Y_PRED).numpy(),
        seed_001_focal_loss(Y_TRUE, Y_PRED)[:, 0],
        rtol=1e-12,
    )


def test_seed_clip_differs_from_focalkit_for_a_confident_prediction() -> None:
    # A confidently wrong sample: the true class gets p = 1e-9 and another class p = 1 - 1e-9.
    # The seed clips both to 1e-7 away from the edge, so each log term saturates at
    # -log(1e-7) = 16.1; the exact loss has -log(1e-9) = 20.7. focalkit follows the exact
    # definition (the float64 oracle); the seed is about 22% low.
    y_true = np.array([[1.0, 0.0, 0.0, 0.0]])
    y_pred = np.array([[1e-9, 1.0 - 1e-9, 0.0, 0.0]])
    weight = focalkit.class_weights(LABEL_COUNTS, method="inverse", normalize="sum")
    exact = binary_focal_oracle(
        y_pred, y_true, gamma=2.0, alpha=None, weight=weight, reduction="none"
    ).sum(1)
    seed = seed_001_focal_loss(y_true, y_pred)[:, 0]
    ours = focalkit_seed_001(y_true, y_pred).numpy()

    np.testing.assert_allclose(ours, exact, rtol=1e-9)
    # Exact: (w0 + w1) (1 - 1e-9)**2 log(1e9); the seed: (w0 + w1) (1 - 1e-7)**2 log(1e7).
    np.testing.assert_allclose(exact, (weight[0] + weight[1]) * math.log(1e9), rtol=1e-8)
    np.testing.assert_allclose(seed, (weight[0] + weight[1]) * math.log(1e7), rtol=1e-6)
    assert seed[0] < 0.8 * exact[0]


def test_seed_clip_also_floors_a_confident_correct_prediction() -> None:
    # Confidently right (p_true = 1 - 1e-9): the exact loss is about 1e-27; the clip holds the
    # seed's at about 1e-21, a million times larger. focalkit keeps the exact value.
    y_true = np.array([[1.0, 0.0, 0.0, 0.0]])
    y_pred = np.array([[1.0 - 1e-9, 1e-9, 0.0, 0.0]])
    weight = focalkit.class_weights(LABEL_COUNTS, method="inverse", normalize="sum")
    exact = binary_focal_oracle(
        y_pred, y_true, gamma=2.0, alpha=None, weight=weight, reduction="none"
    ).sum(1)
    seed = seed_001_focal_loss(y_true, y_pred)[:, 0]
    ours = focalkit_seed_001(y_true, y_pred).numpy()

    np.testing.assert_allclose(ours, exact, rtol=1e-6)
    assert exact[0] < 1e-25
    assert seed[0] > 1e5 * exact[0]
