r"""Focal-loss gradients and Hessians with respect to margins, for gradient-boosted trees.

NumPy only: this module imports neither torch nor a boosting library. :mod:`focalkit.xgboost`
and :mod:`focalkit.lightgbm` adapt it to each library's calling conventions.

The losses are :func:`focalkit.sigmoid_focal_loss` (binary) and
:func:`focalkit.softmax_focal_loss` (multi-class) with the margin (raw score) as the logit. A
boosting round needs, per row, the derivative :math:`g` of the loss with respect to each margin
and the second derivative :math:`h`. Both are derived by hand (the docstrings give them) and
computed in log space, so they are finite and keep their relative precision at margins of
:math:`\pm 10^4` and for :math:`0 < \gamma < 1`, where autograd of the naive formula meets
:math:`0 \cdot \infty`. All results are float64; the caller's arrays are never written to.

**The Hessian the trees see.** A tree's leaf value is the Newton step
:math:`-\sum g / (\sum h + \lambda)` over its rows. Unlike cross-entropy, the focal loss is not
convex in the margin: with :math:`\gamma > 0` its exact second derivative is negative for badly
misclassified rows, and for confident correct rows it vanishes faster than the gradient (by a
factor :math:`(1 - p_t)^\gamma` more than cross-entropy's), so a leaf holding a few hard rows
among many easy ones divides a sizeable :math:`\sum g` by almost nothing. With LightGBM's
defaults (:math:`\lambda = 0`) that sent margins to :math:`10^3`-:math:`10^4` from the prior on
imbalanced data, and XGBoost's ``min_child_weight=1`` refused every split, since the exact
Hessians of a leaf summed below 1 (the adapters' docstrings give the figures). The gradient
alone fixes the minimum the trees move towards; a positive curvature only sets the step. So by
default (``hessian="bounded"``) the functions here return

.. math::
    h = \max\bigl(h_{\text{exact}},\ \alpha_t\, p (1 - p)\bigr),

the exact curvature or the (``alpha``-weighted) cross-entropy curvature, whichever is larger.
A row's step :math:`-g / h` is then never more than :math:`-g / (\alpha_t p (1 - p))`; for a
confident row that is :math:`(1 + \gamma) (1 - p_t)^\gamma` times cross-entropy's step,
shrinking as the row gets easier, where with the exact Hessian it stays at
:math:`1 / (1 + \gamma)` however easy the row. The maximum keeps the exact curvature where it
is the larger (up to 2.3 times cross-entropy's for :math:`\gamma = 2`, 4.4 times for
:math:`\gamma = 5`). At ``gamma=0``, :math:`h_{\text{exact}} = \alpha_t p (1 - p)`: the exact
Hessian, so the built-in objectives' trees are trained unchanged. ``hessian="exact"`` returns
:math:`h_{\text{exact}}`. Either way ``hess = weight * max(h, min_hessian)`` and
``grad = weight * g`` exactly. XGBoost's own objectives floor their Hessians the same way (at
``1e-16``).

References:
    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. arXiv:1708.02002
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

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

Array: TypeAlias = NDArray[np.float64]
SoftmaxAlpha: TypeAlias = float | Sequence[float] | NDArray[Any] | None
Hessian: TypeAlias = Literal["bounded", "exact"]
HESSIANS: tuple[str, ...] = ("bounded", "exact")


# ------------------------------------------------------------------------------ argument checks
# Shared with the adapters, which check their configuration when built, not at round 40 000.


def check_min_hessian(min_hessian: object, where: str) -> float:
    """``min_hessian`` as a float: a real number, not NaN (``-inf`` turns the floor off)."""
    if not validation.is_number(min_hessian):
        raise TypeError(f"{where}: min_hessian must be a real number, got {min_hessian!r}")
    value = float(min_hessian)  # type: ignore[arg-type]
    if math.isnan(value):
        raise ValueError(f"{where}: min_hessian must be a real number, got {min_hessian!r}")
    return value


def check_hessian(hessian: object, where: str) -> bool:
    """Whether ``hessian`` names the bounded convention; ``"exact"`` gives ``False``."""
    if not isinstance(hessian, str) or hessian not in HESSIANS:
        raise ValueError(
            f"{where}: hessian must be one of {', '.join(map(repr, HESSIANS))}, got {hessian!r}"
        )
    return hessian == "bounded"


def check_num_class(num_class: object, where: str) -> int:
    """``num_class`` as an int ``>= 2``."""
    if not isinstance(num_class, (int, np.integer)) or isinstance(num_class, bool):
        raise TypeError(f"{where}: num_class must be an int >= 2, got {num_class!r}")
    if num_class < 2:
        raise ValueError(f"{where}: num_class must be >= 2, got {num_class}")
    return int(num_class)


def check_binary_alpha(alpha: object, where: str) -> float | None:
    """``alpha`` of the binary loss: ``None`` or a number in ``[0, 1]``."""
    if alpha is None:
        return None
    validation.check_unit_interval("alpha", alpha, where)
    return float(alpha)  # type: ignore[arg-type]


def check_softmax_alpha(alpha: object, num_class: int, where: str) -> float | Array | None:
    """``alpha`` of the multi-class loss: ``None``, a number ``>= 0`` or one number per class.

    A number goes through :func:`~focalkit._core.validation.check_nonnegative`, a sequence or
    array through :func:`~focalkit._core.validation.as_number_array` (bools, ``None`` and strings
    are a ``TypeError``) and :func:`~focalkit._core.validation.check_per_class_length`; a
    negative value raises with :func:`~focalkit._core.validation.negative_values`' message, as
    the torch front-end's does. NaN passes through, to give NaN gradients.
    """
    if alpha is None:
        return None
    if validation.is_number(alpha):
        validation.check_nonnegative("alpha", alpha, where)
        return float(alpha)  # type: ignore[arg-type]
    values = validation.as_number_array(alpha, "alpha", where)
    if values.ndim == 0:
        validation.check_nonnegative("alpha", values.item(), where)
        return float(values)
    validation.check_per_class_length("alpha", values.shape, num_class, where)
    if np.any(values < 0):
        raise ValueError(validation.negative_values(where, "alpha"))
    checked: Array = np.array(values, dtype=np.float64)  # a copy: the caller's may change later
    return checked


def _margin_vector(margin: ArrayLike, where: str) -> Array:
    array = np.asarray(margin, dtype=np.float64)  # no copy for float64 input; never written to
    if array.ndim != 1:
        raise ValueError(f"{where}: margin must be 1-D of shape (N,), got shape {array.shape}")
    return array


def _margin_matrix(margins: ArrayLike, where: str) -> Array:
    array = np.asarray(margins, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(
            f"{where}: margins must be 2-D of shape (N, K) with K >= 2 classes, "
            f"got shape {array.shape}"
        )
    return array


def _label_array(label: ArrayLike, rows: int, margin_name: str, where: str) -> NDArray[Any]:
    array = np.asarray(label)
    if array.shape != (rows,):
        raise ValueError(
            f"{where}: expected label of shape ({rows},) for {margin_name} with {rows} rows, "
            f"got {array.shape}"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"{where}: label must be numeric, got dtype {array.dtype}")
    return array


def _binary_label(label: ArrayLike, rows: int, where: str) -> Array:
    """The labels as float64 0.0 and 1.0, after checking that every label is 0 or 1."""
    array = _label_array(label, rows, "margin", where)
    bad = ~((array == 1) | (array == 0))
    if np.any(bad):
        raise ValueError(f"{where}: label values must be 0 or 1, got {array[bad][0].item()!r}")
    return np.asarray(array, dtype=np.float64)


def _class_index(label: ArrayLike, rows: int, num_class: int, where: str) -> NDArray[np.intp]:
    """Integer class indices in ``[0, num_class)``, after checking them."""
    array = _label_array(label, rows, "margins", where)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        index = array.astype(np.intp)
        bad = (index < 0) | (index >= num_class)
    else:
        bad = ~((array >= 0) & (array < num_class) & (array == np.floor(array)))  # NaN is bad
        index = np.where(bad, 0, array).astype(np.intp)
    if np.any(bad):
        first = array[bad][0].item()
        raise ValueError(
            f"{where}: label values must be integers in [0, {num_class}), got {first!r}"
        )
    return index


def _weight_vector(weight: ArrayLike | None, rows: int, where: str) -> Array | None:
    if weight is None:
        return None
    array = np.asarray(weight, dtype=np.float64)
    if array.shape != (rows,):
        raise ValueError(
            f"{where}: expected weight of shape ({rows},), one per row, got {array.shape}"
        )
    return array


# ------------------------------------------------------------------------------ binary


_BLOCK_ROWS = 32768  # rows per block: 256 KiB float64 temporaries, reused while in cache


def _binary_terms(
    margin: Array, y: Array, gamma: float
) -> tuple[Array, Array, Array, Array | None]:
    r""":math:`p_t`, :math:`q = 1 - p_t`, :math:`-L = \log p_t` and :math:`q^\gamma`, in log space.

    With the signed margin :math:`u = (2y - 1) x`, :math:`p_t = \sigma(u)`, and from
    :math:`\lambda = \log(1 + e^{-|u|})` (nothing overflows):

    .. math::
        \log p_t = \min(u, 0) - \lambda, \qquad \log q = \min(-u, 0) - \lambda,

    both exact to a few ulps, so :math:`p_t = e^{\log p_t}`, :math:`q = e^{\log q}` and
    :math:`q^\gamma = e^{\gamma \log q}` keep their relative precision where they are tiny.
    The last is ``None`` for ``gamma == 0``.
    """
    u = np.multiply(y, 2.0)
    u -= 1.0
    u *= margin
    softplus = np.abs(u)
    np.negative(softplus, out=softplus)
    np.exp(softplus, out=softplus)
    np.log1p(softplus, out=softplus)  # lambda = log(1 + exp(-|u|))
    log_pt = np.minimum(u, 0.0)
    log_pt -= softplus
    log_q = np.negative(u, out=u)
    np.minimum(log_q, 0.0, out=log_q)
    log_q -= softplus
    p_t = np.exp(log_pt, out=softplus)
    one_minus_pt = np.exp(log_q)
    focal = None
    if gamma != 0:
        focal = np.multiply(log_q, gamma, out=log_q)
        np.exp(focal, out=focal)
    return p_t, one_minus_pt, log_pt, focal


def _binary_block(
    x: Array,
    y: Array,
    gamma: float,
    alpha: float | None,
    floor: float,
    bounded: bool,
    grad: Array,
    hess: Array,
) -> None:
    """Unweighted ``grad`` and floored ``hess`` of one block of rows, written into the outputs."""
    p_t, q, log_pt, focal = _binary_terms(x, y, gamma)
    # With F = q + gamma p L (L = -log p_t):  dl/du = -q^gamma F and
    # d2l/du2 = p q^gamma [(1 + 2 gamma) q + gamma L (gamma p - q)]
    #         = gamma p q^gamma [q ((1 + gamma) / gamma - L) + F].
    cross_entropy = None  # p (1 - p) = p_t q, cross-entropy's curvature, where it can differ
    if focal is None:  # gamma == 0: dl/du = -q, d2l/du2 = p q
        np.copyto(grad, q)
        curvature = np.multiply(p_t, q, out=log_pt)
    else:
        if bounded:
            cross_entropy = np.multiply(p_t, q)
        np.multiply(p_t, log_pt, out=grad)
        grad *= -gamma
        grad += q  # F
        curvature = np.add(log_pt, (1.0 + gamma) / gamma, out=log_pt)
        curvature *= q
        curvature += grad
        curvature *= p_t
        curvature *= focal
        curvature *= gamma
        grad *= focal  # -dl/du
    # g = (du/dx) dl/du with du/dx = 2y - 1, times alpha_t = (1 - alpha) + (2 alpha - 1) y;
    # -(2y - 1) alpha_t = (1 - alpha) - y.
    if alpha is None:
        sign = np.multiply(y, -2.0, out=p_t)
        sign += 1.0
        grad *= sign
    else:
        grad *= np.subtract(1.0 - alpha, y, out=p_t)
        alpha_t = np.multiply(y, 2.0 * alpha - 1.0, out=q)
        alpha_t += 1.0 - alpha
        curvature *= alpha_t
        if cross_entropy is not None:
            cross_entropy *= alpha_t
    if cross_entropy is not None:
        np.maximum(curvature, cross_entropy, out=curvature)
    np.maximum(curvature, floor, out=hess)


def binary_focal_grad_hess(
    margin: ArrayLike,
    label: ArrayLike,
    *,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    weight: ArrayLike | None = None,
    min_hessian: float = 1e-6,
    hessian: Hessian = "bounded",
) -> tuple[Array, Array]:
    r"""Gradient and Hessian of the sigmoid focal loss with respect to the margin, for trees.

    The loss of a row is :func:`focalkit.sigmoid_focal_loss`'s with the margin :math:`x` as logit:

    .. math::
        \ell = -\alpha_t (1 - p_t)^{\gamma} \log p_t,
        \qquad p_t = \sigma(u), \quad u = \begin{cases} x & y = 1 \\ -x & y = 0 \end{cases},
        \quad \alpha_t = \begin{cases} \alpha & y = 1 \\ 1 - \alpha & y = 0 \end{cases}.

    With :math:`q = 1 - p_t` and :math:`L = -\log p_t`, the derivatives with respect to
    :math:`u` are

    .. math::
        \frac{d\ell}{du} = -\alpha_t q^{\gamma} (q + \gamma p_t L), \qquad
        \frac{d^2\ell}{du^2} = \alpha_t p_t q^{\gamma}
            \left[(1 + 2\gamma) q + \gamma L (\gamma p_t - q)\right],

    and :math:`g = (2y - 1)\, d\ell/du`, :math:`h_{\text{exact}} = d^2\ell/du^2`. Neither contains
    :math:`q^{\gamma - 1}`, so both are bounded for :math:`0 < \gamma < 1`; :math:`p_t`,
    :math:`q`, :math:`L` and :math:`q^\gamma` come from ``log1p`` of :math:`e^{-|u|}`, so they
    keep their relative precision however confident the margin. At ``gamma=0, alpha=None`` this
    is the logistic loss: :math:`g = p - y`, :math:`h = p (1 - p)`.

    Returns ``grad = weight * g`` and ``hess = weight * max(h, min_hessian)`` with, by default
    (``hessian="bounded"``), :math:`h = \max(h_{\text{exact}}, \alpha_t p (1 - p))`: the trees
    divide by summed Hessians, and the exact :math:`h` is negative for badly misclassified rows
    when ``gamma > 0`` (the focal loss is not convex) and tends to 0 for confident ones faster
    than the gradient, which sends leaf values the wrong way or to infinity (the module
    docstring says more). At ``gamma=0`` both conventions give the exact
    :math:`\alpha_t p (1 - p)`. ``hessian="exact"`` returns :math:`h = h_{\text{exact}}`.

    Args:
        margin: Raw scores (log-odds).
        label: 0 or 1 per row (ints, bools, or floats holding 0 and 1).
        gamma: Focusing parameter, ``gamma >= 0``. Default: 2.
        alpha: Weight of positives in ``[0, 1]`` (``1 - alpha`` for negatives), or ``None`` for
            no alpha weighting. Default: 0.25, as Lin et al. and ``sigmoid_focal_loss``.
        weight: Per-row sample weights; they multiply ``grad`` and ``hess``. Default: none.
        min_hessian: The floor of the unweighted Hessian. Default: ``1e-6``. ``-math.inf``
            with ``hessian="exact"`` returns the exact second derivative (negative in places:
            not for trees).
        hessian: ``"bounded"`` (default) or ``"exact"``: the curvature returned, above.

    Shape:
        - margin, label, weight: :math:`(N)`.
        - Output: ``(grad, hess)``, each float64 of shape :math:`(N)`.

    Example:
        >>> import numpy as np
        >>> from focalkit.gbdt import binary_focal_grad_hess
        >>> margin, label = np.array([-3.0, 0.0, 2.0]), np.array([1, 0, 1])
        >>> grad, hess = binary_focal_grad_hess(margin, label)
        >>> print(grad.round(4), hess.round(4))  # rows 0 and 2: alpha_t p (1 - p)
        [-0.2817  0.2237 -0.0012] [0.0113 0.2994 0.0262]
        >>> _, exact = binary_focal_grad_hess(margin, label, hessian="exact")
        >>> print([f"{h:.3g}" for h in exact])  # row 0: h < 0, floored at min_hessian
        ['1e-06', '0.299', '0.00317']
        >>> grad, hess = binary_focal_grad_hess(np.array([-1e4, 1e4]), label[:2], gamma=0.5)
        >>> bool(np.isfinite(grad).all() and np.isfinite(hess).all())
        True
        >>> grad, hess = binary_focal_grad_hess(margin, label, gamma=0.0, alpha=None)
        >>> p = 1 / (1 + np.exp(-margin))
        >>> bool(np.allclose(grad, p - label) and np.allclose(hess, p * (1 - p)))
        True

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. arXiv:1708.02002
    """
    where = "binary_focal_grad_hess()"
    validation.check_gamma(gamma, where)
    alpha_value = check_binary_alpha(alpha, where)
    floor = check_min_hessian(min_hessian, where)
    bounded = check_hessian(hessian, where)
    x = _margin_vector(margin, where)
    y = _binary_label(label, x.shape[0], where)
    w = _weight_vector(weight, x.shape[0], where)
    g = float(gamma)

    grad, hess = np.empty_like(x), np.empty_like(x)
    for start in range(0, x.shape[0], _BLOCK_ROWS):
        block = slice(start, start + _BLOCK_ROWS)
        _binary_block(x[block], y[block], g, alpha_value, floor, bounded, grad[block], hess[block])
    if w is not None:
        grad *= w
        hess *= w
    return grad, hess


def binary_focal_value(
    margin: ArrayLike,
    label: ArrayLike,
    *,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    weight: ArrayLike | None = None,
) -> Array:
    r"""Per-row sigmoid focal loss :math:`\ell = -\alpha_t (1 - p_t)^\gamma \log p_t`, times weight.

    The loss :func:`binary_focal_grad_hess` differentiates (same arguments), for metrics: equal
    to ``focalkit.sigmoid_focal_loss(margin, label, weight, reduction='none')``, computed in log
    space from the margin.

    Shape:
        - margin, label, weight: :math:`(N)`.
        - Output: float64 :math:`(N)`.

    Example:
        >>> import numpy as np
        >>> from focalkit.gbdt import binary_focal_value
        >>> print(binary_focal_value(np.array([-3.0, 0.0, 2.0]), np.array([1, 0, 1])).round(6))
        [0.69157  0.129965 0.000451]
    """
    where = "binary_focal_value()"
    validation.check_gamma(gamma, where)
    alpha_value = check_binary_alpha(alpha, where)
    x = _margin_vector(margin, where)
    y = _binary_label(label, x.shape[0], where)
    w = _weight_vector(weight, x.shape[0], where)
    _, _, log_pt, focal = _binary_terms(x, y, float(gamma))
    loss = np.negative(log_pt, out=log_pt)
    if focal is not None:
        loss *= focal
    if alpha_value is not None:
        loss *= y * (2.0 * alpha_value - 1.0) + (1.0 - alpha_value)
    if w is not None:
        loss *= w
    return loss


# ------------------------------------------------------------------------------ multi-class


class _SoftmaxTerms:
    r"""Per-row quantities of the softmax focal loss, relative to the largest *other* class.

    With :math:`t` the label, :math:`m = \max_{k \ne t} z_k` at class :math:`o`,
    :math:`f_k = e^{z_k - m}` for :math:`k \ne t` (:math:`f_t = 0`, :math:`f_o = 1`) and
    :math:`R = \sum_{k \ne t} f_k = 1 + R_o \in [1, K - 1]`, where :math:`R_o` sums without
    class :math:`o`:

    - ``share`` :math:`s_k = f_k / R = p_k / (1 - p_t)` (0 for the label): never 0/0;
    - ``d`` :math:`= z_t - m - \mathrm{log1p}(R_o) = \log(p_t / (1 - p_t))`, from which
      ``loss`` :math:`L = -\log p_t = \mathrm{softplus}(-d)`, ``log_q`` :math:`= \log(1 - p_t)
      = -\mathrm{softplus}(d)`, ``p_t`` :math:`= e^{-L}` and ``q`` :math:`= e^{\log q}`, as in
      the binary case: finite, and with their relative precision, however far apart the margins;
    - ``rest_o`` :math:`= R_o / R`, so that :math:`1 - p_o = p_t + q\, R_o / R` keeps its
      precision when class :math:`o` takes almost all the probability.
    """

    def __init__(self, z: Array, t: NDArray[np.intp]) -> None:
        rows = np.arange(z.shape[0])
        self.rows, self.t = rows, t
        share = z.copy()
        share[rows, t] = -np.inf
        self.other = np.argmax(share, axis=1)
        share -= share[rows, self.other][:, None]
        d = z[rows, t] - z[rows, self.other]
        np.exp(share, out=share)  # f_t = exp(-inf) = 0, f_o = 1
        share[rows, self.other] = 0.0
        rest = share.sum(axis=1)  # R_o
        share[rows, self.other] = 1.0
        total = rest + 1.0  # R
        d -= np.log1p(rest)
        share /= total[:, None]
        self.share, self.rest_o = share, rest / total
        softplus = np.log1p(np.exp(-np.abs(d)))
        self.loss = np.maximum(-d, 0.0) + softplus
        self.log_q = -(np.maximum(d, 0.0) + softplus)
        self.p_t = np.exp(-self.loss)
        self.q = np.exp(self.log_q)

    def focal(self, gamma: float) -> Array:
        r""":math:`(1 - p_t)^\gamma`."""
        focal: Array = np.exp(gamma * self.log_q)
        return focal


def _softmax_arguments(
    margins: ArrayLike,
    label: ArrayLike,
    gamma: object,
    alpha: object,
    weight: ArrayLike | None,
    where: str,
) -> tuple[Array, NDArray[np.intp], float, float | Array | None, Array | None]:
    """Checked margins, labels, gamma, alpha of each row's label (or a scalar) and weight."""
    validation.check_gamma(gamma, where)
    z = _margin_matrix(margins, where)
    rows, num_class = z.shape
    alpha_values = check_softmax_alpha(alpha, num_class, where)
    t = _class_index(label, rows, num_class, where)
    w = _weight_vector(weight, rows, where)
    alpha_t = alpha_values[t] if isinstance(alpha_values, np.ndarray) else alpha_values
    return z, t, float(gamma), alpha_t, w  # type: ignore[arg-type]


