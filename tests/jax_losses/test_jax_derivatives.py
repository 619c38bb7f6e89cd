"""jit, grad, hessian, jvp and vmap of each loss: finite at the edges, equal to float64 oracles.

Each loss is a function of the logits and of ``gamma`` (traced), and every check runs over
several gammas at once with ``vmap``, so that each loss compiles a handful of times.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402
import jax_cases  # noqa: E402

from focalkit.jax import (  # noqa: E402
    sigmoid_focal_loss,
    softmax_focal_loss,
    softmax_focal_loss_with_integer_labels,
)

GAMMAS = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 5.0])
SHAPE = (4, 3)
LABELS = np.array([1, 0, 2, 2])
SOFT = jax_cases.probability_labels(SHAPE, -1, 1)
BINARY = np.array([[1.0, 0.0, 0.3], [0.0, 1.0, 1.0], [0.7, 0.0, 0.0], [1.0, 1.0, 0.5]])
ALPHA = np.array([0.5, 1.0, 2.0])
WHERE = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 0]], bool)
LOSSES = {
    "integer": lambda x, g: softmax_focal_loss_with_integer_labels(x, LABELS, gamma=g, alpha=ALPHA),
    "integer_masked": lambda x, g: softmax_focal_loss_with_integer_labels(
        x, LABELS, gamma=g, where=WHERE
    ),
    "probability": lambda x, g: softmax_focal_loss(x, SOFT, gamma=g, alpha=ALPHA),
    "probability_masked": lambda x, g: softmax_focal_loss(x, SOFT, gamma=g, where=WHERE),
    "sigmoid": lambda x, g: sigmoid_focal_loss(x, BINARY, gamma=g, alpha=0.3),
}


def _weighted_sum(loss):
    """A weighted sum, so that a gradient checks every output, not only their total."""

    def scalar(x, gamma):
        out = loss(x, gamma)
        weights = jnp.linspace(0.5, 1.5, out.size, dtype=out.dtype).reshape(out.shape)
        return jnp.sum(out * weights)

    return scalar


@functools.cache
def _over_gammas(transform, name):
    """``transform`` (in x) of LOSSES[name]'s weighted sum, for a vector of gammas at once.

    Jitted and kept: every test of a loss reuses the compiled functions (one per dtype).
    """
    return jax.jit(jax.vmap(transform(_weighted_sum(LOSSES[name])), in_axes=(None, 0)))


def _finite_differences(f, x, step):
    """Central differences of ``f`` in each entry of ``x``: shape ``(*out, *x.shape)``."""
    x = np.asarray(x, np.float64)
    columns = []
    for index in np.ndindex(x.shape):
        delta = np.zeros_like(x)
        delta[index] = step
        columns.append((np.asarray(f(x + delta)) - np.asarray(f(x - delta))) / (2 * step))
    return np.stack(columns, axis=-1).reshape(*columns[0].shape, *x.shape)


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradient_and_hessian_equal_finite_differences(name):
    x = jax_cases.logits(SHAPE, 30)
    with jax_cases.float64():
        value_and_grad = _over_gammas(jax.value_and_grad, name)  # compiled once, reused below
        _, grads = value_and_grad(x, GAMMAS)
        expected = _finite_differences(lambda v: value_and_grad(v, GAMMAS)[0], x, 1e-6)
        np.testing.assert_allclose(grads, expected, rtol=1e-6, atol=1e-8)
        hessians = np.asarray(_over_gammas(jax.hessian, name)(x, GAMMAS))
        hessians = hessians.reshape(len(GAMMAS), x.size, x.size)
        expected = _finite_differences(lambda v: value_and_grad(v, GAMMAS)[1], x, 1e-5)
        np.testing.assert_allclose(hessians, expected.reshape(hessians.shape), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(hessians, hessians.transpose(0, 2, 1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(LOSSES))
def test_jvp_agrees_with_grad(name):
    """Forward mode (``jax.jvp``) and reverse mode agree; ``vmap`` runs in every test here."""
    x = jax_cases.logits(SHAPE, 31)
    tangent = jax_cases.logits(SHAPE, 32)
    with jax_cases.float64():
        f = _weighted_sum(LOSSES[name])
        _, grad = _over_gammas(jax.value_and_grad, name)(x, GAMMAS)

        def directional(gamma):
            return jax.jvp(lambda v: f(v, gamma), (jnp.asarray(x),), (jnp.asarray(tangent),))

        values, derivatives = jax.jit(jax.vmap(directional))(jnp.asarray(GAMMAS))
        np.testing.assert_allclose(values, [f(x, g) for g in GAMMAS], rtol=1e-14)
        np.testing.assert_allclose(
            derivatives, np.sum(np.asarray(grad) * tangent, axis=(1, 2)), rtol=1e-12, atol=1e-14
        )


EDGE = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0], [1e4, 1e4, -1e4], [-1e4, -1e4, 1e4]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_finite_gradient_and_hessian_at_extreme_logits(name, dtype):
    with jax_cases.float64():
        x = jnp.asarray(EDGE, dtype)
        gammas = jnp.asarray(GAMMAS, dtype)
        values, grads = _over_gammas(jax.value_and_grad, name)(x, gammas)
        hessians = _over_gammas(jax.hessian, name)(x, gammas)
        assert np.all(np.isfinite(values))
        assert np.all(np.isfinite(grads))
        assert np.all(np.isfinite(hessians))


@pytest.mark.parametrize("wrong", [False, True], ids=["right", "wrong"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_confident_logits_in_float32(name, wrong):
    """float32 p rounds to 1 (1 - p = 1e-13) for the labelled class (``right``) or for another
    (``wrong``): gradients and Hessians are still the float64 ones, gamma < 1 included."""
    top = (LABELS + 1) % 3 if wrong else LABELS
    confident = 30.0 * np.eye(3)[top]  # one class at 30, the rest at 0
    if name == "sigmoid":
        confident = np.where((BINARY > 0.5) != wrong, 30.0, -30.0)
    x = confident + jax_cases.logits(SHAPE, 33, scale=0.5)
    with jax_cases.float64():
        expected = np.asarray(_over_gammas(jax.value_and_grad, name)(x, GAMMAS)[1])
        expected_hessians = np.asarray(_over_gammas(jax.hessian, name)(x, GAMMAS))
        x32, gammas32 = jnp.asarray(x, jnp.float32), jnp.asarray(GAMMAS, jnp.float32)
        _, grads = _over_gammas(jax.value_and_grad, name)(x32, gammas32)
        hessians = _over_gammas(jax.hessian, name)(x32, gammas32)
    assert grads.dtype == jnp.float32
    # Below float32's smallest normal number (1.2e-38; gamma=2 reaches it) values flush to 0.
    tiny = 4 * np.finfo(np.float32).tiny
    np.testing.assert_allclose(grads, expected, rtol=2e-5, atol=tiny)
    for hessian, reference in zip(np.asarray(hessians), expected_hessians, strict=True):
        # float32 rounding, relative to the largest entry of each Hessian
        atol = max(1e-6 * abs(reference).max(), tiny)
        np.testing.assert_allclose(hessian, reference, rtol=1e-4, atol=atol)


def test_gradient_with_respect_to_gamma_alpha_and_labels():
    """gamma, alpha and soft labels are differentiable too (finite differences in float64)."""
    x = jax_cases.logits(SHAPE, 34)
    soft_binary = BINARY.copy()  # hard labels among soft ones: d/dy is exact at 0 and 1 too
    cases = {
        "integer gamma": (
            lambda g: softmax_focal_loss_with_integer_labels(x, LABELS, gamma=g, alpha=ALPHA),
            np.full(SHAPE[:1], 1.5),
        ),
        "integer alpha": (
            lambda a: softmax_focal_loss_with_integer_labels(x, LABELS, alpha=a),
            ALPHA,
        ),
        "probability gamma": (lambda g: softmax_focal_loss(x, SOFT, gamma=g), np.full(4, 0.7)),
        "probability labels": (lambda y: softmax_focal_loss(x, y, gamma=0.5), SOFT),
        "sigmoid gamma": (lambda g: sigmoid_focal_loss(x, BINARY, gamma=g), np.full(SHAPE, 0.6)),
        "sigmoid alpha": (lambda a: sigmoid_focal_loss(x, BINARY, alpha=a), np.full(SHAPE, 0.3)),
        "sigmoid labels": (lambda y: sigmoid_focal_loss(x, y, gamma=0.5), soft_binary),
    }
    with jax_cases.float64():
        for name, (loss, value) in cases.items():
            value_and_grad = jax.jit(jax.value_and_grad(_weighted_sum(lambda v, _, f=loss: f(v))))
            expected = _finite_differences(lambda v, f=value_and_grad: f(v, 0.0)[0], value, 1e-6)
            np.testing.assert_allclose(
                value_and_grad(value, 0.0)[1], expected, rtol=1e-6, atol=1e-8, err_msg=name
            )


def test_masked_examples_give_zero_and_no_gradient():
    x = jnp.asarray(jax_cases.logits((5, 4), 37), jnp.float32)
    labels = np.array([3, 1, 0, 2, 1])
    where = np.array([True, False, True, False, True])
    for loss in (
        lambda v: softmax_focal_loss_with_integer_labels(v, labels, where=where),
        lambda v: softmax_focal_loss(v, np.eye(4)[labels], where=where),
    ):
        out = np.asarray(loss(x))
        assert np.all(out[~where] == 0)
        assert np.all(out[where] > 0)
        grad = np.asarray(jax.grad(lambda v, loss=loss: loss(v).sum())(x))
        assert np.all(grad[~where] == 0)
        assert np.all(grad[where] != 0)


def test_masked_classes_get_no_gradient():
    x = jnp.asarray(jax_cases.logits((5, 4), 39), jnp.float32)
    labels = np.array([0, 1, 2, 3, 0])
    where = jax_cases.class_mask((5, 4), labels, 40)
    for loss in (
        lambda v: softmax_focal_loss_with_integer_labels(v, labels, gamma=0.5, where=where),
        lambda v: softmax_focal_loss(v, np.eye(4)[labels], gamma=0.5, where=where),
    ):
        grad = np.asarray(jax.grad(lambda v, loss=loss: loss(v).sum())(x))
        assert np.all(grad[~where] == 0)
        assert np.all(grad[where] != 0)
