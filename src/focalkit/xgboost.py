"""Focal-loss objectives and metrics for XGBoost, over the NumPy math in ``focalkit.gbdt``.

Each factory returns one callable that works both as ``obj=`` / ``custom_metric=`` in
``xgb.train`` (called ``(preds, dtrain)``) and as ``objective=`` / ``eval_metric=`` in
``xgb.XGBClassifier`` (called ``(y_true, y_pred, sample_weight=...)``); the type of the second
argument tells the two apart. Sample weights are honoured in both.

Conventions:

- Predictions reach the objective and the metric as raw margins (XGBoost passes margins whenever
  the objective is custom). ``focalkit.gbdt.predict_proba`` turns margins into probabilities;
  ``XGBClassifier.predict_proba`` does that itself.
- The multi-class Hessian is scaled by 2, the factor XGBoost's ``multi:softprob`` uses
  (``2 p (1 - p)``), so that ``gamma=0, alpha=None`` trains what ``multi:softprob`` trains. The
  binary Hessian is exact, as ``binary:logistic``'s ``p (1 - p)`` is.
- For a custom metric to drive early stopping, pass ``disable_default_eval_metric=1`` in the
  parameters (or ``XGBClassifier(disable_default_eval_metric=True)``), so that the focal metric is
  the last one evaluated.
- Lower ``min_child_weight`` (default 1, a minimum of summed Hessian per leaf): focal Hessians of
  well-classified rows are small, and with the default no split may qualify. 1e-3 works.

Example:
    >>> import numpy as np, xgboost as xgb
    >>> from focalkit.xgboost import binary_focal_metric, binary_focal_objective
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = (X[:, 0] + rng.normal(size=200) > 1.5).astype(int)
    >>> train = xgb.DMatrix(X, label=y, base_margin=np.zeros(200))
    >>> params = {"disable_default_eval_metric": 1, "min_child_weight": 1e-3, "nthread": 1}
    >>> booster = xgb.train(params, train,
    ...                     num_boost_round=5, obj=binary_focal_objective(gamma=2.0),
    ...                     custom_metric=binary_focal_metric(gamma=2.0))
    >>> booster.predict(train, output_margin=True).shape
    (200,)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xgboost as xgb
from numpy.typing import NDArray

from focalkit import gbdt

__all__ = [
    "binary_focal_metric",
    "binary_focal_objective",
    "softmax_focal_metric",
    "softmax_focal_objective",
]

#: XGBoost's multi:softprob Hessian is 2 p (1 - p); focalkit.gbdt's exact one is p (1 - p).
SOFTPROB_HESSIAN_FACTOR = 2.0

Objective = Callable[..., tuple[NDArray[np.float64], NDArray[np.float64]]]


def _unpack(first: Any, second: Any, sample_weight: Any) -> tuple[Any, Any, Any, bool]:
    """``(margins, labels, weights, is_train_api)`` from either calling convention."""
    if isinstance(second, xgb.DMatrix):
        weights = second.get_weight()
        return first, second.get_label(), weights if weights.size else None, True
    return second, first, sample_weight, False


def _multi_margins(preds: Any, num_class: int, where: str) -> NDArray[np.float64]:
    margins = np.asarray(preds, dtype=np.float64)
    if margins.ndim == 1 and margins.size % num_class == 0:
        margins = margins.reshape(-1, num_class)
    if margins.ndim != 2 or margins.shape[1] != num_class:
        raise ValueError(
            f"{where}: predictions must have num_class={num_class} columns, got shape "
            f"{np.shape(preds)}"
        )
    return margins


def _check_num_class(num_class: object, where: str) -> int:
    if not isinstance(num_class, (int, np.integer)) or isinstance(num_class, bool) or num_class < 2:
        raise ValueError(f"{where}: num_class must be an int >= 2, got {num_class!r}")
    return int(num_class)


def binary_focal_objective(
    gamma: float = 2.0, alpha: float | None = 0.25, *, min_hessian: float = 1e-6
) -> Objective:
    """The binary focal objective (``sigmoid_focal_loss``) for ``xgb.train`` and ``XGBClassifier``.

    ``gamma=0, alpha=None`` is the logistic loss of ``binary:logistic``.
    """
    gbdt.binary_focal_grad_hess([0.0], [1], gamma=gamma, alpha=alpha, min_hessian=min_hessian)

    def objective(first: Any, second: Any, sample_weight: Any = None) -> Any:
        margins, labels, weights, _ = _unpack(first, second, sample_weight)
        return gbdt.binary_focal_grad_hess(
            margins, labels, gamma=gamma, alpha=alpha, weight=weights, min_hessian=min_hessian
        )

    return objective


def softmax_focal_objective(
    num_class: int,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    *,
    min_hessian: float = 1e-6,
) -> Objective:
    """The multi-class focal objective (``softmax_focal_loss``), Hessian in softprob's scale.

    ``alpha`` may be per-class, for example ``focalkit.class_weights(counts)``.
    """
    where = "softmax_focal_objective()"
    num_class = _check_num_class(num_class, where)
    gbdt.softmax_focal_grad_hess(
        np.zeros((1, num_class)), [0], gamma=gamma, alpha=alpha, min_hessian=min_hessian
    )

    def objective(first: Any, second: Any, sample_weight: Any = None) -> Any:
        preds, labels, weights, _ = _unpack(first, second, sample_weight)
        grad, hess = gbdt.softmax_focal_grad_hess(
            _multi_margins(preds, num_class, where),
            labels,
            gamma=gamma,
            alpha=alpha,
            weight=weights,
            min_hessian=min_hessian,
        )
        return grad, SOFTPROB_HESSIAN_FACTOR * hess

    return objective


def _mean(values: NDArray[np.float64], weights: Any) -> float:
    if weights is None:
        return float(np.mean(values))
    weights = np.asarray(weights, dtype=np.float64)
    return float(np.sum(values * weights) / np.sum(weights))


def binary_focal_metric(gamma: float = 2.0, alpha: float | None = 0.25) -> Callable[..., Any]:
    """The mean binary focal loss of margins, weighted by the set's sample weights if it has them.

    Returns ``("focal", value)`` to ``xgb.train`` and a float to ``XGBClassifier``.
    """
    gbdt.binary_focal_value([0.0], [1], gamma=gamma, alpha=alpha)

    def metric(first: Any, second: Any, sample_weight: Any = None) -> Any:
        margins, labels, weights, train_api = _unpack(first, second, sample_weight)
        value = _mean(gbdt.binary_focal_value(margins, labels, gamma=gamma, alpha=alpha), weights)
        return ("focal", value) if train_api else value

    return metric


def softmax_focal_metric(
    num_class: int, gamma: float = 2.0, alpha: float | Sequence[float] | None = None
) -> Callable[..., Any]:
    """The mean multi-class focal loss of margins; ``("focal", value)`` or a float."""
    where = "softmax_focal_metric()"
    num_class = _check_num_class(num_class, where)

    def metric(first: Any, second: Any, sample_weight: Any = None) -> Any:
        preds, labels, weights, train_api = _unpack(first, second, sample_weight)
        values = gbdt.softmax_focal_value(
            _multi_margins(preds, num_class, where), labels, gamma=gamma, alpha=alpha
        )
        value = _mean(values, weights)
        return ("focal", value) if train_api else value

    return metric
