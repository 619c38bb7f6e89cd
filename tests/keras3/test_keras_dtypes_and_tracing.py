"""Every dtype a Keras loss may be given, and settings traced by jit, on the active backend."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_backend import to_numpy, traced
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


# --- gamma and alpha as tensors ------------------------------------------------------------------

X_INF = np.array([[0.0, -np.inf, -np.inf], [2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], np.float32)
LABELS = np.array([0, 2, 1])


def softmax_expected(gamma, alpha):
    return softmax_focal_oracle(X_INF, LABELS, gamma=gamma, alpha=alpha, reduction="none")


def binary_expected(y, x, gamma, alpha):
    columns = [
        sigmoid_focal_oracle(x[:, c], y[:, c], gamma=gamma, alpha=a, reduction="none")
        for c, a in enumerate(np.broadcast_to(alpha, (x.shape[1],)))
    ]
    return np.mean(columns, axis=0)


@pytest.mark.skipif(traced(abs) is None, reason="Keras runs the torch backend eagerly")
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [0.25, ALPHA], ids=["scalar", "per_class"])
def test_gamma_and_alpha_traced_by_jit_are_accepted(gamma, alpha):
    # optax's focal tests pass gamma and alpha to a jitted function as keyword arguments. The
    # first row is certain (logits 0, -inf, -inf): a traced gamma of 0 must give 0 ** 0 = 1.
    def jitted(function):
        return traced(lambda y, p, g, a: function(y, p, gamma=g, alpha=a, from_logits=True))

    gamma_t = keras.ops.convert_to_tensor(np.float32(gamma))
    alpha_t = keras.ops.convert_to_tensor(np.asarray(alpha, np.float32))
    expected = softmax_expected(gamma, alpha)
    sparse = jitted(sparse_categorical_focal_crossentropy)(LABELS, X_INF, gamma_t, alpha_t)
    np.testing.assert_allclose(to_numpy(sparse), expected, rtol=1e-5, atol=1e-7)
    # The other losses on the finite rows (0 times an infinite -log p is NaN in soft targets).
    one_hot, x = np.eye(3, dtype=np.float32)[LABELS[1:]], X_INF[1:]
    categorical = jitted(categorical_focal_crossentropy)(one_hot, x, gamma_t, alpha_t)
    np.testing.assert_allclose(to_numpy(categorical), expected[1:], rtol=1e-5)
    binary = jitted(binary_focal_crossentropy)(one_hot, x, gamma_t, alpha_t)
    np.testing.assert_allclose(
        to_numpy(binary), binary_expected(one_hot, x, gamma, alpha), rtol=1e-5
    )


FUNCTIONS = {
    "sparse_categorical_focal_crossentropy": (sparse_categorical_focal_crossentropy, LABELS),
    "categorical_focal_crossentropy": (categorical_focal_crossentropy, np.eye(3)[LABELS]),
    "binary_focal_crossentropy": (binary_focal_crossentropy, np.eye(3)[LABELS]),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_gamma_and_alpha_tensors_are_checked_when_they_can_be_read(name):
    function, y_true = FUNCTIONS[name]
    x = X_INF[1:].repeat(2, 0)[:3]
    tensor = keras.ops.convert_to_tensor
    value = function(y_true, x, gamma=tensor(1.5), alpha=tensor(ALPHA), from_logits=True)
    same = function(y_true, x, gamma=1.5, alpha=ALPHA, from_logits=True)
    np.testing.assert_array_equal(to_numpy(value), to_numpy(same))
    with pytest.raises(ValueError, match=rf"{name}\(\): gamma must be >= 0, got -1.0"):
        function(y_true, x, gamma=tensor(-1.0))
    with pytest.raises(ValueError, match=rf"{name}\(\): gamma must be a scalar, got shape \(2,\)"):
        function(y_true, x, gamma=tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=rf"{name}\(\): alpha must be in \[0, 1\]|>= 0, got -0.5"):
        function(y_true, x, alpha=tensor([0.2, -0.5, 0.1]))
    with pytest.raises(ValueError, match=r"alpha must be a number or a 1-D sequence .* \(1, 3\)"):
        function(y_true, x, alpha=tensor([ALPHA]))
    if traced(abs) is not None:  # a Python number is still checked inside jit
        with pytest.raises(ValueError, match=r"gamma must be >= 0, got -1.0"):
            traced(lambda y, p: function(y, p, gamma=-1.0))(y_true, x)
