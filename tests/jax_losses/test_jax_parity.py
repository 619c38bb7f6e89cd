"""focalkit.jax against optax's losses (gamma=0) and focalkit's PyTorch losses (float64)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402
import jax_cases  # noqa: E402

import focalkit  # noqa: E402
from focalkit.jax import (  # noqa: E402
    sigmoid_focal_loss,
    softmax_focal_loss,
    softmax_focal_loss_with_integer_labels,
)

FLOAT32 = {"rtol": 1e-6, "atol": 1e-6}
FLOAT64 = {"rtol": 1e-12, "atol": 1e-12}
GAMMAS = [0.0, 0.25, 0.5, 1.0, 2.0, 5.0]


# ---------------------------------------------------------------------------------------------
# gamma=0, alpha=None: optax's cross-entropies; sigmoid: optax.sigmoid_focal_loss.


@pytest.mark.parametrize("mask", ["none", "per_example", "per_logit"])
@pytest.mark.parametrize("seed", [0, 1])
def test_integer_labels_gamma0_equals_optax(mask, seed):
    shape = (7, 5, 6)  # classes last
    x = jnp.asarray(jax_cases.logits(shape, seed), jnp.float32)
    labels = jax_cases.integer_labels(shape[:-1], shape[-1], seed + 1)
    where = None
    if mask == "per_example":
        where = jnp.asarray(jax_cases.example_mask(shape[:-1], seed))
    elif mask == "per_logit":  # optax keeps the labelled class in the softmax: so does the mask
        where = jnp.asarray(jax_cases.class_mask(shape, labels, seed))
    ours = softmax_focal_loss_with_integer_labels(x, jnp.asarray(labels), gamma=0.0, where=where)
    theirs = optax.softmax_cross_entropy_with_integer_labels(x, jnp.asarray(labels), where=where)
    np.testing.assert_allclose(ours, theirs, **FLOAT32)
    if where is not None:
        assert np.any(np.asarray(ours) == 0) or mask == "per_logit"


@pytest.mark.parametrize("mask", ["none", "per_example", "per_logit"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_probability_labels_gamma0_equals_optax(mask, axis):
    shape = (6, 5, 4)
    x = jnp.asarray(jax_cases.logits(shape, 3), jnp.float32)
    labels = jnp.asarray(jax_cases.probability_labels(shape, axis, 4), jnp.float32)
    where = None
    if mask == "per_example":
        where = jnp.asarray(jax_cases.example_mask(np.delete(shape, axis).tolist(), 5))
    elif mask == "per_logit":
        where = jnp.asarray(jax_cases.class_mask(shape, None, 6))
    ours = softmax_focal_loss(x, labels, gamma=0.0, axis=axis, where=where)
    theirs = optax.softmax_cross_entropy(x, labels, axis=axis, where=where)
    np.testing.assert_allclose(ours, theirs, **FLOAT32)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.5])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.8])
def test_sigmoid_equals_optax(gamma, alpha):
    shape = (40, 7)
    x = jnp.asarray(jax_cases.logits(shape, 7, scale=4.0), jnp.float32)
    labels = jnp.asarray(jax_cases.binary_labels(shape, 8), jnp.float32)
    ours = sigmoid_focal_loss(x, labels, gamma=gamma, alpha=alpha)
    theirs = optax.sigmoid_focal_loss(x, labels, gamma=gamma, alpha=alpha)
    np.testing.assert_allclose(ours, theirs, **FLOAT32)


def test_sigmoid_defaults_are_optax_defaults():
    x = jnp.asarray(jax_cases.logits((9, 3), 9), jnp.float32)
    labels = jnp.asarray(jax_cases.binary_labels((9, 3), 10), jnp.float32)
    np.testing.assert_allclose(
        sigmoid_focal_loss(x, labels), optax.sigmoid_focal_loss(x, labels), **FLOAT32
    )


# ---------------------------------------------------------------------------------------------
# Against focalkit's PyTorch losses, reduction="none", float64.


def _torch(array):
    return torch.from_numpy(np.asarray(array))


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("per_class_alpha", [False, True])
@pytest.mark.parametrize("shape", [(8, 5), (3, 4, 5, 2)], ids=["2d", "4d"])
def test_integer_labels_equal_torch(gamma, per_class_alpha, shape):
    x = jax_cases.logits(shape, 11, scale=4.0)
    labels = jax_cases.integer_labels((shape[0], *shape[2:]), shape[1], 12)
    alpha = np.linspace(0.2, 1.8, shape[1]) if per_class_alpha else None
    expected = focalkit.softmax_focal_loss(
        _torch(x),
        _torch(labels),
        reduction="none",
        gamma=gamma,
        alpha=None if alpha is None else _torch(alpha),
    )
    with jax_cases.float64():  # the class axis is 1, as in PyTorch
        ours = softmax_focal_loss_with_integer_labels(x, labels, gamma=gamma, alpha=alpha, axis=1)
        assert ours.dtype == jnp.float64
        np.testing.assert_allclose(ours, expected.numpy(), **FLOAT64)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("per_class_alpha", [False, True])
@pytest.mark.parametrize("shape", [(8, 5), (3, 4, 5, 2)], ids=["2d", "4d"])
def test_probability_labels_equal_torch(gamma, per_class_alpha, shape):
    x = jax_cases.logits(shape, 13, scale=4.0)
    labels = jax_cases.probability_labels(shape, 1, 14)
    alpha = np.linspace(1.5, 0.3, shape[1]) if per_class_alpha else None
    expected = focalkit.softmax_focal_loss(
        _torch(x),
        _torch(labels),
        reduction="none",
        gamma=gamma,
        alpha=None if alpha is None else _torch(alpha),
    )
    with jax_cases.float64():
        ours = softmax_focal_loss(x, labels, gamma=gamma, alpha=alpha, axis=1)
        np.testing.assert_allclose(ours, expected.numpy(), **FLOAT64)


def test_per_example_gamma_equals_torch():
    """A gamma per example, below 1 for some, as from focalkit.sample_dependent_gamma."""
    shape = (6, 4, 3)
    x = jax_cases.logits(shape, 15, scale=5.0)
    labels = jax_cases.integer_labels((6, 3), 4, 16)
    gamma = np.random.default_rng(17).uniform(0.0, 4.0, size=(6, 3))
    gamma[0] = [0.0, 0.3, 0.9]
    expected = focalkit.softmax_focal_loss(
        _torch(x), _torch(labels), reduction="none", gamma=_torch(gamma)
    ).numpy()
    one_hot = np.moveaxis(np.eye(4)[labels], -1, 1)
    with jax_cases.float64():
        np.testing.assert_allclose(
            softmax_focal_loss_with_integer_labels(x, labels, gamma=gamma, axis=1),
            expected,
            **FLOAT64,
        )
        np.testing.assert_allclose(
            softmax_focal_loss(x, one_hot, gamma=jnp.asarray(gamma), axis=1), expected, **FLOAT64
        )


def test_confident_logits_equal_torch():
    """p_t rounding to 1 (and to 0), gamma < 1: log(1 - p) from the logits on both sides."""
    x = np.array([[40.0, 0.0, -3.0], [-40.0, 2.0, 0.0], [800.0, -800.0, 0.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 0, 0, 2])
    for gamma in (0.0, 0.3, 2.0):
        expected = focalkit.softmax_focal_loss(
            _torch(x), _torch(labels), reduction="none", gamma=gamma
        ).numpy()
        with jax_cases.float64():
            ours = softmax_focal_loss_with_integer_labels(x, labels, gamma=gamma)
            np.testing.assert_allclose(ours, expected, **FLOAT64)
            assert ours[0] > 0  # 4e-18 for gamma=0: not rounded to 0
            ours = softmax_focal_loss(x, np.eye(3)[labels], gamma=gamma)
            np.testing.assert_allclose(ours, expected, **FLOAT64)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25, "per_element"])
def test_sigmoid_equals_torch(gamma, alpha):
    shape = (12, 5)
    x = jax_cases.logits(shape, 18, scale=6.0)
    x[0, :] = [40.0, -40.0, 300.0, -300.0, 0.0]  # p_t rounding to 1 and to 0
    labels = jax_cases.binary_labels(shape, 19)
    labels[0, :] = [1.0, 0.0, 0.0, 1.0, 0.5]
    a = np.random.default_rng(20).uniform(size=(1, 5)) if alpha == "per_element" else alpha
    expected = focalkit.sigmoid_focal_loss(
        _torch(x),
        _torch(labels),
        reduction="none",
        gamma=gamma,
        alpha=_torch(a) if isinstance(a, np.ndarray) else a,
    ).numpy()
    with jax_cases.float64():
        np.testing.assert_allclose(
            sigmoid_focal_loss(x, labels, gamma=gamma, alpha=a), expected, **FLOAT64
        )


def test_class_weights_go_in_as_alpha():
    counts = focalkit.class_counts(np.array([0, 0, 0, 0, 1, 2, 2, 0, 0, 0]), num_classes=3)
    alpha = focalkit.class_weights(counts, normalize="mean")
    x = jax_cases.logits((10, 3), 21)
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 0, 0, 0])
    expected = focalkit.softmax_focal_loss(
        _torch(x), _torch(labels), reduction="none", alpha=_torch(alpha)
    ).numpy()
    with jax_cases.float64():
        np.testing.assert_allclose(
            softmax_focal_loss_with_integer_labels(x, labels, alpha=alpha), expected, **FLOAT64
        )


# ---------------------------------------------------------------------------------------------
# The two softmax losses agree: integer labels are one-hot probability labels, masks included.


@pytest.mark.parametrize("mask", ["none", "per_example", "per_logit"])
@pytest.mark.parametrize("gamma", [0.0, 0.7, 2.0])
def test_integer_labels_are_one_hot_probability_labels(mask, gamma):
    shape = (9, 6)
    x = jax_cases.logits(shape, 22, scale=5.0)
    labels = jax_cases.integer_labels((9,), 6, 23)
    where = None
    if mask == "per_example":
        where = jax_cases.example_mask((9,), 24)
    elif mask == "per_logit":  # the labelled class masked too, in some rows
        where = np.random.default_rng(25).uniform(size=shape) < 0.6
    alpha = np.linspace(0.5, 2.0, 6)
    with jax_cases.float64():
        integer = softmax_focal_loss_with_integer_labels(
            x, labels, gamma=gamma, alpha=alpha, where=where
        )
        one_hot = softmax_focal_loss(x, np.eye(6)[labels], gamma=gamma, alpha=alpha, where=where)
        np.testing.assert_allclose(integer, one_hot, **FLOAT64)
        if where is not None:
            assert np.any(np.asarray(integer) == 0)
