"""Random inputs for the focalkit.jax tests (NumPy, float64), and float64 mode for JAX."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import numpy as np


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """JAX in 64-bit mode inside the block (float64 arrays), restored on exit."""
    with jax.enable_x64(True):
        yield


def logits(shape: tuple[int, ...], seed: int = 0, scale: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape) * scale


def integer_labels(shape: tuple[int, ...], num_classes: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, size=shape)


def probability_labels(shape: tuple[int, ...], axis: int = -1, seed: int = 2) -> np.ndarray:
    """Soft labels: a random distribution over ``axis``, some entries exactly 0."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(size=shape) * (rng.uniform(size=shape) > 0.3)
    raw = raw + 1e-3 * (raw.sum(axis=axis, keepdims=True) == 0)
    return raw / raw.sum(axis=axis, keepdims=True)


def binary_labels(shape: tuple[int, ...], seed: int = 3) -> np.ndarray:
    """Hard 0/1 labels and soft ones in (0, 1), mixed."""
    rng = np.random.default_rng(seed)
    hard = (rng.uniform(size=shape) < 0.4).astype(np.float64)
    return np.where(rng.uniform(size=shape) < 0.3, rng.uniform(size=shape), hard)


def class_mask(shape: tuple[int, ...], labels: np.ndarray | None, seed: int = 4) -> np.ndarray:
    """A per-logit mask (classes last) keeping about 70% of classes and every labelled class."""
    keep = np.random.default_rng(seed).uniform(size=shape) < 0.7
    if labels is not None:
        np.put_along_axis(keep, labels[..., None], True, axis=-1)
    return keep


def example_mask(shape: tuple[int, ...], seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape) < 0.6
