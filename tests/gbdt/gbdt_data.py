"""Small data sets for the gradient-boosting tests: fast on two cores."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

Split = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]
THREADS = 2
PARITY_ROUNDS = 50


def parity_data(classes: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """600 rows, 8 features, balanced classes: for training beside the built-in objective."""
    X, y = make_classification(
        n_samples=600, n_features=8, n_informative=5, n_classes=classes, random_state=0
    )
    return X, y


def imbalanced_split() -> Split:
    """4000 rows, about 1.5 % positives, split 70/30 with both halves stratified."""
    X, y = make_classification(
        n_samples=4000,
        n_features=10,
        n_informative=4,
        weights=[0.985],
        flip_y=0.0,
        class_sep=0.8,
        random_state=0,
    )
    X_train, X_valid, y_train, y_valid = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    return X_train, X_valid, y_train, y_valid


def imbalanced_multiclass_split() -> Split:
    """3000 rows, three classes at about 90 / 8 / 2 %."""
    X, y = make_classification(
        n_samples=3000,
        n_features=10,
        n_informative=5,
        n_classes=3,
        weights=[0.9, 0.08, 0.02],
        flip_y=0.0,
        random_state=0,
    )
    X_train, X_valid, y_train, y_valid = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    return X_train, X_valid, y_train, y_valid