def softmax_focal_grad_hess(
    margins: ArrayLike,
    label: ArrayLike,
    *,
    gamma: float = 2.0,
    alpha: SoftmaxAlpha = None,
    weight: ArrayLike | None = None,
    min_hessian: float = 1e-6,
    hessian: Hessian = "bounded",
) -> tuple[Array, Array]:
    r"""Gradient and diagonal Hessian of the softmax focal loss with respect to margins, for trees.

    The loss of a row with label :math:`t` is :func:`focalkit.softmax_focal_loss`'s:

    .. math::
        \ell = -\alpha_t (1 - p_t)^{\gamma} \log p_t, \qquad p = \mathrm{softmax}(z).

    With :math:`q = 1 - p_t`, :math:`L = -\log p_t`, :math:`s_j = p_j / q` for :math:`j \ne t`
    (the share of the wrong probability mass on class :math:`j`) and

    .. math::
        G = -\alpha_t q^{\gamma} (q + \gamma p_t L), \qquad
        B = \alpha_t \gamma p_t q^{\gamma} \left[2q - qL + (\gamma - 1) p_t L\right],

    the gradient and the diagonal of the Hessian are

    .. math::
        g_t = G, \quad g_j = -G s_j, \qquad
        h_t = B - G p_t, \quad h_j = B s_j^2 - G s_j (1 - p_j) \quad (j \ne t).

    (With :math:`\ell = f(\log p_t)`, :math:`G = q f'` and :math:`B = q^2 f''`: this form removes
    the :math:`q^{\gamma - 1}` of :math:`f'`, so both are bounded for :math:`0 < \gamma < 1`.)
    Everything is computed relative to the largest margin other than the label's:
    :math:`s_j` as a softmax over the other classes, :math:`L` and :math:`\log q` as softplus of
    :math:`\log(p_t / q)`, so they keep their relative precision at margins of :math:`\pm 10^4`.
    At ``gamma=0, alpha=None`` this is softmax cross-entropy: :math:`g = p - \mathrm{onehot}(t)`,
    :math:`h = p (1 - p)`. Only the Hessian's diagonal is returned; XGBoost and LightGBM use no
    more.

    Returns ``grad = weight * g`` and ``hess = weight * max(h, min_hessian)`` with, by default
    (``hessian="bounded"``), :math:`h_j = \max(h_{\text{exact}, j}, \alpha_t p_j (1 - p_j))`
    for the reason :func:`binary_focal_grad_hess` gives (:math:`h_t < 0` for badly
    misclassified rows when ``gamma > 0``, and vanishing curvature for confident ones; trees
    divide by summed Hessians); ``hessian="exact"`` returns the exact diagonal. At ``gamma=0``
    both are the exact :math:`\alpha_t p_j (1 - p_j)`. XGBoost's and LightGBM's built-in softmax
    objectives use :math:`2 p (1 - p)` and :math:`K / (K - 1)\, p (1 - p)`, and the adapters in
    :mod:`focalkit.xgboost` and :mod:`focalkit.lightgbm` multiply ``hess`` by those factors.

    Args:
        margins: Raw scores, one column per class.
        label: Class indices in ``[0, K)`` (ints, or floats holding whole numbers).
        gamma: Focusing parameter, ``gamma >= 0``. Default: 2.
        alpha: ``None`` (no alpha weighting), a number ``>= 0`` scaling every row, or one value
            ``>= 0`` per class, e.g. from :func:`focalkit.class_weights`. Default: ``None``.
        weight: Per-row sample weights; they multiply ``grad`` and ``hess``. Default: none.
        min_hessian: The floor of the unweighted Hessian. Default: ``1e-6``. ``-math.inf``
            with ``hessian="exact"`` returns the exact diagonal (negative in places: not for
            trees).
        hessian: ``"bounded"`` (default) or ``"exact"``: the curvature returned, above.

    Shape:
        - margins: :math:`(N, K)`, :math:`K \ge 2`. label, weight: :math:`(N)`.
        - Output: ``(grad, hess)``, each float64 of shape :math:`(N, K)`.

    Example:
        >>> import numpy as np
        >>> from focalkit.gbdt import softmax_focal_grad_hess
        >>> margins = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
        >>> grad, hess = softmax_focal_grad_hess(margins, np.array([0, 1]))
        >>> print(grad.round(4))
        [[-0.0273  0.0223  0.005 ]
         [ 0.0514 -1.0839  1.0325]]
        >>> print(hess.round(4))  # row 0: alpha_t p_j (1 - p_j); row 1: the exact diagonal
        [[0.1684 0.1446 0.0376]
         [0.0493 0.1412 0.1771]]
        >>> print(softmax_focal_grad_hess(margins, np.array([0, 1]), hessian="exact")[1].round(4))
        [[0.0624 0.0458 0.0061]
         [0.0493 0.1412 0.1771]]
        >>> p = np.exp(margins) / np.exp(margins).sum(1, keepdims=True)
        >>> grad, hess = softmax_focal_grad_hess(margins, np.array([0, 1]), gamma=0.0)
        >>> bool(np.allclose(grad, p - np.eye(3)[[0, 1]]) and np.allclose(hess, p * (1 - p)))
        True

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. arXiv:1708.02002
    """
    where = "softmax_focal_grad_hess()"
    floor = check_min_hessian(min_hessian, where)
    bounded = check_hessian(hessian, where)
    z, t, g, alpha_t, w = _softmax_arguments(margins, label, gamma, alpha, weight, where)
    grad, hess = np.empty_like(z), np.empty_like(z)
    rows = max(1, _BLOCK_ROWS // z.shape[1])
    for start in range(0, z.shape[0], rows):
        block = slice(start, start + rows)
        block_alpha = alpha_t[block] if isinstance(alpha_t, np.ndarray) else alpha_t
        _softmax_block(z[block], t[block], g, block_alpha, floor, bounded, grad[block], hess[block])
    if w is not None:
        grad *= w[:, None]
        hess *= w[:, None]
    return grad, hess


def _softmax_block(
    z: Array,
    t: NDArray[np.intp],
    gamma: float,
    alpha_t: float | Array | None,
    floor: float,
    bounded: bool,
    grad: Array,
    hess: Array,
) -> None:
    """Unweighted ``grad`` and floored ``hess`` of one block of rows, written into the outputs."""
    terms = _SoftmaxTerms(z, t)
    rows, q, p_t, loss, share = terms.rows, terms.q, terms.p_t, terms.loss, terms.share
    if gamma == 0:
        big_g = -q
        big_b = np.zeros_like(q)
    else:
        focal = terms.focal(gamma)
        big_g = -focal * (q + gamma * p_t * loss)
        big_b = gamma * p_t * focal * (2.0 * q - q * loss + (gamma - 1.0) * p_t * loss)
    if alpha_t is not None:
        big_g *= alpha_t
        big_b *= alpha_t
    # h_j = s_j (B s_j - G (1 - p_j)) with 1 - p_j = 1 - q s_j:  s_j ((B + G q) s_j - G).
    # 1 - q s_j is exact but for the largest other class o, patched with p_t + q R_o / R.
    np.multiply(share, (big_b + big_g * q)[:, None], out=hess)
    hess -= big_g[:, None]
    hess *= share
    share_o = share[rows, terms.other]
    hess[rows, terms.other] = share_o * (big_b * share_o - big_g * (p_t + q * terms.rest_o))
    hess[rows, t] = big_b - big_g * p_t
    if bounded and gamma != 0:  # at gamma = 0 the exact diagonal is alpha_t p_j (1 - p_j)
        np.maximum(hess, _cross_entropy_diagonal(terms, alpha_t), out=hess)
    np.maximum(hess, floor, out=hess)
    # g_j = -G s_j for j != t;  g_t = G.
    np.multiply(share, -big_g[:, None], out=grad)
    grad[rows, t] = big_g


def _cross_entropy_diagonal(terms: _SoftmaxTerms, alpha_t: float | Array | None) -> Array:
    r""":math:`\alpha_t p_j (1 - p_j)`, cross-entropy's Hessian diagonal, each factor precise.

    :math:`p_j = q s_j` and :math:`1 - p_j = 1 - q s_j` for :math:`j \ne t`, with
    :math:`1 - p_o = p_t + q R_o / R` for the largest other class; :math:`p_t (1 - p_t) = p_t q`.
    """
    rows, q = terms.rows, terms.q
    probability = terms.share * q[:, None]
    diagonal: Array = np.subtract(1.0, probability)
    diagonal[rows, terms.other] = terms.p_t + q * terms.rest_o
    diagonal *= probability
    diagonal[rows, terms.t] = terms.p_t * q
    if isinstance(alpha_t, np.ndarray):
        diagonal *= alpha_t[:, None]
    elif alpha_t is not None:
        diagonal *= alpha_t
    return diagonal


def softmax_focal_value(
    margins: ArrayLike,
    label: ArrayLike,
    *,
    gamma: float = 2.0,
    alpha: SoftmaxAlpha = None,
    weight: ArrayLike | None = None,
) -> Array:
    r"""Per-row softmax focal loss :math:`\ell = -\alpha_t (1 - p_t)^\gamma \log p_t`, times weight.

    The loss :func:`softmax_focal_grad_hess` differentiates (same arguments), for metrics: equal
    to ``focalkit.softmax_focal_loss(margins, label, reduction='none', alpha=alpha)`` times
    ``weight``, computed in log space from the margins.

    Shape:
        - margins: :math:`(N, K)`. label, weight: :math:`(N)`.
        - Output: float64 :math:`(N)`.

    Example:
        >>> import numpy as np
        >>> from focalkit.gbdt import softmax_focal_value
        >>> margins = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
        >>> print(softmax_focal_value(margins, np.array([0, 1])).round(4))
        [0.0111 1.7026]
    """
    where = "softmax_focal_value()"
    z, t, g, alpha_t, w = _softmax_arguments(margins, label, gamma, alpha, weight, where)
    terms = _SoftmaxTerms(z, t)
    loss: Array = terms.loss
    if g != 0:
        loss *= terms.focal(g)
    if alpha_t is not None:
        loss *= alpha_t
    if w is not None:
        loss *= w
    return loss


# ------------------------------------------------------------------------------ helpers


def prior_margin(labels: ArrayLike, num_class: int | None = None) -> float | Array:
    r"""The constant margin that matches the label frequencies, for ``base_margin``/``init_score``.

    A custom objective gets no fitted intercept from either library (LightGBM's
    ``boost_from_average`` is for built-in objectives; ``xgb.train`` with a callable ``obj``
    starts from its ``base_score``), so the first trees spend themselves learning the class
    balance. Start from the prior instead:

    - binary (``num_class=None``): the log-odds :math:`\log(\bar y / (1 - \bar y))` of the
      positive rate, a float;
    - multi-class: :math:`\log(n_k / n)` for each class :math:`k`, shape :math:`(K)`; its softmax
      is the class frequencies.

    Labels without a positive or negative (binary), or a class without samples, have no finite
    prior and raise a ``ValueError``.

    Example:
        >>> from focalkit.gbdt import prior_margin
        >>> round(prior_margin([0, 0, 0, 1]), 4)
        -1.0986
        >>> print(prior_margin([0, 2, 2, 1], num_class=3).round(4))
        [-1.3863 -1.3863 -0.6931]
    """
    where = "prior_margin()"
    array = np.asarray(labels)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{where}: labels must be a non-empty 1-D array, got shape {array.shape}")
    return prior_from_counts(count_labels(array, num_class, where), num_class, where)


def class_indices(label: ArrayLike, num_class: int, where: str) -> NDArray[np.intp]:
    """1-D labels as class indices in ``[0, num_class)``, after checking them (floats too)."""
    array = np.asarray(label)
    rows = array.shape[0] if array.ndim == 1 else -1
    return _class_index(array, rows, num_class, where)


def count_labels(labels: ArrayLike, num_class: int | None, where: str) -> NDArray[np.int64]:
    """The counts :func:`prior_margin` needs, of 1-D labels after their checks.

    ``[negatives, positives]`` for ``num_class=None`` (labels 0 or 1), else the count of each
    class. Counts of parts of the labels add up to the counts of the whole (``focalkit.dask``).
    """
    array = np.asarray(labels)
    if num_class is None:
        positives = int(_binary_label(array, array.shape[0], where).sum())
        return np.array([array.shape[0] - positives, positives], dtype=np.int64)
    classes = check_num_class(num_class, where)
    index = _class_index(array, array.shape[0], classes, where)
    return np.bincount(index, minlength=classes).astype(np.int64)


def prior_from_counts(
    counts: NDArray[np.int64], num_class: int | None, where: str
) -> float | Array:
    """:func:`prior_margin` from the counts of :func:`count_labels`, after their checks."""
    rows = int(counts.sum())
    if rows == 0:
        raise ValueError(f"{where}: labels must be a non-empty 1-D array, got shape (0,)")
    if num_class is None:
        negatives, positives = (int(count) for count in counts)
        if positives in (0, rows):
            kind = "positive" if positives == 0 else "negative"
            raise ValueError(
                f"{where}: labels have no {kind} samples; the prior log-odds are infinite"
            )
        return math.log(positives / negatives)
    if np.any(counts == 0):
        missing = int(np.flatnonzero(counts == 0)[0])
        raise ValueError(
            f"{where}: class {missing} has no samples in labels; its prior margin is -inf"
        )
    prior: Array = np.log(counts / rows)
    return prior


def predict_proba(margins: ArrayLike) -> Array:
    r"""Probabilities from margins: sigmoid of :math:`(N)` margins, softmax of :math:`(N, K)` rows.

    For models trained with a custom objective, whose predictions are raw margins (LightGBM's
    ``predict(..., raw_score=True)``; ``xgb.train`` with a callable ``obj``).

    Example:
        >>> import numpy as np
        >>> from focalkit.gbdt import predict_proba
        >>> print(predict_proba(np.array([-800.0, 0.0, 2.0])).round(4))
        [0.     0.5    0.8808]
        >>> print(predict_proba(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]])).round(4))
        [[0.5  0.5 ]
         [0.25 0.75]]
    """
    array = np.asarray(margins, dtype=np.float64)
    if array.ndim == 1:
        e = np.exp(-np.abs(array))
        return np.where(array >= 0, 1.0, e) / (1.0 + e)
    if array.ndim == 2:
        e = np.exp(array - array.max(axis=1, keepdims=True))
        e /= e.sum(axis=1, keepdims=True)
        probabilities: Array = e
        return probabilities
    raise ValueError(
        f"predict_proba(): margins must be 1-D (N,) or 2-D (N, K), got shape {array.shape}"
    )
