"""Every dtype a Keras loss may be given, and settings traced by jit, on the active backend."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_backend import to_numpy
from oracles import sigmoid_focal_oracle, softmax_focal_oracle

from focalkit.keras import (
    SparseCategoricalFocalCrossentropy,
    binary_focal_crossentropy,
    categorical_focal_crossentropy,
    sparse_categorical_focal_crossentropy,
)

ALPHA = [0.2, 0.3, 0.5]


def rounded_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` as the backend stores it in ``dtype``, read back in float64."""
    stored = keras.ops.cast(keras.ops.convert_to_tensor(x), dtype)
    return to_numpy(keras.ops.cast(stored, "float32")).astype(np.float64)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_sparse_loss_with_a_half_dtype_checks_its_labels_and_matches_float64(dtype):
    # Keras casts y_true to the loss's dtype too: the label check must read half labels.
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32) * 3
    labels = np.array([0, 1, 2, 2, 1, 0])
    loss = SparseCategoricalFocalCrossentropy(alpha=ALPHA, from_logits=True, dtype=dtype)
    value = loss(labels, x)
    assert keras.backend.standardize_dtype(value.dtype) == dtype
    expected = softmax_focal_oracle(rounded_to(x, dtype), labels, gamma=2.0, alpha=ALPHA)
    # Computed in float32 from the rounded inputs; Keras's reduction then runs in the half dtype.
    rtol = 2 * float(np.finfo(np.float16).eps) if dtype == "float16" else 2 * 2.0**-7
    np.testing.assert_allclose(to_numpy(keras.ops.cast(value, "float32")), expected, rtol=rtol)
    with pytest.raises(ValueError, match=r"y_true class indices must be in \[0, 3\); got 5"):
        loss(np.array([0, 5, 1, 1, 1, 1]), x)


FLOAT64 = keras.backend.standardize_dtype(keras.ops.convert_to_tensor(np.zeros(1)).dtype)


def test_float64_predictions_with_per_class_settings_compute_in_float64():
    # TensorFlow refused to multiply the float32 per-class vector into a float64 loss; Keras's torch
    # backend rounded float64 to float32 in ops.mean, ops.power's exponent, maximum and minimum.
    # (JAX keeps float64 as float32 unless jax_enable_x64 is set.)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3)) * 2
    p = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    labels = np.array([0, 2, 1, 2, 0, 1])
    one_hot = np.eye(3)[labels]
    soft = np.full((6, 3), 0.3)
    class_weight = [0.5, 1.0, 2.0]
    gamma = 1.7  # not a float32 number
    cases = {
        "sparse": (
            sparse_categorical_focal_crossentropy(
                labels, x, gamma=gamma, alpha=ALPHA, from_logits=True
            ),
            softmax_focal_oracle(x, labels, gamma=gamma, alpha=ALPHA, reduction="none"),
        ),
        "categorical on probabilities": (
            categorical_focal_crossentropy(one_hot, p, gamma=gamma, alpha=ALPHA),
            softmax_focal_oracle(np.log(p), labels, gamma=gamma, alpha=ALPHA, reduction="none"),
        ),
        "binary": (
            binary_focal_crossentropy(
                soft, x, gamma=gamma, alpha=0.25, class_weight=class_weight, from_logits=True
            ),
            sigmoid_focal_oracle(
                x, soft, gamma=gamma, alpha=0.25, weight=class_weight, reduction="none"
            ).mean(-1),
        ),
    }
    rtol = 1e-12 if FLOAT64 == "float64" else 1e-5
    for name, (result, expected) in cases.items():
        assert keras.backend.standardize_dtype(result.dtype) == FLOAT64, name
        np.testing.assert_allclose(to_numpy(result), expected, rtol=rtol, err_msg=name)
