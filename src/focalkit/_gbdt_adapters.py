"""The focal objective and metric that :mod:`focalkit.xgboost` and :mod:`focalkit.lightgbm` adapt.

NumPy only, like :mod:`focalkit.gbdt`, whose functions do the math. :class:`Objective` and
:class:`Metric` hold a configuration checked once, when built (not at round 40 000), and evaluate
it on ``(preds, labels, weight)``. Each adapter subclasses them with its library's call
signature (the train API's ``(preds, data)`` and the scikit-learn API's ``(y_true, y_pred,
weight)``), its multi-class Hessian convention and its metric's output layout.
"""

from __future__ import annotations

from types import FrameType
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from focalkit._core import validation
from focalkit.gbdt import (
    Hessian,
    binary_focal_grad_hess,
    binary_focal_value,
    check_binary_alpha,
    check_hessian,
    check_min_hessian,
    check_num_class,
    check_softmax_alpha,
    softmax_focal_grad_hess,
    softmax_focal_value,
)

Array = NDArray[np.float64]
METRIC_NAME = "focal_loss"


def unpack(
    first: Any, second: Any, weight: ArrayLike | None, data_type: type
) -> tuple[ArrayLike, ArrayLike, ArrayLike | None, Any]:
    """``(preds, labels, weight, data)`` from either API's arguments.

    The train APIs call ``(preds, data)`` with a ``data_type`` (``DMatrix``, ``Dataset``) holding
    labels and sample weights; the scikit-learn APIs call ``(y_true, y_pred, weight)``, and
    ``data`` is then ``None``. An empty weight array (``DMatrix.get_weight()`` without weights)
    means no weights.
    """
    data: Any
    if isinstance(second, data_type):
        data = second
        preds, labels, weight = first, data.get_label(), data.get_weight()
    else:
        data, preds, labels = None, second, first
    if weight is not None and np.size(weight) == 0:
        weight = None
    return preds, labels, weight, data


def caller_locals(frame: FrameType | None, owner: type, depth: int = 4) -> dict[str, Any] | None:
    """The local variables of the first of ``frame`` and its callers whose ``self`` is an ``owner``.

    Neither library hands a custom objective or metric the model that calls it, yet the model
    says what the predictions are (margins or probabilities) and how it trains. It is the
    ``self`` of a frame one or two calls out (``Booster.eval_set`` in XGBoost,
    ``Booster.update`` and ``Booster.__inner_eval`` in LightGBM, under either API). ``None``
    where no method of ``owner`` is among the ``depth`` nearest frames, as when a user calls the
    metric directly.
    """
    try:
        for _ in range(depth):
            if frame is None:
                return None
            if isinstance(frame.f_locals.get("self"), owner):
                return dict(frame.f_locals)
            frame = frame.f_back
        return None
    finally:
        del frame  # no reference cycle through the frames


def probabilities_not_margins(where: str, library: str, objective: str) -> str:
    """The message for a focal metric that a library evaluates on transformed predictions."""
    return (
        f"{where}: {library} passes a custom metric probabilities, not margins, when the objective "
        f"is one of its own (here {objective!r}); the focal metric reads margins and would report "
        "a wrong loss. Train with focalkit's focal objective, or score the model's margins with "
        "focalkit.gbdt.binary_focal_value or softmax_focal_value"
    )


_Loss = TypeVar("_Loss", bound="_FocalLoss")


class _FocalLoss:
    """A focal loss's configuration, checked when built; ``num_class=None`` is the binary loss."""

    def __init__(self, factory: str, num_class: object, gamma: object, alpha: object) -> None:
        self._factory = factory
        self.where = f"{factory}()"
        validation.check_gamma(gamma, self.where)
        self.gamma = float(gamma)  # type: ignore[arg-type]
        self.num_class = None if num_class is None else check_num_class(num_class, self.where)
        self.alpha: float | Array | None
        if self.num_class is None:
            self.alpha = check_binary_alpha(alpha, self.where)
        else:
            self.alpha = check_softmax_alpha(alpha, self.num_class, self.where)

    def __copy__(self: _Loss) -> _Loss:
        return self

    def __deepcopy__(self: _Loss, memo: dict[int, Any]) -> _Loss:
        # lgb.train and scikit-learn's clone deep-copy their parameters. The configuration is
        # never changed after the checks, so a copy can be the object itself, which keeps what
        # the LightGBM objective remembers (that it has warned) across trainings.
        return self

    def __repr__(self) -> str:
        alpha = self.alpha.tolist() if isinstance(self.alpha, np.ndarray) else self.alpha
        parts = [] if self.num_class is None else [f"num_class={self.num_class}"]
        parts += [f"gamma={self.gamma}", f"alpha={alpha}"]
        return f"{self._factory}({', '.join(parts)})"

    def margins(self, preds: ArrayLike) -> Array:
        """The library's predictions as margins of the shape this loss needs, else a ValueError."""
        array = np.asarray(preds, dtype=np.float64)
        if self.num_class is None:
            if array.ndim == 2 and array.shape[1] == 1:
                array = array[:, 0]
            if array.ndim != 1:
                raise ValueError(
                    f"{self.where}: expected predictions of shape (N,) for the binary objective, "
                    f"got {array.shape}; for more than two classes use softmax_focal_objective"
                )
        elif array.ndim != 2 or array.shape[1] != self.num_class:
            raise ValueError(
                f"{self.where}: expected predictions of shape (N, num_class={self.num_class}), "
                f"got {array.shape}; check num_class against the library's num_class parameter"
            )
        return array


