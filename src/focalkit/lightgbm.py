"""Focal-loss objectives and metrics for LightGBM, over the NumPy math in ``focalkit.gbdt``.

Each factory returns one callable that works both as ``params={"objective": obj}`` / ``feval=`` in
``lgb.train`` (called ``(preds, train_set)``) and as ``objective=`` / ``eval_metric=`` in
``lgb.LGBMClassifier`` (called ``(y_true, y_pred, weight)``); the type of the second argument
tells the two apart. Sample weights are honoured in both.

Conventions:

- Predictions reach the objective and the metric as raw scores (LightGBM applies no link to a
  custom objective); ``LGBMClassifier.predict`` then returns raw scores too, so use
  ``model.predict(X, raw_score=True)`` and ``focalkit.gbdt.predict_proba``.
- The multi-class Hessian is scaled by ``K / (K - 1)``, the factor of LightGBM's ``multiclass``
  objective, so that ``gamma=0, alpha=None`` trains what ``multiclass`` trains. The binary Hessian
  is exact, as ``binary``'s ``p (1 - p)`` is.
- For the focal metric to drive early stopping, set ``metric="None"`` in the parameters. Keep
  ``min_sum_hessian_in_leaf`` above 0 (its default, 1e-3), and bound the leaves: set
  ``lambda_l2`` (``reg_lambda``) and ``max_delta_step`` to about 1. The floored Hessian can be
  tiny, and a leaf's value ``-sum(g) / sum(h)`` then huge: on a 1.5 %-positive problem the focal
  objective without ``max_delta_step`` drove margins to -1200 (PR-AUC 0.02); with it, PR-AUC was
  0.76 against 0.73 for ``binary``.
- A custom objective starts from a raw score of 0 unless ``init_score`` is given;
  ``focalkit.gbdt.prior_margin`` gives the prior's.

Example:
    >>> import numpy as np, lightgbm as lgb
    >>> from focalkit.lightgbm import binary_focal_metric, binary_focal_objective
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = (X[:, 0] + rng.normal(size=200) > 1.5).astype(int)
    >>> params = {"objective": binary_focal_objective(gamma=2.0), "metric": "None",
    ...           "lambda_l2": 1.0, "max_delta_step": 1.0, "verbose": -1, "num_threads": 1}
    >>> booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=5,
    ...                     feval=binary_focal_metric(gamma=2.0))
    >>> booster.predict(X, raw_score=True).shape
    (200,)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray

from focalkit import gbdt
from focalkit.xgboost import _check_num_class, _mean, _multi_margins

__all__ = [
    "binary_focal_metric",
    "binary_focal_objective",
    "softmax_focal_metric",
    "softmax_focal_objective",
]


def _unpack(first: Any, second: Any, weight: Any) -> tuple[Any, Any, Any]:
    """``(scores, labels, weights)`` from either calling convention."""
    if isinstance(second, lgb.Dataset):
        return first, second.get_label(), second.get_weight()
    return second, first, weight


def binary_focal_objective(
    gamma: float = 2.0, alpha: float | None = 0.25, *, min_hessian: float = 1e-6
) -> Callable[..., tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """The binary focal objective (``sigmoid_focal_loss``) for ``lgb.train`` and ``LGBMClassifier``.

    ``gamma=0, alpha=None`` is the logistic loss of LightGBM's ``binary``.
    """
    gbdt.binary_focal_grad_hess([0.0], [1], gamma=gamma, alpha=alpha, min_hessian=min_hessian)

    def objective(first: Any, second: Any, weight: Any = None) -> Any:
        scores, labels, weights = _unpack(first, second, weight)
        return gbdt.binary_focal_grad_hess(
            scores, labels, gamma=gamma, alpha=alpha, weight=weights, min_hessian=min_hessian
        )

    return objective


def softmax_focal_objective(
    num_class: int,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    *,
    min_hessian: float = 1e-6,
) -> Callable[..., tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """The multi-class focal objective, Hessian in LightGBM ``multiclass``'s scale, K / (K - 1)."""
    where = "softmax_focal_objective()"
    num_class = _check_num_class(num_class, where)
    gbdt.softmax_focal_grad_hess(
        np.zeros((1, num_class)), [0], gamma=gamma, alpha=alpha, min_hessian=min_hessian
    )
    factor = num_class / (num_class - 1.0)

    def objective(first: Any, second: Any, weight: Any = None) -> Any:
        scores, labels, weights = _unpack(first, second, weight)
        grad, hess = gbdt.softmax_focal_grad_hess(
            _multi_margins(scores, num_class, where),
            labels,
            gamma=gamma,
            alpha=alpha,
            weight=weights,
            min_hessian=min_hessian,
        )
        return grad, factor * hess

    return objective


def binary_focal_metric(
    gamma: float = 2.0, alpha: float | None = 0.25
) -> Callable[..., tuple[str, float, bool]]:
    """The mean binary focal loss of raw scores: ``("focal", value, False)``."""
    gbdt.binary_focal_value([0.0], [1], gamma=gamma, alpha=alpha)

    def metric(first: Any, second: Any, weight: Any = None) -> tuple[str, float, bool]:
        scores, labels, weights = _unpack(first, second, weight)
        values = gbdt.binary_focal_value(scores, labels, gamma=gamma, alpha=alpha)
        return "focal", _mean(values, weights), False

    return metric


def softmax_focal_metric(
    num_class: int, gamma: float = 2.0, alpha: float | Sequence[float] | None = None
) -> Callable[..., tuple[str, float, bool]]:
    """The mean multi-class focal loss of raw scores: ``("focal", value, False)``."""
    where = "softmax_focal_metric()"
    num_class = _check_num_class(num_class, where)

    def metric(first: Any, second: Any, weight: Any = None) -> tuple[str, float, bool]:
        scores, labels, weights = _unpack(first, second, weight)
        values = gbdt.softmax_focal_value(
            _multi_margins(scores, num_class, where), labels, gamma=gamma, alpha=alpha
        )
        return "focal", _mean(values, weights), False

    return metric
