"""Every dtype a Keras loss may be given, and settings traced by jit, on the active backend."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_backend import to_numpy
from oracles import softmax_focal_oracle

from focalkit.keras import SparseCategoricalFocalCrossentropy

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
