r"""The metrics the ``demo`` and ``compare`` reports give for each loss.

All take the true class indices ``target`` of shape ``(N,)`` and the predicted log-probabilities
``log_probs`` of shape ``(N, C)`` (float64, from ``log_softmax``). Balanced accuracy, macro-F1 and
recall are scikit-learn's; expected calibration error has no scikit-learn function and is
computed here, as Guo et al. define it: with the top-label confidence
:math:`\hat p_n = \max_c p_{n,c}` sorted into ``n_bins`` equal-width bins :math:`B_b = (b/M,
(b + 1)/M]`,

.. math::
    \mathrm{ECE} = \sum_b \frac{|B_b|}{N} \left| \mathrm{acc}(B_b) - \mathrm{conf}(B_b) \right|.

References:
    Guo et al., "On Calibration of Modern Neural Networks", ICML 2017. arXiv:1706.04599
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

ECE_BINS = 15


@dataclass(frozen=True)
class Metrics:
    """One model's scores on one test set."""

    balanced_accuracy: float
    macro_f1: float
    rare_recall: float
    ece: float
    nll: float


# (attribute, column header, True if higher is better), in table order.
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("balanced_accuracy", "balanced accuracy", True),
    ("macro_f1", "macro-F1", True),
    ("rare_recall", "recall, rarest classes", True),
    ("ece", f"ECE ({ECE_BINS} bins)", False),
    ("nll", "NLL", False),
)


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin mean confidence, accuracy and count; bins with no sample hold NaN and 0."""

    edges: NDArray[np.float64]
    confidence: NDArray[np.float64]
    accuracy: NDArray[np.float64]
    counts: NDArray[np.int64]


def reliability_bins(
    target: NDArray[np.int64], log_probs: NDArray[np.float64], n_bins: int = ECE_BINS
) -> ReliabilityBins:
    """Sort the top-label confidences into ``n_bins`` equal-width bins ``(lo, hi]``.

    Example:
        >>> import numpy as np
        >>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
        >>> bins = reliability_bins(np.array([0, 1, 1]), np.log(probs), n_bins=2)
        >>> bins.counts.tolist(), bins.accuracy.round(4).tolist(), bins.confidence.round(4).tolist()
        ([0, 3], [nan, 0.6667], [nan, 0.7333])
    """
    confidence = np.exp(log_probs.max(axis=1))
    correct = (log_probs.argmax(axis=1) == target).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left" puts a confidence equal to an inner edge in the bin below: bins are (lo, hi].
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(index, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, n_bins) / counts
        accuracy = np.bincount(index, correct, n_bins) / counts
    return ReliabilityBins(edges, mean_confidence, accuracy, counts)


def expected_calibration_error(
    target: NDArray[np.int64], log_probs: NDArray[np.float64], n_bins: int = ECE_BINS
) -> float:
    """ECE with ``n_bins`` equal-width bins of top-label confidence (see the module docstring).

    Example:
        >>> import numpy as np
        >>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
        >>> round(expected_calibration_error(np.array([0, 1, 1]), np.log(probs), n_bins=2), 4)
        0.0667
    """
    bins = reliability_bins(target, log_probs, n_bins)
    filled = bins.counts > 0
    gaps = np.abs(bins.accuracy[filled] - bins.confidence[filled])
    return float(np.sum(bins.counts[filled] * gaps) / bins.counts.sum())


def negative_log_likelihood(target: NDArray[np.int64], log_probs: NDArray[np.float64]) -> float:
    """Mean of ``-log p`` of the true class, from log-probabilities (no clipping)."""
    return float(-np.mean(log_probs[np.arange(target.shape[0]), target]))


def evaluate(
    target: NDArray[np.int64], log_probs: NDArray[np.float64], rare_classes: list[int]
) -> Metrics:
    """All five metrics; ``rare_recall`` is the mean recall over ``rare_classes``."""
    from sklearn.metrics import (  # type: ignore[import-untyped]
        balanced_accuracy_score,
        f1_score,
        recall_score,
    )

    num_classes = log_probs.shape[1]
    labels = list(range(num_classes))
    prediction = log_probs.argmax(axis=1)
    return Metrics(
        balanced_accuracy=float(balanced_accuracy_score(target, prediction)),
        macro_f1=float(
            f1_score(target, prediction, labels=labels, average="macro", zero_division=0)
        ),
        rare_recall=float(
            np.mean(
                recall_score(target, prediction, labels=rare_classes, average=None, zero_division=0)
            )
        ),
        ece=expected_calibration_error(target, log_probs),
        nll=negative_log_likelihood(target, log_probs),
    )


def per_class_recall(
    target: NDArray[np.int64], log_probs: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Recall of every class, shape ``(C,)``; a class absent from ``target`` gets NaN."""
    prediction = log_probs.argmax(axis=1)
    num_classes = log_probs.shape[1]
    hits = np.bincount(target[prediction == target], minlength=num_classes)
    support = np.bincount(target, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / support
