"""Traced gamma and alpha, dtypes, NaN, and every bad argument against its message."""

from __future__ import annotations

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

X = jnp.asarray(jax_cases.logits((6, 4), 50), jnp.float32)
LABELS = jnp.asarray([0, 3, 1, 2, 2, 0])
SOFT = jnp.asarray(jax_cases.probability_labels((6, 4), -1, 51), jnp.float32)
BINARY = jnp.asarray(jax_cases.binary_labels((6, 4), 52), jnp.float32)


# ---------------------------------------------------------------------------------------------
# gamma and alpha as arguments of a jitted function (traced) give the static numbers.


@pytest.mark.parametrize(
    ("gamma", "alpha"),
    [
        (2.0, None),
        (0.5, 0.25),
        (np.float32(0.0), np.array([0.1, 0.2, 0.3, 0.4], np.float32)),
        (np.linspace(0.0, 3.0, 6).astype(np.float32), 1.5),  # one gamma per example
    ],
)
def test_traced_gamma_and_alpha_equal_static_ones(gamma, alpha):
    @jax.jit
    def losses(x, gamma, alpha):
        return (
            softmax_focal_loss_with_integer_labels(x, LABELS, gamma=gamma, alpha=alpha),
            softmax_focal_loss(x, SOFT, gamma=gamma, alpha=alpha),
        )

    traced = losses(
        X, gamma=jnp.asarray(gamma), alpha=None if alpha is None else jnp.asarray(alpha)
    )
    static = (
        softmax_focal_loss_with_integer_labels(X, LABELS, gamma=gamma, alpha=alpha),
        softmax_focal_loss(X, SOFT, gamma=gamma, alpha=alpha),
    )
    for got, expected in zip(traced, static, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("gamma", "alpha"), [(2.0, None), (0.5, 0.25), (1.0, np.full((1, 4), 0.3))]
)
def test_sigmoid_traced_gamma_and_alpha_equal_static_ones(gamma, alpha):
    @jax.jit
    def loss(x, gamma, alpha):
        return sigmoid_focal_loss(x, BINARY, gamma=gamma, alpha=alpha)

    traced = loss(X, gamma=jnp.asarray(gamma), alpha=None if alpha is None else jnp.asarray(alpha))
    np.testing.assert_allclose(
        traced, sigmoid_focal_loss(X, BINARY, gamma=gamma, alpha=alpha), rtol=1e-6, atol=1e-7
    )


def test_gamma_under_vmap():
    gammas = jnp.asarray([0.0, 0.5, 2.0])
    batched = jax.vmap(lambda g: softmax_focal_loss_with_integer_labels(X, LABELS, gamma=g))(gammas)
    for row, gamma in zip(batched, [0.0, 0.5, 2.0], strict=True):
        np.testing.assert_allclose(
            row, softmax_focal_loss_with_integer_labels(X, LABELS, gamma=gamma), rtol=1e-6
        )


# ---------------------------------------------------------------------------------------------
# Half precision in float32, returned in the input's dtype; NaN in, NaN out.


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_is_computed_in_float32(dtype):
    x = X.astype(dtype)
    cases = [
        (
            softmax_focal_loss_with_integer_labels(x, LABELS),
            softmax_focal_loss_with_integer_labels(x.astype(jnp.float32), LABELS),
        ),
        (softmax_focal_loss(x, SOFT), softmax_focal_loss(x.astype(jnp.float32), SOFT)),
        (sigmoid_focal_loss(x, BINARY), sigmoid_focal_loss(x.astype(jnp.float32), BINARY)),
    ]
    for got, in_float32 in cases:
        assert got.dtype == dtype
        # the float32 result rounded once to the half dtype: no half-precision arithmetic
        np.testing.assert_array_equal(np.asarray(got), np.asarray(in_float32.astype(dtype)))
    grad = jax.grad(lambda v: softmax_focal_loss_with_integer_labels(v, LABELS).sum())(x)
    assert grad.dtype == dtype
    assert np.all(np.isfinite(np.asarray(grad, np.float32)))


def test_nan_in_nan_out():
    x = X.at[1, 2].set(jnp.nan)
    losses = [
        softmax_focal_loss_with_integer_labels(x, LABELS),
        softmax_focal_loss(x, SOFT),
        softmax_focal_loss(x, jax.nn.one_hot(LABELS, 4)),
    ]
    for loss in losses:
        assert np.isnan(loss[1])
        assert np.all(np.isfinite(np.delete(np.asarray(loss), 1)))
    assert np.isnan(sigmoid_focal_loss(x, BINARY)[1, 2])
    assert np.isnan(softmax_focal_loss(X, SOFT.at[4, 0].set(jnp.nan))[4])


def test_labels_out_of_range_give_nan():
    loss = softmax_focal_loss_with_integer_labels(X, jnp.asarray([0, 4, -1, 2, 2, 0]))
    assert np.all(np.isnan(np.asarray(loss)[[1, 2]]))
    assert np.all(np.isfinite(np.asarray(loss)[[0, 3, 4, 5]]))


