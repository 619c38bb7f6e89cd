"""Properties on random inputs (hypothesis): masks, extreme logits, any gamma, in float64."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
pytest.importorskip("hypothesis")

import jax_cases  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from focalkit.jax import softmax_focal_loss, softmax_focal_loss_with_integer_labels  # noqa: E402

N = 4


@st.composite
def cases(draw):
    """Logits (N, C) spread up to 1e3, labels, a gamma, and masks of both shapes."""
    num_classes = draw(st.sampled_from([1, 5]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1.0, 30.0, 1e3]))
    logits = rng.normal(size=(N, num_classes)) * scale
    labels = rng.integers(0, num_classes, size=N)
    class_mask = rng.uniform(size=(N, num_classes)) < draw(st.sampled_from([0.3, 0.8, 1.0]))
    example_mask = rng.uniform(size=N) < 0.7
    gamma = draw(st.sampled_from([0.0, 0.2, 0.5, 1.0, 2.0, 4.5]))
    return logits, labels, class_mask, example_mask, gamma


@jax.jit
def _both(logits, labels, class_mask, example_mask, gamma):
    """The two softmax losses on the same example, with both kinds of mask, and gradients."""
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)

    def integer(x):
        return softmax_focal_loss_with_integer_labels(x, labels, gamma=gamma, where=class_mask)

    def probability(x):
        return softmax_focal_loss(x, one_hot, gamma=gamma, where=class_mask)

    def masked_examples(x):
        return softmax_focal_loss_with_integer_labels(x, labels, gamma=gamma, where=example_mask)

    return [
        (f(logits), jax.grad(lambda x, f=f: f(x).sum())(logits))
        for f in (integer, probability, masked_examples)
    ]


@settings(max_examples=25, deadline=None)
@given(case=cases())
def test_integer_labels_are_one_hot_labels_under_any_mask(case):
    logits, labels, class_mask, example_mask, gamma = case
    with jax_cases.float64():
        (integer, integer_grad), (one_hot, one_hot_grad), (masked, masked_grad) = _both(
            logits, labels, class_mask, example_mask, gamma
        )
        for value in (integer, integer_grad, one_hot, one_hot_grad, masked, masked_grad):
            assert np.all(np.isfinite(value))
        assert np.all(np.asarray(integer) >= 0)
        np.testing.assert_allclose(integer, one_hot, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(integer_grad, one_hot_grad, rtol=1e-9, atol=1e-300)
        # a class-masked row without its label's class, or without another class, gives 0
        own = class_mask[np.arange(N), labels]
        alone = class_mask.sum(-1) == 1
        assert np.all(np.asarray(integer)[~own | alone] == 0)
        assert np.all(np.asarray(integer_grad)[~own | alone] == 0)
        assert np.all(np.asarray(masked)[~example_mask] == 0)
        assert np.all(np.asarray(masked_grad)[~example_mask] == 0)


@settings(max_examples=25, deadline=None)
@given(case=cases(), shift=st.sampled_from([-1e3, -7.5, 0.0, 2.0, 1e3]))
def test_gamma0_is_optax_and_a_shift_changes_nothing(case, shift):
    logits, labels, class_mask, _, gamma = case
    class_mask[np.arange(N), labels] = True  # optax keeps the labelled class in the softmax
    with jax_cases.float64():
        np.testing.assert_allclose(
            softmax_focal_loss_with_integer_labels(logits, labels, gamma=0.0, where=class_mask),
            optax.softmax_cross_entropy_with_integer_labels(logits, labels, where=class_mask),
            rtol=1e-12,
            atol=1e-12,
        )
        loss = softmax_focal_loss_with_integer_labels(logits, labels, gamma=gamma)
        shifted = softmax_focal_loss_with_integer_labels(logits + shift, labels, gamma=gamma)
        np.testing.assert_allclose(shifted, loss, rtol=1e-9, atol=1e-12)
