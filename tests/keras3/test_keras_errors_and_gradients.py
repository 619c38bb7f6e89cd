"""Bad settings raise at construction, bad input at call; gradients stay finite at the edges."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from keras_backend import BACKEND, gradient, to_numpy, traced

import focalkit
from focalkit.keras import (
    BinaryFocalCrossentropy,
    CategoricalFocalCrossentropy,
    SparseCategoricalFocalCrossentropy,
    sparse_categorical_focal_crossentropy,
)

SETTINGS_ERRORS = [
    (
        SparseCategoricalFocalCrossentropy,
        {"gamma": -0.5},
        ValueError,
        r"SparseCategoricalFocalCrossentropy\(\): gamma must be >= 0, got -0.5",
    ),
    (
        CategoricalFocalCrossentropy,
        {"gamma": "2"},
        TypeError,
        r"CategoricalFocalCrossentropy\(\): gamma must be a real number >= 0, got '2'",
    ),
    (
        BinaryFocalCrossentropy,
        {"alpha": 1.5},
        ValueError,
        r"BinaryFocalCrossentropy\(\): alpha must be in \[0, 1\], got 1.5",
    ),
    (
        BinaryFocalCrossentropy,
        {"alpha": [0.2, 1.2]},
        ValueError,
        r"BinaryFocalCrossentropy\(\): alpha must be in \[0, 1\], got 1.2",
    ),
    (
        CategoricalFocalCrossentropy,
        {"alpha": [0.2, -1.0]},
        ValueError,
        r"CategoricalFocalCrossentropy\(\): alpha must be >= 0, got -1.0",
    ),
    (
        CategoricalFocalCrossentropy,
        {"alpha": [[0.2]]},
        ValueError,
        r"alpha must be a number or a 1-D sequence with one value per class, got shape \(1, 1\)",
    ),
    (
        BinaryFocalCrossentropy,
        {"class_weight": "balanced"},
        TypeError,
        r"class_weight must be a number or a sequence of numbers, got 'balanced'",
    ),
    (
        CategoricalFocalCrossentropy,
        {"label_smoothing": 2.0},
        ValueError,
        r"label_smoothing must be in \[0, 1\], got 2.0",
    ),
    (
        SparseCategoricalFocalCrossentropy,
        {"ignore_class": 1.5},
        TypeError,
        r"ignore_class must be an int or None, got 1.5",
    ),
    (
        SparseCategoricalFocalCrossentropy,
        {"from_logits": "yes"},
        TypeError,
        r"from_logits must be a bool, got 'yes'",
    ),
    (BinaryFocalCrossentropy, {"axis": None}, TypeError, r"axis must be an int, got None"),
    (BinaryFocalCrossentropy, {"reduction": "average"}, ValueError, r"reduction"),  # Keras's
]


@pytest.mark.parametrize(("cls", "kwargs", "error", "message"), SETTINGS_ERRORS)
def test_bad_settings_raise_at_construction(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(**kwargs)


def test_keras_argument_order_cannot_be_passed_positionally():
    # Keras's CategoricalFocalCrossentropy(0.25, 2.0) means alpha, gamma; ours are keyword-only.
    with pytest.raises(TypeError):
        CategoricalFocalCrossentropy(0.25, 2.0)


LOGITS = np.zeros((4, 3), np.float32)
INPUT_ERRORS = [
    (
        SparseCategoricalFocalCrossentropy(from_logits=True),
        np.zeros((4, 2), np.int32),
        LOGITS,
        r"SparseCategoricalFocalCrossentropy\(\): expected y_true of shape \(4,\) for y_pred of "
        r"shape \(4, 3\), got \(4, 2\)",
    ),
    (
        SparseCategoricalFocalCrossentropy(from_logits=True),
        np.array([0, 1, 3, 2]),
        LOGITS,
        r"y_true class indices must be in \[0, 3\); got 3",
    ),
    (
        SparseCategoricalFocalCrossentropy(from_logits=True, ignore_class=-1),
        np.array([0, -2, -1, 2]),
        LOGITS,
        r"must be in \[0, 3\) or equal ignore_class=-1; got -2",
    ),
    (
        SparseCategoricalFocalCrossentropy(alpha=[0.5, 0.5], from_logits=True),
        np.array([0, 1, 2, 2]),
        LOGITS,
        r"alpha must have one value per class \(3 classes\), got 2 values",
    ),
    (
        CategoricalFocalCrossentropy(from_logits=True),
        np.zeros((4, 4), np.float32),
        LOGITS,
        r"CategoricalFocalCrossentropy\(\): expected y_true of shape \(4, 3\) for y_pred of shape "
        r"\(4, 3\), got \(4, 4\)",
    ),
    (
        BinaryFocalCrossentropy(class_weight=[1.0, 2.0]),
        np.zeros((4, 3), np.float32),
        LOGITS + 0.5,
        r"class_weight must have one value per class \(3 classes\), got 2 values",
    ),
]


@pytest.mark.parametrize(("loss", "y_true", "y_pred", "message"), INPUT_ERRORS)
def test_bad_input_raises_a_clear_error(loss, y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        loss(y_true, y_pred)


def test_index_check_can_be_switched_off_like_the_torch_losses():
    with focalkit.validate_inputs(False):
        sparse_categorical_focal_crossentropy(np.array([0, 1, 2, 2]), LOGITS, from_logits=True)


# --- gradients ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 2.0])
@pytest.mark.parametrize("scale", [1.0, 100.0, 1e4])
def test_softmax_gradients_are_finite_at_confident_logits(gamma, scale):
    x = np.array([[1.0, 0.0, -1.0], [-1.0, 1.0, 0.0], [1.0, 1.0, -1.0]], np.float32) * scale
    labels = np.array([0, 0, 1])  # right and confident, wrong and confident, a tie
    one_hot = np.eye(3, dtype=np.float32)[labels]
    for loss, target in (
        (SparseCategoricalFocalCrossentropy(gamma=gamma, from_logits=True), labels),
        (CategoricalFocalCrossentropy(gamma=gamma, from_logits=True, label_smoothing=0.1), one_hot),
    ):
        grad = gradient(lambda z, loss=loss, target=target: loss(target, z), x)
        assert np.isfinite(grad).all(), (type(loss).__name__, grad)
        # A wrong, confident row pushes its true class up.
        assert grad[1, 0] < 0


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 2.0])
@pytest.mark.parametrize("logit", [1e-3, 20.0, 100.0, 1e4])
def test_sigmoid_gradients_are_finite_at_confident_logits(gamma, logit):
    x = np.array([[logit, -logit, logit, -logit, logit]], np.float32)
    y = np.array([[1.0, 0.0, 0.0, 1.0, 0.3]], np.float32)  # right, right, wrong, wrong, soft
    loss = BinaryFocalCrossentropy(gamma=gamma, alpha=0.25, from_logits=True, label_smoothing=0.0)
    grad = gradient(lambda z: loss(y, z), x)
    assert np.isfinite(grad).all(), grad
    assert grad[0, 3] < 0 < grad[0, 2]


@pytest.mark.parametrize("gamma", [0.25, 0.5])
def test_probability_gradients_are_finite_at_certainty_with_gamma_below_one(gamma):
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    y = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    for loss, target in (
        (CategoricalFocalCrossentropy(gamma=gamma), y),
        (SparseCategoricalFocalCrossentropy(gamma=gamma), np.array([0, 1])),
        (BinaryFocalCrossentropy(gamma=gamma), y),
    ):
        grad = gradient(lambda z, loss=loss, target=target: loss(target, z), p)
        assert np.isfinite(grad).all(), (type(loss).__name__, grad)


def test_nan_in_gives_nan_out():
    x = np.array([[np.nan, 0.0, 1.0]], np.float32)
    assert np.isnan(to_numpy(SparseCategoricalFocalCrossentropy(from_logits=True)([0], x)))
    assert np.isnan(to_numpy(BinaryFocalCrossentropy(from_logits=True)([[1.0, 0.0, 1.0]], x)))


# --- float labels that name no class ------------------------------------------------------------

SPARSE_SETTINGS = [
    {"from_logits": True},
    {"from_logits": False, "alpha": [0.2, 0.3, 0.5], "ignore_class": -1},
]
X3 = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0], [1.0, -2.0, 0.5]], np.float32)


def sparse_inputs(settings):
    y_pred = X3 if settings["from_logits"] else np.exp(X3) / np.exp(X3).sum(-1, keepdims=True)
    return y_pred.astype(np.float32)


@pytest.mark.parametrize("settings", SPARSE_SETTINGS)
def test_nan_labels_give_nan_loss_and_gradient(settings):
    # Keras's own sparse crossentropy raises an unclear error on TensorFlow and torch and gives 0
    # on JAX; focalkit gave a finite loss on all three (torch read NaN as some class).
    y_pred = sparse_inputs(settings)
    labels = np.array([np.nan, 1.0, 2.0], np.float32)
    loss = SparseCategoricalFocalCrossentropy(reduction=None, **settings)
    values = to_numpy(loss(labels, y_pred))
    assert np.isnan(values[0]), values
    # The other positions keep the loss of their labels, and the mean is NaN.
    np.testing.assert_allclose(values[1:], to_numpy(loss(labels[1:], y_pred[1:])), rtol=1e-6)
    mean = SparseCategoricalFocalCrossentropy(**settings)
    assert np.isnan(to_numpy(mean(labels, y_pred)))
    grad = gradient(lambda z: mean(labels, z), y_pred)
    assert np.isnan(grad).any(), grad


def test_nan_targets_give_nan_in_the_categorical_and_binary_losses_too():
    y_true = np.array([[np.nan, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
    for loss in (
        CategoricalFocalCrossentropy(from_logits=True, reduction=None),
        BinaryFocalCrossentropy(from_logits=True, alpha=0.25, reduction=None),
        BinaryFocalCrossentropy(alpha=0.25, label_smoothing=0.1, reduction=None),
    ):
        y_pred = X3 if loss.from_logits else 1.0 / (1.0 + np.exp(-X3))
        values = to_numpy(loss(y_true, y_pred))
        np.testing.assert_array_equal(np.isnan(values), [True, False, False], err_msg=loss.name)


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (1.5, r"whole numbers; got 1.5"),
        (0.999, r"whole numbers; got 0.999"),
        (-0.5, r"in \[0, 3\); got -0.5"),
    ],
)
def test_fractional_labels_are_refused_naming_y_true(label, message):
    labels = np.array([0.0, label, 2.0], np.float32)
    prefix = r"SparseCategoricalFocalCrossentropy\(\): y_true class indices must be "
    with pytest.raises(ValueError, match=prefix + message):
        SparseCategoricalFocalCrossentropy(from_logits=True)(labels, X3)


@pytest.mark.skipif(traced(abs) is None, reason="Keras runs the torch backend eagerly")
@pytest.mark.parametrize("label", [np.nan, 1.5, np.inf, -np.inf])
def test_labels_naming_no_class_give_nan_when_traced(label):
    # Under jit the eager check cannot read the labels: NaN, not a silent truncation to class 1.
    labels = np.array([0.0, label, 2.0], np.float32)
    for settings in SPARSE_SETTINGS:
        loss = traced(
            lambda y, p, settings=settings: sparse_categorical_focal_crossentropy(y, p, **settings)
        )
        values = to_numpy(loss(labels, sparse_inputs(settings)))
        np.testing.assert_array_equal(np.isfinite(values), [True, False, True], str(settings))


# --- imports ------------------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KERAS_BACKEND": BACKEND},
    )


def test_import_focalkit_does_not_import_keras():
    result = run_python(
        "import sys, focalkit; focalkit.class_weights([1, 2]);"
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'keras loaded'"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(BACKEND == "torch", reason="the torch backend of Keras itself needs torch")
def test_focalkit_keras_works_where_torch_cannot_be_imported():
    result = run_python(
        # A finder that refuses torch (a None entry in sys.modules would also break libraries
        # that probe sys.modules for torch, such as scipy's array-API layer).
        "import sys, importlib.abc\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import numpy as np, focalkit.keras as fk\n"
        "assert 'torch' not in sys.modules\n"
        "loss = fk.SparseCategoricalFocalCrossentropy(from_logits=True)\n"
        "print(round(float(loss([0, 1], np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], 'f4'))), 4))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0.8568"
