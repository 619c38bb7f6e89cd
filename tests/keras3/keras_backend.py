"""The active Keras backend (KERAS_BACKEND; tensorflow by default): its name, NumPy, gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

BACKEND = keras.backend.backend()


def to_numpy(x: Any) -> np.ndarray:
    if BACKEND == "torch":  # keras.ops.convert_to_numpy warns under NumPy 2 on this backend
        return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return np.asarray(keras.ops.convert_to_numpy(x))


def gradient(function: Callable[[Any], Any], x: np.ndarray) -> np.ndarray:
    """d function(x) / dx for a scalar-valued function, on the active backend."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tensor = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            value = function(tensor)
        return tape.gradient(value, tensor).numpy()
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(function)(keras.ops.convert_to_tensor(x)))
    import torch

    tensor = torch.tensor(x, requires_grad=True)
    function(tensor).backward()
    return tensor.grad.numpy()


def traced(function: Callable[..., Any]) -> Callable[..., Any] | None:
    """``function`` compiled as Keras compiles a train step (tf.function, jax.jit); ``None`` on
    torch, where Keras runs eagerly unless asked for torch.compile."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(function)
    if BACKEND == "jax":
        import jax

        return jax.jit(function)
    return None
