r"""Focal-loss objectives and metrics for XGBoost, over :mod:`focalkit.gbdt`.

Each factory returns one callable that works in both of XGBoost's APIs; it tells them apart by
the type of its second argument:

- ``xgb.train(params, dtrain, obj=objective, custom_metric=metric)`` calls ``(preds, dtrain)``,
  with labels and sample weights read from the ``DMatrix``;
- ``xgb.XGBClassifier(objective=objective, eval_metric=metric)`` calls
  ``(y_true, y_pred, sample_weight=...)`` (XGBoost looks for that parameter name).

Predictions reach a custom objective as raw margins: shape :math:`(N)` for the binary
objective, :math:`(N, K)` for the multi-class one. ``xgb.train`` needs ``params["num_class"] = K``
for the latter.

**The metrics go with the focal objectives.** A custom metric gets margins only when the
objective is a callable; under a built-in objective (``binary:logistic``, ``multi:softprob``)
XGBoost passes it probabilities, which a metric of margins would score as a wrong loss. The focal
metrics therefore check the ``Booster`` that evaluates them and raise a ``ValueError`` there. To
score a model trained with a built-in objective, take its margins yourself:
``focalkit.gbdt.binary_focal_value(booster.predict(dvalid, output_margin=True), y_valid).mean()``
(``Booster.eval_set(..., feval=metric)``, which predicts margins by default, works too).

**Hessian convention.** The binary objective's Hessian is the exact one, as ``binary:logistic``'s
is. ``multi:softprob`` uses :math:`2 p (1 - p)`, twice the exact diagonal, so the multi-class
objective returns ``2 * weight * max(h, min_hessian)``: at ``gamma=0, alpha=None`` both objectives
train the same trees as the built-ins (tested), and ``min_child_weight`` and ``reg_lambda`` mean
what they mean there.

**Split and leaf constraints.** Focal Hessians are :math:`(1 - p_t)^\gamma` times the logistic
ones, so XGBoost's default ``min_child_weight=1`` can forbid every split on imbalanced data:
lower it (``1e-3`` in focalkit's tests). Keep ``reg_lambda`` at its default 1: it bounds the
leaf values :math:`-\sum g / (\sum h + \lambda)` where the Hessians are small.

**Early stopping on the focal metric.** Set ``disable_default_eval_metric=True`` (``xgb.train``
params or ``XGBClassifier``) so that the metric is the only one XGBoost reports; early stopping
follows the last metric of the last evaluation set. Without a starting margin, ``xgb.train``
with a callable ``obj`` starts from ``base_score`` (0.5 as a margin); pass
``base_margin=focalkit.gbdt.prior_margin(y)`` to the ``DMatrix`` (or ``XGBClassifier.fit``) to
start from the class balance. ``XGBClassifier`` fits its own intercept.

Example:
    >>> import numpy as np, xgboost as xgb
    >>> from focalkit.gbdt import prior_margin, predict_proba
    >>> from focalkit.xgboost import binary_focal_metric, binary_focal_objective
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 3)); y = (X[:, 0] + rng.normal(size=400) > 1.5).astype(int)
    >>> dtrain = xgb.DMatrix(X, label=y, base_margin=np.full(400, prior_margin(y)))
    >>> params = {"max_depth": 2, "nthread": 1, "min_child_weight": 1e-3,
    ...           "disable_default_eval_metric": True}
    >>> log = {}
    >>> booster = xgb.train(params, dtrain, 20, obj=binary_focal_objective(gamma=2.0),
    ...                     custom_metric=binary_focal_metric(gamma=2.0), evals=[(dtrain, "train")],
    ...                     evals_result=log, verbose_eval=False)
    >>> losses = log["train"]["focal_loss"]
    >>> len(losses), losses[-1] < losses[0]
    (20, True)
    >>> proba = predict_proba(booster.predict(dtrain, output_margin=True))  # P(y = 1)
"""

from __future__ import annotations