def test_no_other_class_gives_zero_for_every_gamma():
    """One class (or one kept class): p_t = 1 and the loss is 0, with a zero gradient."""
    for gamma in (0.0, 0.5, 2.0):
        x = jnp.asarray([[3.0], [-2.0]])
        for loss in (
            lambda v, g=gamma: softmax_focal_loss_with_integer_labels(
                v, jnp.asarray([0, 0]), gamma=g
            ),
            lambda v, g=gamma: softmax_focal_loss(v, jnp.ones((2, 1)), gamma=g),
        ):
            np.testing.assert_array_equal(loss(x), [0.0, 0.0])
            np.testing.assert_array_equal(jax.grad(lambda v, f=loss: f(v).sum())(x), 0.0)


# ---------------------------------------------------------------------------------------------
# Bad arguments: the function, the argument, what was expected, what arrived.

ERRORS = [
    (
        lambda: softmax_focal_loss_with_integer_labels(X, LABELS, gamma=-0.5),
        ValueError,
        r"^softmax_focal_loss_with_integer_labels\(\): gamma must be >= 0, got -0.5$",
    ),
    (
        lambda: softmax_focal_loss(X, SOFT, gamma="2"),
        TypeError,
        r"^softmax_focal_loss\(\): gamma must be a real number >= 0, got '2'$",
    ),
    (
        lambda: sigmoid_focal_loss(X, BINARY, gamma=np.array([1.0, -2.0, 0.0, 1.0])),
        ValueError,
        r"^sigmoid_focal_loss\(\): gamma must be >= 0, got -2.0$",
    ),
    (
        lambda: softmax_focal_loss(X, SOFT, gamma=jnp.ones(4)),
        ValueError,
        r"^softmax_focal_loss\(\): gamma of shape \(4,\) does not broadcast to the unreduced "
        r"loss of shape \(6,\)$",
    ),
    (
        lambda: softmax_focal_loss_with_integer_labels(X, LABELS, alpha=[0.2, 0.3, 0.5]),
        ValueError,
        r"alpha must have one value per class \(4 classes\), got 3 values$",
    ),
    (
        lambda: softmax_focal_loss(X, SOFT, alpha=[0.2, -0.3, 0.5, 1.0]),
        ValueError,
        r"^softmax_focal_loss\(\): alpha must be >= 0, got -0.3$",
    ),
    (
        lambda: softmax_focal_loss(X, SOFT, alpha=np.ones((2, 4))),
        ValueError,
        r"alpha must be a 1-D sequence with one value per class \(4 classes\), got shape \(2, 4\)",
    ),
    (
        lambda: sigmoid_focal_loss(X, BINARY, alpha=1.5),
        ValueError,
        r"^sigmoid_focal_loss\(\): alpha must be in \[0, 1\], got 1.5$",
    ),
    (
        lambda: sigmoid_focal_loss(X, BINARY, alpha=np.ones(3)),
        ValueError,
        r"alpha of shape \(3,\) does not broadcast to logits of shape \(6, 4\)$",
    ),
    (
        lambda: softmax_focal_loss_with_integer_labels(X, LABELS[:5]),
        ValueError,
        r"^softmax_focal_loss_with_integer_labels\(\): expected labels of shape \(6,\) for input "
        r"of shape \(6, 4\), got \(5,\)$",
    ),
    (
        lambda: softmax_focal_loss_with_integer_labels(X, LABELS.astype(jnp.float32)),
        TypeError,
        r"labels must hold class indices \(an integer array\), got dtype float32$",
    ),
    (
        lambda: softmax_focal_loss(X, SOFT[:, :3]),
        ValueError,
        r"labels of shape \(6, 3\) does not broadcast to logits of shape \(6, 4\)$",
    ),
    (
        lambda: sigmoid_focal_loss(jnp.arange(4), jnp.ones(4)),
        TypeError,
        r"^sigmoid_focal_loss\(\): input must be a floating-point tensor, got dtype int32$",
    ),
    (
        lambda: softmax_focal_loss(X, SOFT, axis=2),
        ValueError,
        r"^softmax_focal_loss\(\): axis=2 is out of range for logits of rank 2$",
    ),
    (
        lambda: softmax_focal_loss(X, SOFT, axis=(0, 1)),
        TypeError,
        r"^softmax_focal_loss\(\): axis must be an int, got \(0, 1\)$",
    ),
    (
        lambda: softmax_focal_loss_with_integer_labels(X, LABELS, where=jnp.ones(4, bool)),
        ValueError,
        r"where of shape \(4,\) does not broadcast to the per-example loss of shape \(6,\)$",
    ),
    (
        lambda: softmax_focal_loss_with_integer_labels(jnp.float32(1.0), jnp.int32(0)),
        ValueError,
        r"logits must have a class axis, got shape \(\)$",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), ERRORS)
def test_bad_arguments_raise_with_their_message(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_traced_gamma_is_not_read():
    """Under jit no value check runs (it would need the value): a traced gamma is accepted."""
    jitted = jax.jit(lambda g: softmax_focal_loss(X, SOFT, gamma=g))
    assert np.all(np.isfinite(jitted(jnp.float32(1.0))))
