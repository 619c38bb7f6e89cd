r"""Focal-loss objectives and metrics for LightGBM (>= 4), over :mod:`focalkit.gbdt`.

Each factory returns one callable that works in both of LightGBM's APIs; it tells them apart by
the type of its second argument:

- ``lgb.train({"objective": objective, ...}, train_set, feval=metric)`` calls
  ``(preds, train_set)``, with labels and sample weights read from the ``Dataset``;
- ``lgb.LGBMClassifier(objective=objective).fit(..., eval_metric=metric)`` calls
  ``(y_true, y_pred, weight)``.

Predictions reach a custom objective as raw margins: shape :math:`(N)` for the binary
objective, :math:`(N, K)` for the multi-class one (LightGBM >= 4). ``lgb.train`` needs
``params["num_class"] = K`` for the latter. Metrics return ``("focal_loss", value, False)``:
lower is better.

**The metrics go with the focal objectives.** A custom metric gets raw margins only when the
objective is a callable; under a built-in objective (``binary``, ``multiclass``, or none, which
is ``regression``) LightGBM passes it its predictions after the link function (probabilities),
which a metric of margins would score as a wrong loss. The focal metrics therefore check the
``Booster`` that evaluates them and raise a ``ValueError`` there. To score a model trained with
a built-in objective, take its margins yourself:
``focalkit.gbdt.binary_focal_value(booster.predict(X_valid, raw_score=True), y_valid).mean()``.

**What the trees see.** The focal loss's gradient, exactly, and by default
(``hessian="bounded"``) the curvature :math:`\max(h, \alpha_t p (1 - p))` of each row (of each
class, for the multi-class objective): the exact second derivative :math:`h` where it is the
larger, else cross-entropy's, weighted by ``alpha`` (:mod:`focalkit.gbdt` says why; it changes
the steps, not the minimum the trees move towards). LightGBM's ``multiclass`` uses
:math:`K / (K - 1)\, p (1 - p)`, so the multi-class objective returns :math:`K / (K - 1)` times
that. At ``gamma=0`` it is the exact Hessian, and both objectives train the same trees as
``binary`` and ``multiclass`` (tested, to ``1e-5`` after 50 rounds).

**Defaults converge.** A leaf value is :math:`-\sum g / (\sum h + \lambda)` with LightGBM's
``lambda_l2=0`` and ``max_delta_step=0``. With those defaults and the others
(``learning_rate=0.1``, ``num_leaves=31``), 100 rounds of the focal objectives (gamma 2;
alpha 0.25 binary) on 2,000 rows with 1, 2.5 and 5 % positives, and on 10 classes with
frequencies falling as :math:`0.6^k`, lowered the training focal loss 20- to 480-fold from
margin 0 and from ``prior_margin``, in both APIs, with every margin within :math:`\pm 8.5`
(tested). ``hessian="exact"`` keeps the exact Hessian, floored at ``min_hessian``, which is tiny
for well-classified rows: from ``prior_margin`` the same binary runs diverged (margins of 2,400
to 30,000, and a training focal loss of 0.01-0.03 at the start and 5 to 48 at the end). With it
set ``lambda_l2=1`` (``reg_lambda`` in ``LGBMClassifier``) or ``max_delta_step=1``; an exact
objective with ``gamma > 0`` that LightGBM calls with neither set warns (a ``UserWarning``, once
per objective).

**What to set.** ``metric="None"`` in the params, so that the focal metric is the one early
stopping watches. A custom objective gets no ``boost_from_average``: pass
``init_score=prior_margin(y)`` (one per row, or :math:`(N, K)`) to the ``Dataset`` or ``fit``.
Predictions are raw margins then: ``predict(X, raw_score=True)`` and
:func:`focalkit.gbdt.predict_proba` (``LGBMClassifier``'s ``predict_proba`` returns raw scores
too, with a warning, under a custom objective); add the ``init_score`` back, as LightGBM does
not store it in the model.

Example:
    >>> import lightgbm as lgb, numpy as np
    >>> from focalkit.gbdt import prior_margin, predict_proba
    >>> from focalkit.lightgbm import binary_focal_metric, binary_focal_objective
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 3)); y = (X[:, 0] + rng.normal(size=400) > 1.5).astype(int)
    >>> prior = prior_margin(y)
    >>> train_set = lgb.Dataset(X, label=y, init_score=np.full(400, prior))
    >>> params = {"objective": binary_focal_objective(gamma=2.0), "metric": "None",
    ...           "num_leaves": 4, "num_threads": 1, "verbose": -1}
    >>> log = {}
    >>> booster = lgb.train(params, train_set, 20, valid_sets=[train_set], valid_names=["train"],
    ...                     feval=binary_focal_metric(gamma=2.0),
    ...                     callbacks=[lgb.record_evaluation(log)])
    >>> losses = log["train"]["focal_loss"]
    >>> len(losses), losses[-1] < losses[0]
    (20, True)
    >>> proba = predict_proba(booster.predict(X, raw_score=True) + prior)  # P(y = 1)
"""

