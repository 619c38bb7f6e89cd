r"""Focal-loss gradients and Hessians with respect to margins, for gradient-boosted trees.

NumPy only: the XGBoost and LightGBM adapters (``focalkit.xgboost``, ``focalkit.lightgbm``) call
these. The loss is focalkit's own: ``sigmoid_focal_loss`` for the binary objective and
``softmax_focal_loss`` for the multi-class one, differentiated by hand in a stable form, in
float64, and never writing into the caller's arrays.

**Binary.** With margin :math:`x`, label :math:`y \in \{0, 1\}`, the signed margin
:math:`z = x` for :math:`y = 1` and :math:`z = -x` for :math:`y = 0`, :math:`p = \sigma(z)`
(that is :math:`p_t`), :math:`q = 1 - p` and :math:`L = -\log p`:

.. math::
    \ell = \alpha_t q^\gamma L, \qquad
    \frac{\partial \ell}{\partial z} = -\alpha_t q^\gamma (\gamma p L + q), \qquad
    \frac{\partial^2 \ell}{\partial z^2}
        = \alpha_t\, p\, q^\gamma \left(\gamma^2 p L - \gamma q L + (2\gamma + 1) q\right),

and :math:`g = \pm \partial\ell/\partial z`, :math:`h = \partial^2\ell/\partial z^2`. Every factor
is a power of :math:`q = e^{-\mathrm{softplus}(z)}` or a softplus, finite for any margin and any
:math:`\gamma \ge 0`.

**Multi-class.** With :math:`p = \operatorname{softmax}(z)`, the label's :math:`u = 1 - p_y`
(from a log-sum-exp over the other classes, so it is exact where :math:`p_y` rounds to 1),
:math:`s = \log p_y`, :math:`r = s / u` (:math:`\to -1` as :math:`u \to 0`) and
:math:`d_j = [j = y] - p_j`:

.. math::
    g_j = \alpha_y f'(s)\, d_j, \qquad
    h_j = \alpha_y \left(f''(s)\, d_j^2 - f'(s)\, p_j (1 - p_j)\right),

    f'(s) = u^\gamma (\gamma p_y r - 1), \qquad
    f''(s)\, d_j^2 = \gamma\, p_y\, u^{\gamma + 1} (2 + r (1 - \gamma p_y)) (d_j / u)^2,

where :math:`d_j / u` is 1 for the label and :math:`-e^{z_j - \mathrm{lse}_{k \ne y} z_k}`
otherwise: bounded, whatever :math:`u`.

**Hessian floor.** The focal loss is not convex in the margin: its second derivative is negative
for confident mistakes when :math:`\gamma > 0`, and near zero for confident hits. Trees divide
by the summed Hessian of a leaf, so ``hess`` is ``weight * max(h, min_hessian)``, with ``h`` the
exact unweighted second derivative; ``grad`` is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from focalkit._core import validation

__all__ = [
    "binary_focal_grad_hess",
    "binary_focal_value",
    "predict_proba",
    "prior_margin",
    "softmax_focal_grad_hess",
    "softmax_focal_value",
]

Array = NDArray[np.float64]


def _margins(margin: ArrayLike, name: str, ndim: int, where: str) -> Array:
    array = np.asarray(margin)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{where}: {name} must hold numbers, got dtype {array.dtype}")
    if array.ndim != ndim:
        expected = "(N,)" if ndim == 1 else "(N, K)"
        raise ValueError(f"{where}: {name} must have shape {expected}, got {array.shape}")
    # Every operation below makes new arrays: the caller's array is never written.
    return np.asarray(array, dtype=np.float64)


def _labels(
    label: ArrayLike, rows: int, num_classes: int, where: str, *, binary: bool = False
) -> NDArray[np.int64]:
    array = np.asarray(label)
    if array.ndim != 1 or array.shape[0] != rows:
        raise ValueError(f"{where}: label must have shape ({rows},), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        whole = np.issubdtype(array.dtype, np.floating) and bool(np.all(array == np.round(array)))
        if not whole:
            raise ValueError(f"{where}: label must hold integer class labels, got {array[:5]}...")
    labels = array.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        expected = "{0, 1}" if binary else f"[0, {num_classes})"
        raise ValueError(f"{where}: label values must be in {expected}, got {bad}")
    return labels


def _row_weight(weight: ArrayLike | None, rows: int, where: str) -> Array:
    if weight is None:
        return np.ones(rows)
    array = np.asarray(weight, dtype=np.float64)
    if array.shape != (rows,):
        raise ValueError(f"{where}: weight must have shape ({rows},), got {array.shape}")
    return array


def _check_settings(gamma: float, min_hessian: float, where: str) -> None:
    validation.check_gamma(gamma, where)
    validation.check_nonnegative("min_hessian", min_hessian, where)


def _softplus(x: Array) -> Array:
    return np.logaddexp(0.0, x)


def _binary_parts(
    margin: ArrayLike, label: ArrayLike, gamma: float, alpha: float | None, where: str
) -> tuple[Array, Array, Array, Array, Array]:
    """Sign, alpha_t, p = p_t, q = 1 - p_t, q^gamma and L = -log p_t, per row."""
    x = _margins(margin, "margin", 1, where)
    y = _labels(label, x.shape[0], 2, where, binary=True)
    if alpha is not None:
        validation.check_unit_interval("alpha", alpha, where)
    sign = 2.0 * y - 1.0
    z = sign * x
    # One exp and one log1p for both softplus terms: softplus(+-z) = max(+-z, 0) + log1p(e^-|z|).
    # (Arithmetic rather than np.where, which is several times slower per element.)
    log1p_t = np.log1p(np.exp(-np.abs(z)))
    loss_ce = np.maximum(-z, 0.0) + log1p_t  # -log p_t = softplus(-z)
    log_q = -(np.maximum(z, 0.0) + log1p_t)  # log(1 - p_t) = -softplus(z)
    p, q = np.exp(-loss_ce), np.exp(log_q)
    power = np.ones_like(z) if gamma == 0 else (q * q if gamma == 2 else np.exp(gamma * log_q))
    if alpha is not None:  # alpha_t = (1 - alpha) + (2 alpha - 1) y
        power *= (1.0 - alpha) + (2.0 * alpha - 1.0) * y
    return np.asarray(sign, dtype=np.float64), power, p, q, loss_ce


def binary_focal_value(
    margin: ArrayLike,
    label: ArrayLike,
    *,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    weight: ArrayLike | None = None,
    min_hessian: float = 1e-6,
) -> Array:
    """Per-row ``sigmoid_focal_loss`` of raw margins ``(N,)``, times ``weight`` if given.

    Example:
        >>> binary_focal_value([2.0, -1.0], [1, 1], gamma=2.0, alpha=None).round(4)
        array([0.0018, 0.7019])
    """
    where = "binary_focal_value()"
    _check_settings(gamma, min_hessian, where)
    _, scale, _, _, loss_ce = _binary_parts(margin, label, gamma, alpha, where)
    return scale * loss_ce * _row_weight(weight, loss_ce.shape[0], where)


def binary_focal_grad_hess(
    margin: ArrayLike,
    label: ArrayLike,
    *,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    weight: ArrayLike | None = None,
    min_hessian: float = 1e-6,
) -> tuple[Array, Array]:
    r"""Gradient and floored second derivative of ``sigmoid_focal_loss`` in the margin.

    See the module docstring for :math:`g` and :math:`h`. ``hess`` is
    ``weight * max(h, min_hessian)``: the exact :math:`h` is negative for confident mistakes
    when ``gamma > 0``, and trees need positive Hessians.

    Args:
        margin: Raw scores, shape ``(N,)``.
        label: Labels in ``{0, 1}``, shape ``(N,)``.
        gamma: Focusing parameter ``>= 0``.
        alpha: Balance of positives in ``[0, 1]`` (``1 - alpha`` for negatives), or ``None``.
        weight: Per-row weights, shape ``(N,)``, or ``None``.
        min_hessian: The Hessian's floor, ``>= 0``.

    Returns:
        ``(grad, hess)``, float64 arrays of shape ``(N,)``.

    Example:
        >>> grad, hess = binary_focal_grad_hess([0.0, 3.0], [1, 0], gamma=0.0, alpha=None)
        >>> grad.round(4), hess.round(4)  # gamma=0: p - y and p (1 - p), logistic loss
        (array([-0.5   ,  0.9526]), array([0.25  , 0.0452]))
    """
    where = "binary_focal_grad_hess()"
    _check_settings(gamma, min_hessian, where)
    sign, scale, p, q, loss_ce = _binary_parts(margin, label, gamma, alpha, where)
    if gamma == 0:  # the logistic loss: g = -sign alpha_t q, h = alpha_t p q
        grad, hess = -sign * scale * q, scale * p * q
    else:
        gamma_loss = gamma * loss_ce
        grad = -sign * scale * (gamma_loss * p + q)
        # h = alpha_t p q^gamma (gamma L (gamma p - q) + (2 gamma + 1) q)
        hess = scale * p * (gamma_loss * (gamma * p - q) + (2 * gamma + 1) * q)
    np.maximum(hess, min_hessian, out=hess)
    if weight is None:
        return grad, hess
    weight_array = _row_weight(weight, p.shape[0], where)
    return grad * weight_array, hess * weight_array


def _class_alpha(alpha: float | Sequence[float] | None, num_classes: int, where: str) -> Array:
    if alpha is None:
        return np.ones(num_classes)
    if validation.is_number(alpha):
        validation.check_nonnegative("alpha", alpha, where)
        return np.full(num_classes, float(alpha))  # type: ignore[arg-type]
    array = np.asarray(alpha, dtype=np.float64)
    validation.check_per_class_length("alpha", array.shape, num_classes, where)
    if np.any(array < 0):
        raise ValueError(validation.negative_values(where, "alpha"))
    return array


def _softmax_parts(
    margins: ArrayLike,
    label: ArrayLike,
    gamma: float,
    alpha: float | Sequence[float] | None,
    where: str,
) -> tuple[Array, NDArray[np.int64], Array, Array, Array, Array, Array]:
    """alpha_y, labels, p (N, K), u = 1 - p_y, s = log p_y, r = s / u, exp(z - lse_others)."""
    z = _margins(margins, "margins", 2, where)
    rows, num_classes = z.shape
    y = _labels(label, rows, num_classes, where)
    alpha_y = _class_alpha(alpha, num_classes, where)[y]
    index = np.arange(rows)
    # Row reductions over a short class axis: a loop over columns and a matrix-vector product are
    # several times faster in NumPy than max/sum along axis 1.
    shift = z[:, 0].copy()
    for column in range(1, num_classes):
        np.maximum(shift, z[:, column], out=shift)
    ones = np.ones(num_classes)
    e = np.exp(z - shift[:, None])
    total = e @ ones
    lse = shift + np.log(total)
    p = e / total[:, None]
    e[index, y] = 0.0
    others = e @ ones  # sum over the other classes, without cancellation
    u = others / total  # 1 - p_y, exact where p_y rounds to 1
    # p_j / u = e_j / others for j != y (0 where every other class underflowed: u = 0 there)
    ratio_to_u = e / np.where(others > 0, others, np.inf)[:, None]
    z_y = z[index, y]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(u < 0.5, np.log1p(-np.minimum(u, 0.5)), z_y - lse)  # log p_y, exact forms
        r = np.where(u > 0, s / np.where(u > 0, u, 1.0), -1.0)
    return alpha_y, y, p, u, s, r, ratio_to_u


def softmax_focal_value(
    margins: ArrayLike,
    label: ArrayLike,
    *,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    weight: ArrayLike | None = None,
    min_hessian: float = 1e-6,
) -> Array:
    """Per-row ``softmax_focal_loss`` of raw margins ``(N, K)``, times ``weight`` if given.

    Example:
        >>> softmax_focal_value([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], [0, 1]).round(4)
        array([0.0111, 1.7026])
    """
    where = "softmax_focal_value()"
    _check_settings(gamma, min_hessian, where)
    alpha_y, _, _, u, s, _, _ = _softmax_parts(margins, label, gamma, alpha, where)
    return -alpha_y * u**gamma * s * _row_weight(weight, u.shape[0], where)


def softmax_focal_grad_hess(
    margins: ArrayLike,
    label: ArrayLike,
    *,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    weight: ArrayLike | None = None,
    min_hessian: float = 1e-6,
) -> tuple[Array, Array]:
    r"""Gradient and floored Hessian diagonal of ``softmax_focal_loss`` in each class margin.

    See the module docstring for :math:`g_j` and :math:`h_j`. ``hess`` is
    ``weight * max(h, min_hessian)`` (the exact diagonal can be negative or near zero; trees need
    it positive). The adapters in ``focalkit.xgboost`` and ``focalkit.lightgbm`` rescale it to
    their library's convention.

    Args:
        margins: Raw scores, shape ``(N, K)``.
        label: Class labels in ``[0, K)``, shape ``(N,)``.
        gamma: Focusing parameter ``>= 0``.
        alpha: ``None``, a float scaling every row, or one value per class (for example
            ``focalkit.class_weights(counts)``).
        weight: Per-row weights, shape ``(N,)``, or ``None``.
        min_hessian: The Hessian's floor, ``>= 0``.

    Returns:
        ``(grad, hess)``, float64 arrays of shape ``(N, K)``.

    Example:
        >>> grad, hess = softmax_focal_grad_hess([[0.0, 0.0]], [0], gamma=0.0)
        >>> grad, hess  # gamma=0: p - onehot and p (1 - p), cross-entropy
        (array([[-0.5,  0.5]]), array([[0.25, 0.25]]))
    """
    where = "softmax_focal_grad_hess()"
    _check_settings(gamma, min_hessian, where)
    alpha_y, y, p, u, _, r, ratio_to_u = _softmax_parts(margins, label, gamma, alpha, where)
    rows = np.arange(p.shape[0])
    p_y = p[rows, y]
    power = u**gamma
    slope = power * (gamma * p_y * r - 1.0)  # f'(s)
    d = -p
    d[rows, y] += 1.0
    d_over_u = -ratio_to_u
    d_over_u[rows, y] = 1.0
    curvature = gamma * p_y * power * u * (2.0 + r * (1.0 - gamma * p_y))  # f''(s) u^2
    grad = (alpha_y * slope)[:, None] * d
    hess = alpha_y[:, None] * (curvature[:, None] * d_over_u**2 - slope[:, None] * p * (1.0 - p))
    weight_array = _row_weight(weight, p.shape[0], where)[:, None]
    return grad * weight_array, np.maximum(hess, min_hessian) * weight_array


def prior_margin(labels: ArrayLike, num_class: int | None = None) -> float | Array:
    """The margin of the label frequencies, for ``base_margin`` / ``init_score``.

    Binary (``num_class=None``): the log-odds of the positive rate, a float. Multi-class: the log
    of each class's frequency, shape ``(K,)``. A class with no samples has no finite margin and
    raises.

    Example:
        >>> round(prior_margin([0, 0, 0, 1]), 4)
        -1.0986
        >>> prior_margin([0, 1, 1, 2], num_class=3).round(4)
        array([-1.3863, -0.6931, -1.3863])
    """
    where = "prior_margin()"
    array = np.asarray(labels)
    num_classes = 2 if num_class is None else num_class
    y = _labels(array.reshape(-1), array.size, num_classes, where, binary=num_class is None)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    if np.any(counts == 0):
        empty = int(np.flatnonzero(counts == 0)[0])
        raise ValueError(f"{where}: class {empty} has no samples, so its prior margin is infinite")
    if num_class is None:
        return float(np.log(counts[1] / counts[0]))
    return np.asarray(np.log(counts / counts.sum()), dtype=np.float64)


def predict_proba(margins: ArrayLike) -> Array:
    """Probabilities from raw margins: the sigmoid of ``(N,)``, the softmax of ``(N, K)``.

    Example:
        >>> predict_proba([0.0, 2.0]).round(4)
        array([0.5   , 0.8808])
    """
    z = np.asarray(margins, dtype=np.float64)
    if z.ndim == 1:
        return np.asarray(np.exp(-_softplus(-z)), dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"predict_proba(): margins must have shape (N,) or (N, K), got {z.shape}")
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)
