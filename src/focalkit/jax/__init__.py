"""focalkit's focal losses for JAX, shaped like optax's losses.

Needs JAX (``pip install "focalkit[jax]"``) and neither Keras nor PyTorch. Importing
:mod:`focalkit` never imports JAX; the names here load :mod:`focalkit.jax.losses` (and JAX) the
first time one of them is used, and without JAX installed that raises an ImportError saying how to
install it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "softmax_focal_loss_with_integer_labels",
]

if TYPE_CHECKING:
    from focalkit.jax.losses import (
        sigmoid_focal_loss,
        softmax_focal_loss,
        softmax_focal_loss_with_integer_labels,
    )


def _import_losses() -> Any:
    try:
        return importlib.import_module("focalkit.jax.losses")
    except ModuleNotFoundError as error:
        if error.name in ("jax", "jaxlib"):
            raise ImportError('focalkit.jax needs JAX: pip install "focalkit[jax]"') from error
        raise


def __getattr__(name: str) -> Any:  # PEP 562: JAX loads on first use of a loss
    if name in __all__:
        value = getattr(_import_losses(), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'focalkit.jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