import json
import sys
from types import FrameType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from focalkit import _gbdt_adapters
from focalkit._gbdt_adapters import METRIC_NAME, caller_locals, probabilities_not_margins, unpack
from focalkit.gbdt import SoftmaxAlpha

try:
    import xgboost as xgb
except ModuleNotFoundError as error:  # pragma: no cover - depends on the environment
    if error.name == "xgboost":
        raise ImportError(
            'focalkit.xgboost needs XGBoost: pip install "focalkit[xgboost]"'
        ) from error
    raise

__all__ = [
    "binary_focal_metric",
    "binary_focal_objective",
    "softmax_focal_metric",
    "softmax_focal_objective",
]


class FocalObjective(_gbdt_adapters.Objective):
    """A focal objective for ``xgb.train(obj=...)`` and ``XGBClassifier(objective=...)``.

    Built by :func:`binary_focal_objective` and :func:`softmax_focal_objective`; returns
    ``(grad, hess)`` as float64 arrays of the predictions' shape. Its third parameter is named
    ``sample_weight`` because XGBoost's scikit-learn API passes the weights by that name.
    """

    @staticmethod
    def multiclass_hessian_scale(num_class: int) -> float:
        return 2.0  # multi:softprob's Hessian is 2 p (1 - p)

    def __call__(
        self,
        y_true_or_preds: Any,
        y_pred_or_dtrain: Any,
        sample_weight: ArrayLike | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        preds, labels, weight, _ = unpack(
            y_true_or_preds, y_pred_or_dtrain, sample_weight, xgb.DMatrix
        )
        return self.grad_hess(preds, labels, weight)


class FocalMetric(_gbdt_adapters.Metric):
    """The mean focal loss (lower is better), for ``custom_metric=`` and ``eval_metric=``.

    Built by :func:`binary_focal_metric` and :func:`softmax_focal_metric`. ``xgb.train`` gets
    ``("focal_loss", value)``, ``XGBClassifier`` a float (it names the metric after
    ``__name__``). Weighted by the evaluation set's sample weights where it has them. Reads
    margins, which XGBoost passes when the objective is a callable; called by a ``Booster``
    that evaluates it on probabilities (a built-in objective), it raises a ``ValueError``.
    """

    def __call__(
        self,
        y_true_or_preds: Any,
        y_pred_or_dtrain: Any,
        sample_weight: ArrayLike | None = None,
    ) -> tuple[str, float] | float:
        preds, labels, weight, dtrain = unpack(
            y_true_or_preds, y_pred_or_dtrain, sample_weight, xgb.DMatrix
        )
        self._check_margins(sys._getframe(1))
        value = self.mean_loss(preds, labels, weight)
        return value if dtrain is None else (METRIC_NAME, value)

    def _check_margins(self, caller: FrameType | None) -> None:
        """Raise if the ``Booster`` evaluating this metric passes it transformed predictions.

        ``Booster.eval_set`` predicts with ``output_margin`` (``xgb.train`` and the scikit-learn
        API set it to whether the objective is a callable) and hands the result to the metric.
        """
        evaluation = caller_locals(caller, xgb.Booster)
        if evaluation is None or evaluation.get("output_margin") is not False:
            return
        config = json.loads(evaluation["self"].save_config())
        objective = config["learner"]["objective"]["name"]
        raise ValueError(probabilities_not_margins(self.where, "XGBoost", objective))


def binary_focal_objective(
    gamma: float = 2.0, alpha: float | None = 0.25, *, min_hessian: float = 1e-6
) -> FocalObjective:
    r"""Binary focal objective: :func:`focalkit.gbdt.binary_focal_grad_hess` for XGBoost.

    ``grad = weight * g`` and ``hess = weight * max(h, min_hessian)`` with :math:`g`, :math:`h`
    the exact derivatives of ``sigmoid_focal_loss`` with respect to the margin. At ``gamma=0,
    alpha=None`` it trains what ``binary:logistic`` trains.

    Args:
        gamma: Focusing parameter, ``gamma >= 0``. Default: 2.
        alpha: Weight of positives in ``[0, 1]`` (``1 - alpha`` for negatives), or ``None``.
            Default: 0.25.
        min_hessian: Floor of the unweighted Hessian. Default: ``1e-6``.

    Example:
        >>> import numpy as np
        >>> from focalkit.xgboost import binary_focal_objective
        >>> objective = binary_focal_objective(gamma=2.0, alpha=0.25)
        >>> objective
        binary_focal_objective(gamma=2.0, alpha=0.25)
        >>> grad, hess = objective(np.array([1.0, 0.0]), np.array([-3.0, 0.0]))  # y_true, y_pred
        >>> print(grad.round(4))
        [-0.2817  0.2237]
    """
    return FocalObjective("binary_focal_objective", None, gamma, alpha, min_hessian=min_hessian)


def softmax_focal_objective(
    num_class: int,
    gamma: float = 2.0,
    alpha: SoftmaxAlpha = None,
    *,
    min_hessian: float = 1e-6,
) -> FocalObjective:
    r"""Multi-class focal objective for XGBoost, with ``multi:softprob``'s Hessian convention.

    ``grad = weight * g`` and ``hess = 2 * weight * max(h, min_hessian)`` with :math:`g` and
    :math:`h` the exact gradient and Hessian diagonal of ``softmax_focal_loss``
    (:func:`focalkit.gbdt.softmax_focal_grad_hess`). The factor 2 is ``multi:softprob``'s
    (:math:`2 p (1 - p)`), so at ``gamma=0, alpha=None`` this trains what it trains. Set
    ``num_class`` in ``xgb.train``'s params too; ``XGBClassifier`` sets it.

    Args:
        num_class: Number of classes :math:`K \ge 2`; predictions must have K columns.
        gamma: Focusing parameter, ``gamma >= 0``. Default: 2.
        alpha: ``None``, a number ``>= 0``, or one value ``>= 0`` per class (e.g.
            :func:`focalkit.class_weights`). Default: ``None``.
        min_hessian: Floor of the unweighted, unscaled Hessian. Default: ``1e-6``.

    Example:
        >>> import numpy as np
        >>> from focalkit.xgboost import softmax_focal_objective
        >>> objective = softmax_focal_objective(3, alpha=[0.2, 0.3, 0.5])
        >>> objective
        softmax_focal_objective(num_class=3, gamma=2.0, alpha=[0.2, 0.3, 0.5])
        >>> grad, hess = objective(np.array([0, 2]), np.zeros((2, 3)))
        >>> grad.shape, hess.shape
        ((2, 3), (2, 3))
    """
    return FocalObjective(
        "softmax_focal_objective", num_class, gamma, alpha, min_hessian=min_hessian
    )


def binary_focal_metric(gamma: float = 2.0, alpha: float | None = 0.25) -> FocalMetric:
    """The mean binary focal loss of margins, named ``"focal_loss"``; arguments as the objective's.

    Example:
        >>> import numpy as np
        >>> from focalkit.xgboost import binary_focal_metric
        >>> round(binary_focal_metric()(np.array([1, 0, 1]), np.array([-3.0, 0.0, 2.0])), 6)
        0.273995
    """
    return FocalMetric("binary_focal_metric", None, gamma, alpha)


def softmax_focal_metric(
    num_class: int, gamma: float = 2.0, alpha: SoftmaxAlpha = None
) -> FocalMetric:
    """The mean softmax focal loss of margins, named ``"focal_loss"``; arguments as the objective's.

    Example:
        >>> import numpy as np
        >>> from focalkit.xgboost import softmax_focal_metric
        >>> margins = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
        >>> round(softmax_focal_metric(3)(np.array([0, 1]), margins), 4)
        0.8569
    """
    return FocalMetric("softmax_focal_metric", num_class, gamma, alpha)