from __future__ import annotations

import sys
import warnings
from types import FrameType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from focalkit import _gbdt_adapters
from focalkit._gbdt_adapters import METRIC_NAME, caller_locals, probabilities_not_margins, unpack
from focalkit.gbdt import Hessian, SoftmaxAlpha

try:
    import lightgbm as lgb
except ModuleNotFoundError as error:  # pragma: no cover - depends on the environment
    if error.name == "lightgbm":
        raise ImportError(
            'focalkit.lightgbm needs LightGBM: pip install "focalkit[lightgbm]"'
        ) from error
    raise

__all__ = [
    "binary_focal_metric",
    "binary_focal_objective",
    "softmax_focal_metric",
    "softmax_focal_objective",
]


# LightGBM's names for its objective parameter (lgb.train writes the first; a Booster built by
# hand keeps what it was given).
OBJECTIVE_ALIASES = ("objective", "objective_type", "app", "application", "loss")


# LightGBM's names for the two parameters that bound the leaves of a focal objective.
LEAF_BOUNDS = (
    ("lambda_l2", "reg_lambda", "lambda", "l2_regularization"),
    ("max_delta_step", "max_tree_output", "max_leaf_output"),
)


class FocalObjective(_gbdt_adapters.Objective):
    """A focal objective for ``lgb.train`` params and ``LGBMClassifier(objective=...)``.

    Built by :func:`binary_focal_objective` and :func:`softmax_focal_objective`; returns
    ``(grad, hess)`` as float64 arrays of the predictions' shape. Its three parameters tell the
    scikit-learn API to pass sample weights. With ``hessian="exact"`` and ``gamma > 0``, the
    first time a ``Booster`` whose params set neither ``lambda_l2`` nor ``max_delta_step`` above
    0 calls it, it warns that the training may diverge.
    """

    _warned = False  # set on the instance when it has warned

    @staticmethod
    def multiclass_hessian_scale(num_class: int) -> float:
        return num_class / (num_class - 1.0)  # multiclass's Hessian is K / (K - 1) p (1 - p)

    def __call__(
        self, y_true_or_preds: Any, y_pred_or_train_set: Any, weight: ArrayLike | None = None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        preds, labels, weight, _ = unpack(y_true_or_preds, y_pred_or_train_set, weight, lgb.Dataset)
        if self.gamma > 0 and self.hessian == "exact" and not self._warned:
            self._warn_if_leaves_unbounded(sys._getframe(1))
        return self.grad_hess(preds, labels, weight)

    def _warn_if_leaves_unbounded(self, caller: FrameType | None) -> None:
        r"""Warn if the ``Booster`` training with this objective does not bound its leaf values.

        The exact focal Hessian is tiny for well-classified rows, so without L2 regularisation
        or a cap on leaf outputs a Newton leaf value :math:`-\sum g / \sum h` can be huge. The
        default ``hessian="bounded"`` keeps every row's curvature at least cross-entropy's.
        """
        training = caller_locals(caller, lgb.Booster)
        if training is None:
            return
        params = training["self"].params
        if any(_positive(params.get(name)) for names in LEAF_BOUNDS for name in names):
            return
        self._warned = True
        warnings.warn(
            f"{self.where}: LightGBM is training this focal objective (gamma={self.gamma}, "
            "hessian='exact') with lambda_l2=0 and max_delta_step=0, its defaults, with which it "
            "can diverge: the exact focal Hessian is tiny for well-classified rows, so leaf values "
            "-sum(g) / sum(h) overshoot (margins in the hundreds or thousands after one round on "
            "imbalanced data). Use the default hessian='bounded', or set lambda_l2=1 (reg_lambda "
            "in LGBMClassifier) or max_delta_step=1",
            UserWarning,
            stacklevel=3,
        )


class FocalMetric(_gbdt_adapters.Metric):
    """The mean focal loss as ``("focal_loss", value, False)``, for ``feval=`` and ``eval_metric=``.

    Built by :func:`binary_focal_metric` and :func:`softmax_focal_metric`. Weighted by the
    evaluation set's sample weights where it has them. Reads margins, which LightGBM passes
    when the objective is a callable; called by a ``Booster`` with a built-in objective, which
    passes probabilities, it raises a ``ValueError``.
    """

    def __call__(
        self, y_true_or_preds: Any, y_pred_or_dataset: Any, weight: ArrayLike | None = None
    ) -> tuple[str, float, bool]:
        preds, labels, weight, _ = unpack(y_true_or_preds, y_pred_or_dataset, weight, lgb.Dataset)
        self._check_margins(sys._getframe(1))
        return METRIC_NAME, self.mean_loss(preds, labels, weight), False

    def _check_margins(self, caller: FrameType | None) -> None:
        """Raise if the ``Booster`` evaluating this metric has a built-in objective.

        LightGBM passes a custom metric its predictions after the objective's link function
        unless the objective is custom (``"none"`` in the booster's params, where ``lgb.train``
        puts it for a callable); no objective at all means ``"regression"``.
        """
        evaluation = caller_locals(caller, lgb.Booster)
        if evaluation is None:
            return
        params = evaluation["self"].params
        objective = next(
            (params[k] for k in OBJECTIVE_ALIASES if params.get(k) is not None), "regression"
        )
        if not callable(objective) and str(objective).lower() not in ("none", "custom"):
            raise ValueError(probabilities_not_margins(self.where, "LightGBM", str(objective)))


def _positive(value: object) -> bool:
    """Whether a LightGBM parameter's value is a number above 0 (parameters may be strings)."""
    try:
        return float(value) > 0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def binary_focal_objective(
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    *,
    hessian: Hessian = "bounded",
    min_hessian: float = 1e-6,
) -> FocalObjective:
    r"""Binary focal objective: :func:`focalkit.gbdt.binary_focal_grad_hess` for LightGBM.

    ``grad = weight * g`` and ``hess = weight * max(h, min_hessian)``, with :math:`g` the exact
    derivative of ``sigmoid_focal_loss`` with respect to the margin and, by default,
    :math:`h = \max(h_{\text{exact}}, \alpha_t p (1 - p))`: the exact curvature or
    cross-entropy's, whichever is larger, which converges with LightGBM's default parameters
    (the module docstring gives the figures). At ``gamma=0`` it is the exact Hessian, and with
    ``alpha=None`` the objective trains what the ``binary`` objective trains.

    Args:
        gamma: Focusing parameter, ``gamma >= 0``. Default: 2.
        alpha: Weight of positives in ``[0, 1]`` (``1 - alpha`` for negatives), or ``None``.
            Default: 0.25.
        hessian: ``"bounded"`` (default), the curvature above, or ``"exact"``,
            :math:`h_{\text{exact}}` (with it, set ``lambda_l2`` or ``max_delta_step``).
        min_hessian: Floor of the unweighted Hessian. Default: ``1e-6``.

    Example:
        >>> import numpy as np
        >>> from focalkit.lightgbm import binary_focal_objective
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
    r"""Multi-class focal objective for LightGBM, with ``multiclass``'s Hessian convention.

    ``grad = weight * g`` and ``hess = K / (K - 1) * weight * max(h, min_hessian)`` with
    :math:`g` the exact gradient of ``softmax_focal_loss``
    (:func:`focalkit.gbdt.softmax_focal_grad_hess`) and, by default,
    :math:`h_j = \max(h_{\text{exact}, j}, \alpha_t p_j (1 - p_j))`, as for the binary
    objective. The factor :math:`K / (K - 1)` is LightGBM's ``multiclass``, so at ``gamma=0,
    alpha=None`` this trains what it trains. Set ``num_class`` in ``lgb.train``'s params too;
    ``LGBMClassifier`` sets it.

    Args:
        num_class: Number of classes :math:`K \ge 2`; predictions must have K columns.
        gamma: Focusing parameter, ``gamma >= 0``. Default: 2.
        alpha: ``None``, a number ``>= 0``, or one value ``>= 0`` per class (e.g.
            :func:`focalkit.class_weights`). Default: ``None``.
        hessian: ``"bounded"`` (default) or ``"exact"``, as for the binary objective.
        min_hessian: Floor of the unweighted, unscaled Hessian. Default: ``1e-6``.

    Example:
        >>> import numpy as np
        >>> from focalkit.lightgbm import softmax_focal_objective
        >>> objective = softmax_focal_objective(3, gamma=0.0)
        >>> grad, hess = objective(np.array([0]), np.zeros((1, 3)))
        >>> print(grad.round(4), hess.round(4))  # p - onehot, 3/2 p (1 - p)
        [[-0.6667  0.3333  0.3333]] [[0.3333 0.3333 0.3333]]
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
        >>> from focalkit.lightgbm import binary_focal_metric
        >>> name, value, higher_is_better = binary_focal_metric()(
        ...     np.array([1, 0, 1]), np.array([-3.0, 0.0, 2.0]), None)
        >>> name, round(value, 6), higher_is_better
        ('focal_loss', 0.273995, False)
    """
    return FocalMetric("binary_focal_metric", None, gamma, alpha)


def softmax_focal_metric(
    num_class: int, gamma: float = 2.0, alpha: SoftmaxAlpha = None
) -> FocalMetric:
    """The mean softmax focal loss of margins, named ``"focal_loss"``; arguments as the objective's.

    Example:
        >>> import numpy as np
        >>> from focalkit.lightgbm import softmax_focal_metric
        >>> margins = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
        >>> name, value, _ = softmax_focal_metric(3)(np.array([0, 1]), margins, None)
        >>> round(value, 4)
        0.8569
    """
    return FocalMetric("softmax_focal_metric", num_class, gamma, alpha)
