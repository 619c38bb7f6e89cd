"""focalkit.keras against float64 NumPy formulas, over random inputs, options and dtypes.

The references are written one element at a time, for accuracy in the tails rather than speed:
with :math:`m = \\max_j x_j` and :math:`s = \\sum_{j \\ne \\arg\\max} e^{x_j - m}`,
:math:`\\log p_c = (x_c - m) - \\operatorname{log1p}(s)`, and for the most likely class
:math:`1 - p = s / (1 + s)`; for a sigmoid, :math:`1 - p_t = y \\sigma(-x) + (1 - y) \\sigma(x)`.
So the comparison holds to relative tolerances over the whole logit range, as it should: a focal
loss exists for the confident predictions whose loss is tiny.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras_backend import to_numpy

from focalkit.keras import (
    BinaryFocalCrossentropy,
    CategoricalFocalCrossentropy,
    SparseCategoricalFocalCrossentropy,
    binary_focal_crossentropy,
    categorical_focal_crossentropy,
    sparse_categorical_focal_crossentropy,
)

# --- float64 references ------------------------------------------------------------------------


def per_class(value: Any, c: int) -> float:
    if value is None:
        return 1.0
    return float(value) if np.isscalar(value) else float(value[c])


def softmax_reference(x: np.ndarray, q: np.ndarray, gamma: float, alpha: Any) -> np.ndarray:
    """``-sum_c alpha_c q_c (1 - p_c)^gamma log p_c`` with ``p = softmax(x)`` over the last axis."""
    losses = np.zeros(x.shape[:-1])
    for index in np.ndindex(losses.shape):
        z, weights = x[index], q[index]
        top = int(np.argmax(z))
        m = float(z[top])
        s = sum(math.exp(float(z[j]) - m) for j in range(z.size) if j != top)
        for c in range(z.size):
            if weights[c] == 0.0:
                continue
            log_p = (float(z[c]) - m) - math.log1p(s)
            one_minus_p = s / (1.0 + s) if c == top else -math.expm1(log_p)
            losses[index] += -weights[c] * per_class(alpha, c) * one_minus_p**gamma * log_p
    return losses


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sigmoid_reference(
    x: np.ndarray, y: np.ndarray, gamma: float, alpha: Any, class_weight: Any, from_logits: bool
) -> np.ndarray:
    """Mean over the last axis of ``-w alpha_t (1 - p_t)^gamma [y log p + (1 - y) log(1 - p)]``."""
    losses = np.zeros(x.shape)
    for index in np.ndindex(x.shape):
        c, yi = index[-1], float(y[index])
        if from_logits:
            log_p, log_1mp = log_sigmoid(float(x[index])), log_sigmoid(-float(x[index]))
            p, one_minus_p = math.exp(log_p), math.exp(log_1mp)
        else:  # probabilities inside [epsilon, 1 - epsilon]: Keras's clip does nothing
            p = float(x[index])
            one_minus_p, log_p, log_1mp = 1.0 - p, math.log(p), math.log1p(-p)
        a = per_class(alpha, c)
        alpha_t = 1.0 if alpha is None else a * yi + (1.0 - a) * (1.0 - yi)
        focal = (yi * one_minus_p + (1.0 - yi) * p) ** gamma
        bce = -(yi * log_p + (1.0 - yi) * log_1mp)
        losses[index] = per_class(class_weight, c) * alpha_t * focal * bce
    return losses.mean(-1)


# --- dtypes and tolerances ---------------------------------------------------------------------

DTYPES = ["float16", "bfloat16", "float32", "float64"]
UNIT_ROUNDOFF = {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24, "float64": 2.0**-53}
# Below the smallest normal number of the computation (float32 for half inputs; 2^-24, float16's
# subnormal spacing, for float16 results) relative precision is gone: XLA flushes to zero.
FLOOR = {"float16": 2.0**-24, "bfloat16": 2.0**-126, "float32": 2.0**-126, "float64": 2.0**-1022}


def stored(x: np.ndarray, dtype: str) -> Any:
    """``x`` as a tensor of ``dtype`` (JAX without x64 keeps float64 as float32)."""
    return keras.ops.cast(keras.ops.convert_to_tensor(x), dtype)


def as_float64(tensor: Any) -> np.ndarray:
    if keras.backend.standardize_dtype(tensor.dtype) in ("float16", "bfloat16"):
        tensor = keras.ops.cast(tensor, "float32")
    return to_numpy(tensor).astype(np.float64)


def check(result: Any, expected: np.ndarray, dtype: str) -> None:
    """``result`` has ``dtype`` and agrees with ``expected`` to a relative tolerance.

    Half inputs are computed in float32 and rounded once to their dtype. A computation in
    precision u loses about u |log v| relatively where exp() makes a value v; 16 u covers the rest.
    """
    assert keras.backend.standardize_dtype(result.dtype) == dtype
    compute = "float32" if dtype in ("float16", "bfloat16") else dtype
    scale = 1.0 + np.abs(np.log(np.maximum(np.abs(expected), FLOOR["float64"])))
    rtol = UNIT_ROUNDOFF[dtype] + 16 * UNIT_ROUNDOFF[compute] * scale
    got = as_float64(result)
    error = np.abs(got - expected)
    bad = ~(error <= rtol * np.abs(expected) + FLOOR[dtype])
    assert not bad.any(), f"got {got[bad]}, expected {expected[bad]} (dtype {dtype})"


def effective(dtype: str) -> str:
    return keras.backend.standardize_dtype(stored(np.zeros(1, np.float32), dtype).dtype)


# --- strategies --------------------------------------------------------------------------------

SHAPES = [(5, 3), (2, 3, 4)]  # few shapes: JAX compiles each eager op once per shape and dtype
gammas = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.floats(0.0, 4.0))
scales = st.sampled_from([0.1, 1.0, 10.0, 100.0, 1e3])


@st.composite
def common(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.sampled_from(SHAPES))
    seed = draw(st.integers(0, 2**32 - 1))
    return {
        "shape": shape,
        "rng": np.random.default_rng(seed),
        "dtype": draw(st.sampled_from(DTYPES)),
        "api": draw(st.sampled_from(["function", "class"])),
        "from_logits": draw(st.booleans()),
        "gamma": draw(gammas),
        "scale": draw(scales),
    }


def alphas(num_classes: int, unit: bool) -> st.SearchStrategy[Any]:
    high = 1.0 if unit else 2.0
    values = st.floats(0.0, high)
    vectors = st.lists(values, min_size=num_classes, max_size=num_classes)
    return st.one_of(st.none(), values, vectors)


def predictions(case: dict[str, Any], softmax: bool) -> tuple[Any, np.ndarray]:
    """The tensor the loss gets (float32 for the class, which casts it) and its float64 values."""
    rng, shape, dtype = case["rng"], case["shape"], case["dtype"]
    if case["from_logits"]:
        x = rng.standard_normal(shape) * case["scale"]
    elif softmax:  # each probability at least 0.05 / sum: no clipping, no catastrophic 1 - p
        x = rng.uniform(0.05, 1.0, shape)
        x /= x.sum(-1, keepdims=True)
    else:
        x = rng.uniform(0.01, 0.99, shape)
    tensor = stored(x.astype(np.float32), dtype)
    values = as_float64(tensor)
    if case["api"] == "class":
        return to_numpy(keras.ops.cast(tensor, "float32")), values
    return tensor, values


def targets_as_read(y_true: np.ndarray, case: dict[str, Any]) -> np.ndarray:
    """``y_true`` in float64 as the loss reads it: a Keras ``Loss`` casts it to its dtype."""
    if case["api"] == "class":
        return as_float64(stored(y_true, case["dtype"]))
    return y_true.astype(np.float64)


def log_probabilities(values: np.ndarray, from_logits: bool) -> np.ndarray:
    # softmax(log p) is p renormalised, as Keras renormalises probabilities.
    return values if from_logits else np.log(values)


# --- the tests ---------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(case=common(), data=st.data())
def test_sparse_matches_the_float64_reference(case, data):
    num_classes = case["shape"][-1]
    alpha = data.draw(alphas(num_classes, unit=False), "alpha")
    ignore_class = data.draw(st.sampled_from([None, -1]), "ignore_class")
    label_dtype = data.draw(st.sampled_from(["int32", "int64", "float32"]), "label_dtype")
    y_pred, values = predictions(case, softmax=True)
    labels = case["rng"].integers(0, num_classes, case["shape"][:-1])
    if ignore_class is not None:
        labels.reshape(-1)[::3] = ignore_class
    one_hot = np.eye(num_classes)[np.where(labels < 0, 0, labels)] * (labels >= 0)[..., None]
    expected = softmax_reference(
        log_probabilities(values, case["from_logits"]), one_hot, case["gamma"], alpha
    )
    settings_ = {"gamma": case["gamma"], "alpha": alpha, "from_logits": case["from_logits"]}
    settings_["ignore_class"] = ignore_class
    labels = labels.astype(label_dtype)
    if case["api"] == "function":
        result = sparse_categorical_focal_crossentropy(labels, y_pred, **settings_)
    else:
        loss = SparseCategoricalFocalCrossentropy(reduction=None, dtype=case["dtype"], **settings_)
        result = loss(labels, y_pred)
    check(result, expected, effective(case["dtype"]))


@settings(max_examples=25, deadline=None)
@given(case=common(), data=st.data())
def test_categorical_matches_the_float64_reference(case, data):
    num_classes = case["shape"][-1]
    alpha = data.draw(alphas(num_classes, unit=False), "alpha")
    label_smoothing = data.draw(st.sampled_from([0.0, 0.1, 1.0]), "label_smoothing")
    soft = data.draw(st.booleans(), "soft")
    y_pred, values = predictions(case, softmax=True)
    rng = case["rng"]
    if soft:
        y_true = rng.dirichlet(np.ones(num_classes), case["shape"][:-1]).astype(np.float32)
    else:
        labels = rng.integers(0, num_classes, case["shape"][:-1])
        y_true = np.eye(num_classes, dtype=np.float32)[labels]
    q = targets_as_read(y_true, case) * (1.0 - label_smoothing) + label_smoothing / num_classes
    expected = softmax_reference(
        log_probabilities(values, case["from_logits"]), q, case["gamma"], alpha
    )
    settings_ = {"gamma": case["gamma"], "alpha": alpha, "from_logits": case["from_logits"]}
    settings_["label_smoothing"] = label_smoothing
    if case["api"] == "function":
        result = categorical_focal_crossentropy(y_true, y_pred, **settings_)
    else:
        loss = CategoricalFocalCrossentropy(reduction=None, dtype=case["dtype"], **settings_)
        result = loss(y_true, y_pred)
    # q is formed in float32 (the compute dtype) from y_true: 1 - 0.1 and 0.1 / C round there.
    check(result, expected, effective(case["dtype"]))


@settings(max_examples=25, deadline=None)
@given(case=common(), data=st.data())
def test_binary_matches_the_float64_reference(case, data):
    num_classes = case["shape"][-1]
    alpha = data.draw(alphas(num_classes, unit=True), "alpha")
    class_weight = data.draw(alphas(num_classes, unit=False), "class_weight")
    label_smoothing = data.draw(st.sampled_from([0.0, 0.2]), "label_smoothing")
    soft = data.draw(st.booleans(), "soft")
    y_pred, values = predictions(case, softmax=False)
    rng = case["rng"]
    y_true = rng.uniform(size=y_pred.shape) if soft else rng.integers(0, 2, y_pred.shape)
    y_true = y_true.astype(np.float32)
    y = targets_as_read(y_true, case) * (1.0 - label_smoothing) + 0.5 * label_smoothing
    expected = sigmoid_reference(values, y, case["gamma"], alpha, class_weight, case["from_logits"])
    settings_ = {"gamma": case["gamma"], "alpha": alpha, "from_logits": case["from_logits"]}
    settings_.update(label_smoothing=label_smoothing, class_weight=class_weight)
    if case["api"] == "function":
        result = binary_focal_crossentropy(y_true, y_pred, **settings_)
    else:
        loss = BinaryFocalCrossentropy(reduction=None, dtype=case["dtype"], **settings_)
        result = loss(y_true, y_pred)
    check(result, expected, effective(case["dtype"]))


@pytest.mark.parametrize("gap", [10.0, 20.0, 40.0])
@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_confident_right_softmax_predictions_keep_their_tiny_loss(gap, gamma):
    # log_softmax rounds -log p = log(1 + 2 e^-gap) to 0 in float32 from gap 17 (as Keras's own
    # sparse_categorical_crossentropy does): the loss of every confident, right prediction.
    x = np.array([[gap, 0.0, 0.0]], np.float32)
    expected = softmax_reference(x.astype(np.float64), np.eye(3)[[0]], gamma, None)
    sparse = sparse_categorical_focal_crossentropy([0], x, gamma=gamma, from_logits=True)
    categorical = categorical_focal_crossentropy(np.eye(3)[[0]], x, gamma=gamma, from_logits=True)
    np.testing.assert_allclose(to_numpy(sparse), expected, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(categorical), expected, rtol=1e-5)
