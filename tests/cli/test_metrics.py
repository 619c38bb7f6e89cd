"""The report's metrics on a hand-made prediction set, against scikit-learn and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, log_loss

from focalkit.cli.metrics import (
    evaluate,
    expected_calibration_error,
    negative_log_likelihood,
    per_class_recall,
    reliability_bins,
)

# 8 samples, 3 classes. Predictions (argmax): 0 0 1 1 1 2 2 0; truth: 0 0 0 1 1 2 2 2.
TARGET = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PROBS = np.array(
    [
        [0.95, 0.03, 0.02],  # conf 0.95, right
        [0.50, 0.30, 0.20],  # conf 0.50, right
        [0.10, 0.60, 0.30],  # conf 0.60, wrong
        [0.05, 0.90, 0.05],  # conf 0.90, right
        [0.30, 0.40, 0.30],  # conf 0.40, right
        [0.10, 0.10, 0.80],  # conf 0.80, right
        [0.02, 0.02, 0.96],  # conf 0.96, right
        [0.70, 0.10, 0.20],  # conf 0.70, wrong
    ]
)
LOG_PROBS = np.log(PROBS)


def test_balanced_accuracy_and_macro_f1_by_hand_and_against_sklearn() -> None:
    metrics = evaluate(TARGET, LOG_PROBS, rare_classes=[1, 2])
    prediction = PROBS.argmax(1)
    # Recall: class 0 2/3, class 1 2/2, class 2 2/3.
    assert metrics.balanced_accuracy == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert metrics.balanced_accuracy == pytest.approx(balanced_accuracy_score(TARGET, prediction))
    # Precision: class 0 2/3, class 1 2/3, class 2 2/2; F1 = 2PR/(P+R).
    f1 = [2 / 3, 2 * (2 / 3) * 1 / (2 / 3 + 1), 2 * 1 * (2 / 3) / (1 + 2 / 3)]
    assert metrics.macro_f1 == pytest.approx(np.mean(f1))
    assert metrics.macro_f1 == pytest.approx(f1_score(TARGET, prediction, average="macro"))
    assert metrics.rare_recall == pytest.approx((1 + 2 / 3) / 2)
    np.testing.assert_allclose(per_class_recall(TARGET, LOG_PROBS), [2 / 3, 1, 2 / 3])


def test_ece_by_hand() -> None:
    # 15 bins of width 1/15: (0.333, 0.4] holds 0.40; (0.467, 0.533] 0.50; (0.533, 0.6] 0.60;
    # (0.667, 0.733] 0.70; (0.733, 0.8] 0.80; (0.867, 0.933] 0.90; (0.933, 1] 0.95 and 0.96.
    # |acc - conf| per bin: 0.6, 0.5, 0.6, 0.7, 0.2, 0.1, and |1 - 0.955| = 0.045 (2 samples).
    expected = (0.6 + 0.5 + 0.6 + 0.7 + 0.2 + 0.1 + 2 * 0.045) / 8
    assert expected_calibration_error(TARGET, LOG_PROBS) == pytest.approx(expected)
    bins = reliability_bins(TARGET, LOG_PROBS)
    assert bins.counts.sum() == 8
    assert bins.counts[14] == 2
    assert bins.accuracy[14] == 1.0
    assert bins.confidence[14] == pytest.approx(0.955)


def test_ece_bins_are_closed_on_the_right() -> None:
    # Confidence 0.5 exactly, 2 bins: it belongs to (0, 0.5], not (0.5, 1].
    log_probs = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    bins = reliability_bins(np.array([1, 0]), log_probs, n_bins=2)
    assert bins.counts.tolist() == [1, 1]
    assert expected_calibration_error(np.array([1, 0]), log_probs, n_bins=2) == pytest.approx(
        (0.5 + 0.1) / 2
    )


def test_ece_of_a_calibrated_and_of_a_wrong_model() -> None:
    # Always right with confidence 1: ECE 0. Always wrong with confidence 0.9: ECE 0.9.
    sure = np.log(np.array([[1.0 - 1e-12, 1e-12]] * 4))
    assert expected_calibration_error(np.zeros(4, np.int64), sure) == pytest.approx(0, abs=1e-9)
    wrong = np.log(np.array([[0.9, 0.1]] * 4))
    assert expected_calibration_error(np.ones(4, np.int64), wrong) == pytest.approx(0.9)


def test_nll_against_sklearn() -> None:
    assert negative_log_likelihood(TARGET, LOG_PROBS) == pytest.approx(log_loss(TARGET, PROBS))
    assert evaluate(TARGET, LOG_PROBS, [2]).nll == pytest.approx(log_loss(TARGET, PROBS))
