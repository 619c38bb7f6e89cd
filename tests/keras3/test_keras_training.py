"""focalkit.keras inside Keras: fit, save/load, serialization, mixed precision, jit_compile."""

from __future__ import annotations

import inspect
import json

import keras
import numpy as np
import pytest
from keras_backend import BACKEND, to_numpy

import focalkit
from focalkit.keras import (
    BinaryFocalCrossentropy,
    CategoricalFocalCrossentropy,
    SparseCategoricalFocalCrossentropy,
)

COUNTS = [120, 30, 10]  # an imbalanced three-class problem


def imbalanced_problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), COUNTS)
    centres = np.array([[0.0, 0.0], [2.0, 2.0], [-2.0, 2.0]])
    features = centres[labels] + rng.standard_normal((labels.size, 2))
    return features.astype(np.float32), labels


def settings_for(kind: str):
    weights = list(focalkit.class_weights(COUNTS, normalize="mean"))
    if kind == "sparse":
        return SparseCategoricalFocalCrossentropy(alpha=weights, from_logits=True), "index"
    if kind == "categorical":
        return CategoricalFocalCrossentropy(alpha=weights, from_logits=True), "one_hot"
    return BinaryFocalCrossentropy(alpha=0.25, class_weight=weights, from_logits=True), "one_hot"


def small_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(3)]
    )


JIT = [False] + ([True] if BACKEND in ("tensorflow", "jax") else [])


@pytest.mark.parametrize("jit_compile", JIT, ids=lambda jit: f"jit={jit}")
@pytest.mark.parametrize("kind", ["sparse", "categorical", "binary"])
def test_fit_reduces_the_loss_and_save_load_keeps_its_config(kind, jit_compile, tmp_path):
    features, labels = imbalanced_problem()
    loss, target_kind = settings_for(kind)
    target = labels if target_kind == "index" else np.eye(3, dtype=np.float32)[labels]
    model = small_model()
    model.compile(keras.optimizers.Adam(0.05), loss=loss, jit_compile=jit_compile)
    before = model.evaluate(features, target, verbose=0, batch_size=80)
    history = model.fit(features, target, epochs=4, batch_size=32, verbose=0)
    after = model.evaluate(features, target, verbose=0, batch_size=80)
    assert np.isfinite(history.history["loss"]).all()
    assert after < 0.7 * before, (before, after)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: the losses are registered
    assert type(loaded.loss) is type(loss)
    assert loaded.loss.get_config() == loss.get_config()
    np.testing.assert_allclose(
        loaded.evaluate(features, target, verbose=0, batch_size=80), after, rtol=1e-5
    )


LOSSES = {
    "sparse": SparseCategoricalFocalCrossentropy(
        gamma=0.5,
        alpha=[0.2, 0.3, 0.5],
        from_logits=True,
        ignore_class=255,
        axis=1,
        reduction="sum",
        name="sparse",
        dtype="float64",
    ),
    "categorical": CategoricalFocalCrossentropy(
        gamma=1.0, alpha=0.25, label_smoothing=0.1, axis=-1, reduction=None, name="cat"
    ),
    "binary": BinaryFocalCrossentropy(
        gamma=3.0,
        alpha=[0.25, 0.5],
        class_weight=[1.0, 2.0],
        label_smoothing=0.05,
        from_logits=True,
        reduction="mean_with_sample_weight",
        name="bin",
    ),
}


@pytest.mark.parametrize("name", LOSSES)
def test_serialization_round_trip_keeps_every_argument(name):
    loss = LOSSES[name]
    config = loss.get_config()
    parameters = set(inspect.signature(type(loss)).parameters)
    assert set(config) == parameters
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    assert serialized["registered_name"] == f"focalkit>{type(loss).__name__}"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(loss)
    assert restored.get_config() == config
    assert type(loss).from_config(config).get_config() == config


@pytest.mark.parametrize(("policy", "rtol"), [("mixed_float16", 2e-3), ("mixed_bfloat16", 1.6e-2)])
@pytest.mark.parametrize("kind", ["sparse", "categorical", "binary"])
def test_mixed_precision_is_finite_and_close_to_float32(policy, rtol, kind):
    features, labels = imbalanced_problem()
    loss, target_kind = settings_for(kind)
    target = labels if target_kind == "index" else np.eye(3, dtype=np.float32)[labels]
    reference = small_model()
    reference.compile(loss=loss)
    expected = reference.evaluate(features, target, verbose=0, batch_size=160)

    keras.config.set_dtype_policy(policy)
    try:
        model = small_model()
        model.set_weights(reference.get_weights())
        model.compile(keras.optimizers.SGD(0.01), loss=loss)
        assert model.layers[-1].compute_dtype == policy.split("_")[1]
        value = model.evaluate(features, target, verbose=0, batch_size=160)
        np.testing.assert_allclose(value, expected, rtol=rtol)
        history = model.fit(features, target, epochs=1, batch_size=40, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_inputs_are_computed_in_float32_and_returned_in_their_dtype(dtype):
    rng = np.random.default_rng(0)
    logits = keras.ops.cast(rng.standard_normal((64, 5)).astype(np.float32), dtype)
    labels = rng.integers(0, 5, 64)
    half = focalkit.keras.sparse_categorical_focal_crossentropy(labels, logits, from_logits=True)
    full = focalkit.keras.sparse_categorical_focal_crossentropy(
        labels, keras.ops.cast(logits, "float32"), from_logits=True
    )
    assert keras.backend.standardize_dtype(half.dtype) == dtype
    # Only the final rounding to the half dtype differs from float32 on the same (rounded) input.
    rounding = float(np.finfo(np.float16).eps) if dtype == "float16" else 2.0**-8
    np.testing.assert_allclose(
        to_numpy(keras.ops.cast(half, "float32")), to_numpy(full), rtol=rounding, atol=1e-6
    )


def test_keras_masking_and_ignore_class_combine_like_keras():
    """A padding mask from the model and ignore_class both leave positions out of the mean."""
    logits = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    logits[1, 3] = 0.0  # masked by Masking(0.0)
    labels = np.array([[0, 1, 255, 2], [1, 255, 0, 0]])
    inputs = keras.Input((4, 3))
    model = keras.Model(inputs, keras.layers.Masking(0.0)(inputs))
    values = {}
    for name, loss in {
        "ours": SparseCategoricalFocalCrossentropy(gamma=0.0, from_logits=True, ignore_class=255),
        "keras": keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
    }.items():
        model.compile(loss=loss)
        values[name] = model.evaluate(logits, labels, verbose=0)
    kept = [(0, 0), (0, 1), (0, 3), (1, 0), (1, 2)]  # neither ignored nor masked
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean([log_p[n, t, labels[n, t]] for n, t in kept])
    np.testing.assert_allclose(values["ours"], expected, rtol=1e-5)
    np.testing.assert_allclose(values["keras"], expected, rtol=1e-5)
