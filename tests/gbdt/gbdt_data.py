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


CONVERGENCE_ROUNDS = 100
# (name, positive rate) of binary problems, and the 10-class one (rate None)
CONVERGENCE_PROBLEMS = [("1%", 0.01), ("2.5%", 0.025), ("5%", 0.05), ("10-class", None)]


def convergence_problem(rate: float | None) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """2000 rows, imbalanced: binary with ``rate`` positives, or 10 long-tailed classes.

    The 10-class problem has about 800 rows of class 0 and 8 of class 9.
    """
    if rate is not None:
        X, y = make_classification(
            n_samples=2000,
            n_features=6,
            n_informative=3,
            weights=[1.0 - rate],
            flip_y=0.0,
            class_sep=0.8,
            random_state=0,
        )
        return X, y
    frequencies = 0.6 ** np.arange(10)
    X, y = make_classification(
        n_samples=2000,
        n_features=8,
        n_informative=6,
        n_classes=10,
        n_clusters_per_class=1,
        weights=list(frequencies / frequencies.sum()),
        flip_y=0.0,
        random_state=0,
    )
    return X, y
