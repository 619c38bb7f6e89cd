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

**What the trees see.** The focal loss's gradient, exactly, and by default
(``hessian="bounded"``) the curvature :math:`\max(h, \alpha_t p (1 - p))` of each row (of each
class, for the multi-class objective): the exact second derivative :math:`h` where it is the
larger, else cross-entropy's, weighted by ``alpha`` (:mod:`focalkit.gbdt` says why; it changes
the steps, not the minimum the trees move towards). ``multi:softprob`` uses :math:`2 p (1 - p)`,
twice the exact diagonal, so the multi-class objective returns twice that. At ``gamma=0`` it
is the exact Hessian, and both objectives train the same trees as ``binary:logistic`` and
``multi:softprob`` (tested, to ``1e-5`` after 50 rounds); ``min_child_weight`` and
``reg_lambda`` mean what they mean there, for Hessians at least ``alpha_t`` times theirs.

**Defaults converge.** With XGBoost's defaults otherwise (``eta=0.3``, ``max_depth=6``,
``min_child_weight=1``, ``reg_lambda=1``), 100 rounds of the focal objectives (gamma 2; alpha
0.25 binary) on 2,000 rows with 1, 2.5 and 5 % positives, and on 10 classes with frequencies
falling as :math:`0.6^k`, lowered the training focal loss 20- to 670-fold from margin 0 and
from ``prior_margin``, in both APIs, with every margin within :math:`\pm 7.7` (tested).
``hessian="exact"`` keeps the exact Hessian, floored at ``min_hessian``: from ``prior_margin``
at 1 and 2.5 % positives it made no split in 100 rounds (``min_child_weight=1`` is more than
any leaf's sum of exact focal Hessians there), so lower ``min_child_weight`` (``1e-3``) with it.

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
    >>> params = {"max_depth": 2, "nthread": 1, "disable_default_eval_metric": True}
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
from focalkit.gbdt import Hessian, SoftmaxAlpha

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
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    *,
    hessian: Hessian = "bounded",
    min_hessian: float = 1e-6,
) -> FocalObjective:
    r"""Binary focal objective: :func:`focalkit.gbdt.binary_focal_grad_hess` for XGBoost.

    ``grad = weight * g`` and ``hess = weight * max(h, min_hessian)``, with :math:`g` the exact
    derivative of ``sigmoid_focal_loss`` with respect to the margin and, by default,
    :math:`h = \max(h_{\text{exact}}, \alpha_t p (1 - p))`: the exact curvature or
    cross-entropy's, whichever is larger, which converges with XGBoost's default parameters
    (the module docstring gives the figures). At ``gamma=0`` it is the exact Hessian, and with
    ``alpha=None`` the objective trains what ``binary:logistic`` trains.

    Args:
        gamma: Focusing parameter, ``gamma >= 0``. Default: 2.
        alpha: Weight of positives in ``[0, 1]`` (``1 - alpha`` for negatives), or ``None``.
            Default: 0.25.
        hessian: ``"bounded"`` (default), the curvature above, or ``"exact"``,
            :math:`h_{\text{exact}}` (with it, lower ``min_child_weight``).
        min_hessian: Floor of the unweighted Hessian. Default: ``1e-6``.

    Example:
        >>> import numpy as np
        >>> from focalkit.xgboost import binary_focal_objective
        >>> objective = binary_focal_objective(gamma=2.0, alpha=0.25)
        >>> objective
        binary_focal_objective(gamma=2.0, alpha=0.25, hessian='bounded')
        >>> grad, hess = objective(np.array([1.0, 0.0]), np.array([-3.0, 0.0]))  # y_true, y_pred
        >>> print(grad.round(4))
        [-0.2817  0.2237]
    """
    return FocalObjective(
        "binary_focal_objective", None, gamma, alpha, hessian=hessian, min_hessian=min_hessian
    )


def softmax_focal_objective(
    num_class: int,
    gamma: float = 2.0,
    alpha: SoftmaxAlpha = None,
    *,
    hessian: Hessian = "bounded",
    min_hessian: float = 1e-6,
) -> FocalObjective:
    r"""Multi-class focal objective for XGBoost, with ``multi:softprob``'s Hessian convention.

    ``grad = weight * g`` and ``hess = 2 * weight * max(h, min_hessian)`` with :math:`g` the
    exact gradient of ``softmax_focal_loss`` (:func:`focalkit.gbdt.softmax_focal_grad_hess`) and,
    by default, :math:`h_j = \max(h_{\text{exact}, j}, \alpha_t p_j (1 - p_j))`, as for the
    binary objective. The factor 2 is ``multi:softprob``'s (:math:`2 p (1 - p)`), so at
    ``gamma=0, alpha=None`` this trains what it trains. Set ``num_class`` in ``xgb.train``'s
    params too; ``XGBClassifier`` sets it.

    Args:
        num_class: Number of classes :math:`K \ge 2`; predictions must have K columns.
        gamma: Focusing parameter, ``gamma >= 0``. Default: 2.
        alpha: ``None``, a number ``>= 0``, or one value ``>= 0`` per class (e.g.
            :func:`focalkit.class_weights`). Default: ``None``.
        hessian: ``"bounded"`` (default) or ``"exact"``, as for the binary objective.
        min_hessian: Floor of the unweighted, unscaled Hessian. Default: ``1e-6``.

    Example:
        >>> import numpy as np
        >>> from focalkit.xgboost import softmax_focal_objective
        >>> objective = softmax_focal_objective(3, alpha=[0.2, 0.3, 0.5])
        >>> objective
        softmax_focal_objective(num_class=3, gamma=2.0, alpha=[0.2, 0.3, 0.5], hessian='bounded')
        >>> grad, hess = objective(np.array([0, 2]), np.zeros((2, 3)))
        >>> grad.shape, hess.shape
        ((2, 3), (2, 3))
    """
    return FocalObjective(
        "softmax_focal_objective",
        num_class,
        gamma,
        alpha,
        hessian=hessian,
        min_hessian=min_hessian,
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
