"""focalkit's focal losses for Keras 3, on the TensorFlow, JAX and PyTorch backends.

Needs Keras 3 (``pip install "focalkit[keras]"``) and no PyTorch: the losses are written in
``keras.ops``. Importing :mod:`focalkit` itself never imports Keras.
"""

from __future__ import annotations

from focalkit.keras.losses import (
    BinaryFocalCrossentropy,
    CategoricalFocalCrossentropy,
    SparseCategoricalFocalCrossentropy,
    binary_focal_crossentropy,
    categorical_focal_crossentropy,
    sparse_categorical_focal_crossentropy,
)

__all__ = [
    "BinaryFocalCrossentropy",
    "CategoricalFocalCrossentropy",
    "SparseCategoricalFocalCrossentropy",
    "binary_focal_crossentropy",
    "categorical_focal_crossentropy",
    "sparse_categorical_focal_crossentropy",
]