class Objective(_FocalLoss):
    """A focal objective: ``(grad, hess)`` of the predictions' shape, float64.

    ``grad = weight * g`` and ``hess = scale * weight * max(h, min_hessian)``, with ``g`` and
    ``h`` from :func:`focalkit.gbdt.binary_focal_grad_hess` or
    :func:`focalkit.gbdt.softmax_focal_grad_hess` (``hessian="bounded"`` or ``"exact"``) and
    ``scale`` the library's multi-class Hessian convention, :meth:`multiclass_hessian_scale`
    (1 for the binary loss).
    """

    def __init__(
        self,
        factory: str,
        num_class: object,
        gamma: object,
        alpha: object,
        *,
        hessian: object,
        min_hessian: object,
    ) -> None:
        super().__init__(factory, num_class, gamma, alpha)
        self.hessian: Hessian = "bounded" if check_hessian(hessian, self.where) else "exact"
        self.min_hessian = check_min_hessian(min_hessian, self.where)
        classes = self.num_class
        self.hessian_scale = 1.0 if classes is None else self.multiclass_hessian_scale(classes)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, hessian={self.hessian!r})"

    @staticmethod
    def multiclass_hessian_scale(num_class: int) -> float:
        """The factor of the library's built-in softmax Hessian over :math:`p (1 - p)`."""
        return 1.0

    def grad_hess(
        self, preds: ArrayLike, labels: ArrayLike, weight: ArrayLike | None
    ) -> tuple[Array, Array]:
        margins = self.margins(preds)
        if self.num_class is None:
            return binary_focal_grad_hess(
                margins,
                labels,
                gamma=self.gamma,
                alpha=self.alpha,  # type: ignore[arg-type]
                weight=weight,
                min_hessian=self.min_hessian,
                hessian=self.hessian,
            )
        grad, hess = softmax_focal_grad_hess(
            margins,
            labels,
            gamma=self.gamma,
            alpha=self.alpha,
            weight=weight,
            min_hessian=self.min_hessian,
            hessian=self.hessian,
        )
        if self.hessian_scale != 1.0:
            hess *= self.hessian_scale
        return grad, hess


class Metric(_FocalLoss):
    """The mean focal loss of margins, ``sum(w l) / sum(w)`` (the plain mean without weights)."""

    __name__ = METRIC_NAME  # XGBoost's scikit-learn API names a metric after it

    def losses(self, preds: ArrayLike, labels: ArrayLike) -> Array:
        """The unweighted focal loss of each row."""
        margins = self.margins(preds)
        if self.num_class is None:
            return binary_focal_value(
                margins,
                labels,
                gamma=self.gamma,
                alpha=self.alpha,  # type: ignore[arg-type]
            )
        return softmax_focal_value(margins, labels, gamma=self.gamma, alpha=self.alpha)

    def _weight(self, weight: ArrayLike, losses: Array) -> Array:
        w = np.asarray(weight, dtype=np.float64)
        if w.shape != losses.shape:
            raise ValueError(
                f"{self.where}: expected weight of shape {losses.shape}, one per row, got {w.shape}"
            )
        return w

    def mean_loss(self, preds: ArrayLike, labels: ArrayLike, weight: ArrayLike | None) -> float:
        losses = self.losses(preds, labels)
        if weight is None:
            return float(np.mean(losses))
        w = self._weight(weight, losses)
        return float(np.sum(losses * w) / np.sum(w))

    def sums(
        self, preds: ArrayLike, labels: ArrayLike, weight: ArrayLike | None
    ) -> tuple[float, float]:
        """``(sum(w l), sum(w))`` (``w = 1`` without weights): the mean of parts of the data is
        the ratio of their added sums."""
        losses = self.losses(preds, labels)
        if weight is None:
            return float(np.sum(losses)), float(losses.shape[0])
        w = self._weight(weight, losses)
        return float(np.sum(losses * w)), float(np.sum(w))
